"""Catalog checks: a consistent catalog has no errors; each contradiction is found."""

from __future__ import annotations

import sqlalchemy as sa
from catalog_helpers import backup, file, make_pool

from pipevault.catalog import sessions
from pipevault.catalog.check import check
from pipevault.catalog.database import Catalog
from pipevault.catalog.schema import chunks, versions, volumes
from pipevault.catalog.writer import NewVersion, Piece


def _codes(catalog: Catalog) -> dict[str, tuple[str, int]]:
    return {f.code: (f.severity, f.count) for f in check(catalog)}


def test_a_catalog_written_by_the_library_is_consistent(catalog: Catalog) -> None:
    make_pool(catalog)
    h = b"\x05" * 32
    backup(catalog, "n1", [file("/d", "a"), NewVersion("/home", "/d", "b", 5, (Piece("V1", 1, 0, 5, h),)),
                           NewVersion("/home", "/d", "c", 5, (Piece("V1", 1, 0, 5, h),))])
    backup(catalog, "n1", [file("/d", "a", size=3)])
    assert _codes(catalog) == {}


def test_contradictions_are_errors_and_odd_states_warnings(catalog: Catalog) -> None:
    make_pool(catalog)
    h = b"\x06" * 32
    backup(catalog, "n1", [file("/d", "a"), file("/d", "b", class_name="NOSUCH"),
                           NewVersion("/home", "/d", "c", 5, (Piece("V2", 1, 0, 5, h),))])
    backup(catalog, "n1", [file("/d", "a", size=3)])
    with catalog.write() as conn:
        conn.execute(sa.update(versions).values(state="active").where(versions.c.size == 100))
        conn.execute(sa.update(chunks).values(refcount=3))
        conn.execute(sa.update(volumes).where(volumes.c.name == "V2").values(state="scratch"))
        sessions.begin_session(conn, "n2", "backup", started=1.0)
    codes = _codes(catalog)
    assert codes == {"two_active": ("error", 1), "chunk_refcount": ("error", 1),
                     "scratch_with_data": ("error", 1), "undefined_class": ("warning", 1),
                     "running_sessions": ("warning", 1)}
    assert [f.severity for f in check(catalog)][:3] == ["error"] * 3
