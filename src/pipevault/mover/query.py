"""Queries of stored versions and the expiration run, for the CLI and the dashboard."""

from __future__ import annotations

import fnmatch
import os

from pipevault.catalog import nodes as node_rows
from pipevault.catalog import objects as object_rows
from pipevault.catalog import volumes as volume_rows
from pipevault.catalog.expiration import ExpirationReport, expire
from pipevault.catalog.objects import VersionInfo
from pipevault.mover.errors import NothingMatched
from pipevault.mover.site import Site


def query(site: Site, pattern: str = "*", *, state: str = "backup", point_in_time: float | None = None,
          description: str | None = None) -> list[VersionInfo]:
    """Versions of this node whose full path matches ``pattern`` (shell style; a relative
    pattern is also tried against the current directory).

    Raises:
        NothingMatched: no version matches.
    """
    absolute = os.path.abspath(pattern)
    rows: list[VersionInfo] = []
    with site.catalog.read() as conn:
        spaces = next((n.filespaces for n in node_rows.list_nodes(conn) if n.name == site.node), ())
        for fs in spaces:
            found = object_rows.query_versions(conn, site.node, fs, state=state, point_in_time=point_in_time,
                                               description=description)
            rows.extend(v for v in found
                        if fnmatch.fnmatchcase(v.path, pattern) or fnmatch.fnmatchcase(v.path, absolute))
    if not rows:
        raise NothingMatched(f"no stored version matches {pattern}")
    return rows


def run_expire(site: Site) -> ExpirationReport:
    """Apply every management class; volumes that hold nothing live any more are erased and
    return to scratch (their files are removed, so the space comes back at once)."""
    report = expire(site.catalog)
    with site.catalog.read() as conn:
        pools = {name: volume_rows.get_volume(conn, name).pool for name in report.volumes_to_scratch}
    for name, pool in pools.items():
        site.pool_directory(pool).path_of(name).unlink(missing_ok=True)
    return report
