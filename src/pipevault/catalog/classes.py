"""Management classes: the policy each object version is bound to.

Defaults are those of Storage Protect's STANDARD copy groups: keep 2 versions of an existing
file and 1 of a deleted one, inactive versions 30 days, the last version of a deleted file
60 days, archives 365 days. A version bound to a class that is not defined is expired by
:data:`DEFAULT_CLASS`'s rules, as Storage Protect rebinds it to the default class.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipevault.catalog.errors import CatalogConflict, CatalogNotFound
from pipevault.catalog.schema import classes

DAY = 86_400.0


@dataclass(frozen=True)
class ManagementClass:
    """A management class.

    Attributes:
        versions_exists: backup versions kept while the file exists (the active one counts).
        versions_deleted: backup versions kept after the file was deleted.
        retain_extra_days: days an inactive version is kept (except the last one of a
            deleted file).
        retain_only_days: days the last version of a deleted file is kept.
        archive_days: days an archive copy is kept when it names no expiry of its own.
    """

    name: str
    destination_pool: str = "disk"
    versions_exists: int = 2
    versions_deleted: int = 1
    retain_extra_days: int = 30
    retain_only_days: int = 60
    archive_days: int = 365
    compress: bool = True
    encrypt: bool = False
    dedup: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if not 1 <= len(self.name) <= 30:
            raise CatalogConflict(f"management class name {self.name!r} must have 1 to 30 characters")
        if not self.destination_pool:
            raise CatalogConflict(f"class {self.name}: a destination pool is needed")
        if self.versions_exists < 1 or self.versions_deleted < 0:
            raise CatalogConflict(f"class {self.name}: keep at least one version of an existing "
                                  "file and zero or more of a deleted one")
        if min(self.retain_extra_days, self.retain_only_days, self.archive_days) < 0:
            raise CatalogConflict(f"class {self.name}: retention days cannot be negative")


DEFAULT_CLASS = ManagementClass("STANDARD")
_FIELDS = [f.name for f in dataclasses.fields(ManagementClass)]


def define_class(conn: Connection, mc: ManagementClass, *, now: float) -> None:
    """Create or replace the class ``mc.name``; versions bound to it follow the new rules."""
    values = {f: getattr(mc, f) for f in _FIELDS}
    updated = conn.execute(sa.update(classes).where(classes.c.name == mc.name)
                           .values(**values, updated=now)).rowcount
    if not updated:
        conn.execute(sa.insert(classes).values(**values, updated=now))


def get_class(conn: Connection, name: str) -> ManagementClass:
    """The class called ``name``.

    Raises:
        CatalogNotFound: no such class.
    """
    row = conn.execute(sa.select(*(classes.c[f] for f in _FIELDS)).where(classes.c.name == name)).first()
    if row is None:
        raise CatalogNotFound(f"no management class {name!r} in the catalog")
    return ManagementClass(**row._asdict())


def list_classes(conn: Connection) -> list[ManagementClass]:
    """Every defined class, by name."""
    return [ManagementClass(**row._asdict()) for row in
            conn.execute(sa.select(*(classes.c[f] for f in _FIELDS)).order_by(classes.c.name))]


def policies(conn: Connection) -> dict[str, ManagementClass]:
    """Defined classes by name; look names up with ``.get(name, DEFAULT_CLASS)``."""
    return {mc.name: mc for mc in list_classes(conn)}
