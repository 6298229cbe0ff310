"""The database seam: opening a catalog, its transactions, and driver-error translation.

This is the one module that configures SQLAlchemy engines and the one place where database
driver exceptions become :mod:`pipevault.catalog.errors`. Every other catalog module works on
a SQLAlchemy Core :class:`~sqlalchemy.Connection` obtained from :meth:`Catalog.read` or
:meth:`Catalog.write`.

SQLite runs in WAL mode (readers never block the writer), with foreign keys on and a busy
timeout; write transactions start with ``BEGIN IMMEDIATE`` so two writers queue on the lock
instead of failing when one upgrades a read to a write. PostgreSQL URLs are given the
psycopg 3 driver.

No open connection crosses a ``fork()``: before every fork the pooled connections of every
engine made here are closed (a child never uses its parent's connections, but SQLite keeps
its locks per process, so a copy inherited beside a connection the child opens itself
would let its reads go unlocked; a PostgreSQL copy shares the parent's socket). Connections
are opened again when next needed.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Connection, Engine

from pipevault.catalog import migrations, schema
from pipevault.catalog.errors import CatalogConflict, CatalogError, CatalogUnavailable
from pipevault.clock import SYSTEM, Clock
from pipevault.config import Settings

_BUSY_TIMEOUT_MS = 30_000
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()  # every engine create_engine made


def _close_pooled_connections() -> None:
    """Before a fork: close every engine's idle pooled connections (see the module's notes).

    A connection checked out meanwhile cannot be: pipes fork their process modules only from
    an initiator running one thread, which holds none while a pipe starts.
    """
    for engine in list(_ENGINES):
        engine.dispose()


os.register_at_fork(before=_close_pooled_connections)


def catalog_url(settings: Settings) -> str:
    """The catalog URL the settings name: ``catalog_url``, else ``catalog.db`` in ``home``."""
    url = str(settings["catalog_url"])
    return url if url else "sqlite:///" + str(settings.home / "catalog.db")


def _normalise(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@contextmanager
def translated() -> Iterator[None]:
    """Turn database driver errors raised inside the block into catalog errors.

    Raises:
        CatalogConflict: a constraint was violated (duplicate name, missing reference).
        CatalogUnavailable: the database could not be reached, opened or locked.
        CatalogError: any other database failure.
    """
    try:
        yield
    except exc.IntegrityError as e:
        raise CatalogConflict(f"the catalog refused a write: {e.orig}") from e
    except exc.OperationalError as e:
        raise CatalogUnavailable(f"catalog database unavailable: {e.orig}") from e
    except exc.SQLAlchemyError as e:
        raise CatalogError(f"catalog database error: {e}") from e


# SQLSTATEs of a transaction PostgreSQL aborted to let another go on: deadlock_detected
# and serialization_failure. Running the same transaction again is the documented remedy.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def aborted_for_another(error: BaseException) -> bool:
    """Whether ``error`` (as :func:`translated` raised it) is the server aborting this
    transaction to break a deadlock or a serialization conflict with another one: the
    transaction was rolled back whole and may simply be run again."""
    cause = error.__cause__
    orig = getattr(cause, "orig", None) if isinstance(cause, exc.DBAPIError) else None
    return getattr(orig, "sqlstate", None) in _RETRYABLE_SQLSTATES


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        # Take transaction control away from the sqlite3 module (it would BEGIN lazily and
        # not at all for DDL); the "begin" hook below issues BEGIN itself.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA cache_size = -65536")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("catalog_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(url: str) -> Engine:
    """An engine for ``url`` configured as the catalog needs (WAL, driver, timeouts).

    Creates the parent directory of an SQLite file. Does not connect.

    Raises:
        CatalogUnavailable: the SQLite file's directory cannot be created.
    """
    url = _normalise(url)
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise CatalogUnavailable(f"cannot create the catalog's directory: {e}") from e
        engine = sa.create_engine(url)
        _configure_sqlite(engine)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    _ENGINES.add(engine)
    return engine


class Catalog:
    """An open catalog database: the entry point of the catalog package.

    Thread-safe: each :meth:`read` or :meth:`write` block takes its own pooled connection, so
    threads may use one ``Catalog`` at once. Use it as a context manager or call
    :meth:`close`.

    Args:
        engine: from :func:`create_engine`.
        clock: the time source of every date the catalog records itself.
    """

    def __init__(self, engine: Engine, clock: Clock = SYSTEM) -> None:
        self.engine = engine
        self.clock = clock

    @classmethod
    def open(cls, url: str, *, clock: Clock = SYSTEM, upgrade: bool = True) -> Catalog:
        """Open (creating if needed) the catalog at ``url`` and bring its schema up to date.

        Raises:
            CatalogUnavailable: the database cannot be reached or created.
            CatalogSchemaTooNew: a newer pipevault wrote it.
            CatalogMigrationFailed: a migration step failed (the step was rolled back).
        """
        with translated():
            engine = create_engine(url)
        catalog = cls(engine, clock)
        try:
            if upgrade:
                migrations.upgrade(catalog, clock)
            else:
                with catalog.read() as conn:
                    migrations.check_version(conn)
        except BaseException:
            engine.dispose()
            raise
        return catalog

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = SYSTEM) -> Catalog:
        """Open the catalog the settings name (see :func:`catalog_url`)."""
        return cls.open(catalog_url(settings), clock=clock)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return str(self.engine.dialect.name)

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection inside a read transaction: one consistent snapshot for all its queries
        (SQLite's read transaction; PostgreSQL's ``REPEATABLE READ``)."""
        with translated(), self.engine.connect() as conn:
            if self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection inside a write transaction, committed when the block ends normally.

        On SQLite the transaction holds the database's write lock from its first statement.
        An exception rolls everything back and propagates (driver errors translated).
        """
        with translated(), self.engine.connect() as conn:
            conn.execution_options(catalog_write=True)
            with conn.begin():
                yield conn

    def counts(self) -> dict[str, int]:
        """Rows in each catalog table, by table name."""
        with self.read() as conn:
            return {t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                    for t in schema.TABLES_IN_ORDER}

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
