"""The order a backup sends entries in: small ones spread between the large files, hard
links last, and a round trip through that order restores everything."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from mover_helpers import backup_and_restore, make_tree, snapshot

from pipevault.format import ObjectType
from pipevault.mover.plan import LARGE, send_order
from pipevault.mover.walk import Entry


def _stat(size: int) -> os.stat_result:
    """A stat result of ``size`` bytes, all of them allocated (a real one: the compiled walk
    checks the type)."""
    fields = [0] * os.stat_result.n_sequence_fields
    fields[6] = size  # st_size
    st = os.stat_result(fields, {"st_blocks": (size + 511) // 512})
    assert st.st_size == size
    return st


def _entry(i: int, kind: int, size: int) -> Entry:
    return Entry(f"/x/{i}", "/x", str(i), _stat(size), kind)


kinds = st.sampled_from([ObjectType.FILE, ObjectType.FILE, ObjectType.DIRECTORY, ObjectType.SYMLINK,
                         ObjectType.HARDLINK])
sizes = st.sampled_from([0, 100, LARGE, LARGE + 1, 5 * LARGE, 40 * LARGE])


@settings(max_examples=200)
@given(st.lists(st.tuples(kinds, sizes), max_size=60))
def test_send_order_is_a_permutation_with_each_kind_in_walk_order(spec: list[tuple[int, int]]) -> None:
    entries = [_entry(i, kind, size if kind == ObjectType.FILE else 0) for i, (kind, size) in enumerate(spec)]
    out = send_order(entries)
    assert sorted(id(e) for e in out) == sorted(id(e) for e in entries)
    links = [e for e in out if e.kind == ObjectType.HARDLINK]
    assert out[len(out) - len(links):] == links  # hard links last
    large = [e for e in out if e.kind == ObjectType.FILE and e.st.st_size > LARGE]
    small = [e for e in out if e not in large and e not in links]
    rank = {id(e): i for i, e in enumerate(entries)}
    for group in (large, small, links):
        assert [rank[id(e)] for e in group] == sorted(rank[id(e)] for e in group)


def test_small_entries_are_spread_in_proportion_to_large_data() -> None:
    entries = [_entry(i, ObjectType.FILE, 10) for i in range(100)]
    entries += [_entry(100 + i, ObjectType.FILE, size) for i, size in enumerate((10 * LARGE, 30 * LARGE))]
    out = send_order(entries)
    first_large = next(i for i, e in enumerate(out) if e.st.st_size > LARGE)
    second_large = max(i for i, e in enumerate(out) if e.st.st_size > LARGE)
    assert first_large == 0  # nothing of the data precedes the first large file's share
    assert second_large - first_large - 1 == 25  # its 10 of 40 parts: a quarter of the small ones
    assert len(out) - second_large - 1 == 75


def test_round_trip_in_send_order(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    (src / "big").write_bytes(os.urandom(3 * LARGE))
    for i in range(40):
        (src / f"s{i}").write_bytes(b"x" * i)
    out = backup_and_restore(src, tmp_path)
    assert snapshot(out) == snapshot(src)
