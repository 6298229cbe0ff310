"""The catalog's tables: one SQLAlchemy Core schema for SQLite and PostgreSQL.

Every date is a float of seconds since the Unix epoch (what :meth:`Clock.now` returns), so
the two databases store the same values and a rebuild can compare them exactly. Sizes and
positions are 64-bit integers.

Naming follows IBM Storage Protect: a *node* (client machine) owns *file spaces*; an
*object* is named by file space, high-level name (directory path) and low-level name (file
name); each object has *versions*, backup versions being active (the newest) or inactive, and
archive versions standing apart with a description and their own retention. A version's data
lies in one or more *locations* (a piece per volume it spans), in write order.

The tables change only through :mod:`pipevault.catalog.migrations`; a rule for whoever adds
a step: a migration may build a table from these definitions only while no later step
alters that table.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# SQLite only makes an INTEGER PRIMARY KEY an alias of the rowid (auto-assigned, fast).
Id = BigInteger().with_variant(Integer(), "sqlite")

VOLUME_STATES = ("scratch", "filling", "full", "read-only", "expired")
SESSION_STATES = ("running", "completed", "failed")
VERSION_STATES = ("active", "inactive", "archive")

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})


def _in(column: str, values: tuple[str, ...]) -> str:
    # An OR chain, not IN (...): SQLite builds a temporary table for an IN list on every
    # row checked, which doubled the cost of inserting versions.
    return " OR ".join(f"{column} = '{v}'" for v in values)


schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied", Float, nullable=False),
)

pools = Table(
    "pools", metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("media_type", String(32), nullable=False),
    Column("next_pool", String(64), nullable=True),
    Column("description", String(255), nullable=False, server_default=""),
    Column("created", Float, nullable=False),
)

volumes = Table(
    "volumes", metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("pool_id", ForeignKey("pools.id"), nullable=False, index=True),
    Column("media_type", String(32), nullable=False),
    Column("state", String(16), nullable=False),
    Column("write_once", Boolean, nullable=False, server_default="0"),
    Column("capacity", BigInteger, nullable=False),
    Column("used", BigInteger, nullable=False, server_default="0"),
    Column("created", Float, nullable=False),
    Column("first_written", Float, nullable=True),
    Column("last_written", Float, nullable=True),
    CheckConstraint(_in("state", VOLUME_STATES), name="state"),
)

classes = Table(
    "classes", metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(30), nullable=False, unique=True),
    Column("destination_pool", String(64), nullable=False),
    Column("versions_exists", Integer, nullable=False),
    Column("versions_deleted", Integer, nullable=False),
    Column("retain_extra_days", Integer, nullable=False),
    Column("retain_only_days", Integer, nullable=False),
    Column("archive_days", Integer, nullable=False),
    Column("compress", Boolean, nullable=False),
    Column("encrypt", Boolean, nullable=False),
    Column("dedup", Boolean, nullable=False),
    Column("description", String(255), nullable=False, server_default=""),
    Column("updated", Float, nullable=False),
)

nodes = Table(
    "nodes", metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created", Float, nullable=False),
)

filespaces = Table(
    "filespaces", metadata,
    Column("id", Id, primary_key=True),
    Column("node_id", ForeignKey("nodes.id"), nullable=False),
    Column("name", String(1024), nullable=False),
    Column("created", Float, nullable=False),
    UniqueConstraint("node_id", "name"),
)

sessions = Table(
    "sessions", metadata,
    Column("id", Id, primary_key=True),
    Column("node_id", ForeignKey("nodes.id"), nullable=True, index=True),
    # The session's UUID, written in every superblock header on media (pipevault.format).
    Column("media_session", String(36), nullable=True, unique=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started", Float, nullable=False),
    Column("ended", Float, nullable=True),
    Column("objects", BigInteger, nullable=False, server_default="0"),
    Column("bytes", BigInteger, nullable=False, server_default="0"),
    CheckConstraint(_in("status", SESSION_STATES), name="status"),
)

objects = Table(
    "objects", metadata,
    Column("id", Id, primary_key=True),
    Column("filespace_id", ForeignKey("filespaces.id"), nullable=False),
    Column("hl", String(1024), nullable=False),
    Column("ll", String(256), nullable=False),
    # pipevault.format.ObjectType: 0 file, 1 directory, 2 symlink, ...
    Column("obj_type", SmallInteger, nullable=False, server_default="0"),
    UniqueConstraint("filespace_id", "hl", "ll"),
)

versions = Table(
    "versions", metadata,
    Column("id", Id, primary_key=True),
    Column("object_id", ForeignKey("objects.id"), nullable=False),
    Column("session_id", ForeignKey("sessions.id"), nullable=True),
    Column("state", String(8), nullable=False),
    Column("class_name", String(30), nullable=False),
    Column("stored", Float, nullable=False),
    Column("deactivated", Float, nullable=True),
    Column("expires", Float, nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("digest", LargeBinary, nullable=True),
    Column("attributes", Text, nullable=False, server_default="{}"),
    Column("description", String(255), nullable=False, server_default=""),
    CheckConstraint(_in("state", VERSION_STATES), name="state"),
    Index(None, "object_id", "state"),
    # Partial indexes: expiration finds inactive and archive versions without inserts of
    # active versions (the bulk of a backup) paying for an index they never need.
    Index(None, "deactivated", sqlite_where=sa.text("state = 'inactive'"),
          postgresql_where=sa.text("state = 'inactive'")),
    Index(None, "stored", sqlite_where=sa.text("state = 'archive'"),
          postgresql_where=sa.text("state = 'archive'")),
)

locations = Table(
    "locations", metadata,
    Column("version_id", ForeignKey("versions.id"), primary_key=True),
    Column("part", Integer, primary_key=True, autoincrement=False),
    Column("volume_id", ForeignKey("volumes.id"), nullable=False),
    # The block number on the volume of the piece's first superblock, and the byte range of
    # the object (offset into it, length) whose data lies on this volume from there on.
    Column("superblock", BigInteger, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("length", BigInteger, nullable=False),
    # Set when the piece is a duplicate-discarded chunk stored once in `chunks`.
    Column("chunk_hash", LargeBinary(32), nullable=True),
    Index(None, "volume_id", "superblock"),
    # One b-tree keyed by (version, part) on SQLite instead of a rowid table plus an index.
    sqlite_with_rowid=False,
)

chunks = Table(
    "chunks", metadata,
    # Keyed hash of the chunk's content (the format's content hash under the dedup key).
    Column("hash", LargeBinary(32), primary_key=True),
    Column("volume_id", ForeignKey("volumes.id"), nullable=False, index=True),
    Column("superblock", BigInteger, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("length", BigInteger, nullable=False),
    Column("refcount", BigInteger, nullable=False),
    Column("created", Float, nullable=False),
)

# Tables in an order where every row's references come before it (for copies and restores).
TABLES_IN_ORDER: tuple[Table, ...] = (
    pools, volumes, classes, nodes, filespaces, sessions, objects, versions, locations, chunks,
)
