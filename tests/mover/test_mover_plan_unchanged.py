"""The incremental comparison's quick path decides as parsing the attributes does."""

from __future__ import annotations

import json
import os
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pipevault.format import ObjectType
from pipevault.mover.catalogue import with_catalog_fields
from pipevault.mover.objmeta import attributes_text
from pipevault.mover.plan import unchanged, unchanged_parsed
from pipevault.mover.walk import Entry

_small = st.integers(0, 3)  # few values: equal fields are common, so both answers occur
_kinds = st.sampled_from([ObjectType.FILE, ObjectType.DIRECTORY, ObjectType.SYMLINK, ObjectType.HARDLINK])
_fields = st.tuples(_kinds, st.sampled_from([0o100644, 0o100600, 0o40755]), _small, _small, _small, _small,
                    _small, st.sampled_from([None, "a/first", 'q"uote']))


def _entry(kind: int, mode: int, uid: int, gid: int, size: int, mtime: int, ctime: int,
           hardlink_of: str | None) -> Entry:
    st_ = os.stat_result((mode, 7, 1, 1, uid, gid, size, 0, mtime, ctime), {"st_mtime_ns": mtime,
                                                                            "st_ctime_ns": ctime})
    return Entry("/x/f", "/x", "f", st_, kind, b"", (), hardlink_of)


@given(_fields, _fields, st.booleans(), st.booleans())
def test_the_quick_path_agrees_with_parsing(now: tuple[Any, ...], then: tuple[Any, ...], tail: bool,
                                            reordered: bool) -> None:
    kind, mode, uid, gid, size, mtime, ctime, link = then
    attrs = attributes_text(kind, mode, uid, gid, size, mtime, ctime, 0, 7, 1, 0,
                            b'"hardlink_of":null' if link == 'q"uote' else b"", link)
    if tail:  # as the catalog stage stores them
        attrs = with_catalog_fields(attrs, size, 0, "00000000-0000-0000-0000-000000000000", 3)
    if reordered:  # written by something else: another key order
        attrs = json.dumps(dict(reversed(list(json.loads(attrs).items()))))
    e = _entry(*now)
    assert unchanged(attrs, e) == unchanged_parsed(attrs, e)


def test_an_untouched_file_is_unchanged_and_a_touched_one_is_not() -> None:
    attrs = attributes_text(ObjectType.FILE, 0o100644, 1, 2, 10, 5, 6, 0, 7, 1, 0, b"", None)
    assert unchanged(attrs, _entry(ObjectType.FILE, 0o100644, 1, 2, 10, 5, 6, None))
    assert not unchanged(attrs, _entry(ObjectType.FILE, 0o100644, 1, 2, 10, 5, 9, None))
    assert not unchanged(attrs, _entry(ObjectType.FILE, 0o100644, 1, 2, 11, 5, 6, None))
    assert not unchanged("not json", _entry(ObjectType.FILE, 0o100644, 1, 2, 10, 5, 6, None))
