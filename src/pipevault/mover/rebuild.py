"""Rebuilding the catalog from the media alone.

Every volume file of every disk pool under ``PIPEVAULT_HOME/pools`` is read block by block,
in name order (the order the pool filled them), and fed to the catalog's
:class:`~pipevault.catalog.rebuild.MediaCatalogue`, which recreates nodes, sessions, objects,
versions and locations with their original times. Volumes are recorded (with their pool) if
the catalog does not know them. Damaged blocks are skipped; the scanner then reports exactly
which objects it could not catalogue.
"""

from __future__ import annotations

from pipevault.catalog.rebuild import MediaCatalogue, RebuildReport, ensure_volume
from pipevault.media.errors import BadBlock, EndOfData, MediaCorrupt, MediaError, MediaIOError
from pipevault.mover.site import Site


def rebuild_from_media(site: Site) -> RebuildReport:
    """Catalogue every session found on the site's disk pools (sessions already catalogued
    are left alone). Returns the catalogue's report, with unreadable blocks added to its
    damage list."""
    cataloguer = MediaCatalogue(site.catalog)
    unreadable: list[str] = []
    pools = sorted(p.name for p in (site.home / "pools").iterdir() if p.is_dir()) \
        if (site.home / "pools").is_dir() else []
    for pool in pools:
        directory = site.pool_directory(pool)
        for label in directory.labels():
            ensure_volume(site.catalog, label.name, label.pool or pool, media_type=label.media_type,
                          capacity=label.capacity)
            try:
                volume = directory.open(label.name)
            except MediaError as exc:
                unreadable.append(f"volume {label.name}: {exc.message}")
                continue
            try:
                addr = 0
                while True:
                    try:
                        data = volume.read(addr)
                    except EndOfData:
                        break
                    except (MediaCorrupt, MediaIOError, BadBlock) as exc:
                        unreadable.append(f"volume {label.name} block {addr}: {exc.message}")
                    else:
                        cataloguer.feed(label.name, addr, data)
                    addr += 1
            finally:
                volume.close()
    report = cataloguer.finish()
    report.damage.extend(unreadable)
    return report
