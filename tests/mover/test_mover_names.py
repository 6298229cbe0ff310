"""Catalog names of walked paths: the high-level name is the directory from "/", the
low-level name the entry's own name, both as catalog text."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from pipevault.mover.walk import from_text, high_name, low_name

# Path components as the walk builds them: no "/" and not empty, undecodable bytes as
# surrogate escapes, backslashes included (catalog text doubles them).
_component = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",))
                     | st.sampled_from(["\\", "\udcff", "\udc80"]), min_size=1, max_size=12)


@given(st.lists(_component, min_size=1, max_size=5))
def test_names_split_a_relative_path_as_dirname_and_basename_do(parts: list[str]) -> None:
    rel = "/".join(parts)
    head = os.path.dirname(rel)
    assert from_text(high_name(rel)) == ("/" + head if head else "/")
    assert from_text(low_name(rel)) == os.path.basename(rel)


def test_the_file_space_root_has_high_name_slash_and_an_empty_low_name() -> None:
    assert (high_name(""), low_name("")) == ("/", "")
    assert (high_name("a"), low_name("a")) == ("/", "a")
    assert (high_name("a/b/c"), low_name("a/b/c")) == ("/a/b", "c")
    assert (high_name("d\\x/f"), low_name("d\\x/f")) == ("/d\\\\x", "f")
