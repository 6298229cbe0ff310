"""plain_rows: the driver's tuples of a Core SELECT, the same rows SQLAlchemy returns."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from catalog_helpers import backup, file, make_pool

from pipevault.catalog import objects
from pipevault.catalog.database import Catalog
from pipevault.catalog.rows import plain_rows
from pipevault.catalog.schema import objects as objects_table
from pipevault.catalog.schema import versions


def test_plain_rows_are_the_rows_sqlalchemy_returns(catalog: Catalog) -> None:
    make_pool(catalog)
    backup(catalog, "n1", [file("/src", f"f{i}", size=i, digest=bytes([i]) * 16) for i in range(7)])
    query = (sa.select(versions.c.id, objects_table.c.ll, versions.c.size, versions.c.stored, versions.c.digest)
             .join(objects_table, objects_table.c.id == versions.c.object_id)
             .where(versions.c.size.between(sa.bindparam("lo"), sa.bindparam("hi")), versions.c.state == "active")
             .order_by(versions.c.size))
    with catalog.read() as conn:
        expected = [tuple(r) for r in conn.execute(query, {"lo": 2, "hi": 5})]
        got = [tuple(r) for r in plain_rows(conn, query, {"lo": 2, "hi": 5})]
    assert [r[1] for r in got] == ["f2", "f3", "f4", "f5"]
    assert got == expected
    assert got[0][4] == b"\x02" * 16 and type(got[0][4]) is bytes


def test_query_versions_through_plain_rows_keeps_every_field(catalog: Catalog) -> None:
    make_pool(catalog)
    backup(catalog, "n1", [file("/src", "a", size=3, digest=b"\x07" * 32)])
    with catalog.read() as conn:
        (v,) = objects.query_versions(conn, "n1", "/home")
        assert v == objects.get_version(conn, v.version_id)  # the one row read through SQLAlchemy
    assert (v.path, v.size, v.state, v.digest) == ("/home/src/a", 3, "active", b"\x07" * 32)


def test_plain_rows_refuses_an_expanding_parameter(catalog: Catalog) -> None:
    query = sa.select(versions.c.id).where(versions.c.id.in_(sa.bindparam("ids", expanding=True)))
    with catalog.read() as conn, pytest.raises(sa.exc.ArgumentError):
        plain_rows(conn, query, {"ids": [1, 2]})


def test_a_failing_statement_raises_the_wrapped_driver_error(catalog: Catalog) -> None:
    query = sa.select(sa.column("nope")).select_from(sa.table("no_such_table"))
    with catalog.read() as conn, pytest.raises(sa.exc.DBAPIError):
        plain_rows(conn, query)


def test_active_attributes_are_those_of_the_active_backup_versions_only(catalog: Catalog) -> None:
    make_pool(catalog)
    backup(catalog, "n1", [file("/d", "a", attributes='{"v":1}'), file("/d", "b", attributes='{"v":2}')])
    backup(catalog, "n1", [file("/d", "a", attributes='{"v":3}')])  # a's first version goes inactive
    backup(catalog, "n1", [file("/d", "c", archive=True, description="x")], kind="archive")
    backup(catalog, "n2", [file("/d", "a", attributes='{"v":4}')])  # another node
    with catalog.read() as conn:
        got = sorted(objects.active_attributes(conn, "n1", "/home"))
        assert got == [("/d", "a", '{"v":3}'), ("/d", "b", '{"v":2}')]
        assert objects.active_attributes(conn, "n1", "/elsewhere") == []
