"""Bulk inserts (``COPY`` on PostgreSQL, ``executemany`` on SQLite): rows the database
refuses are a catalog error like any other statement's, and nothing of them is kept."""

from __future__ import annotations

import pytest

from pipevault.catalog.bulk import insert_rows
from pipevault.catalog.database import Catalog
from pipevault.catalog.errors import CatalogConflict
from pipevault.catalog.schema import objects

COLUMNS = ("id", "filespace_id", "hl", "ll", "obj_type")


def test_rows_with_a_missing_reference_are_a_conflict_and_none_is_kept(catalog: Catalog) -> None:
    rows = [(1, 999, "/d", "x", 0), (2, 999, "/d", "y", 0)]  # there is no file space 999
    with pytest.raises(CatalogConflict, match="(?i)foreign key") as err, catalog.write() as conn:
        insert_rows(conn, objects, COLUMNS, rows)
    assert err.value.code == "catalog.conflict"
    assert catalog.counts()["objects"] == 0
