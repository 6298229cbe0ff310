"""The catalog database: what was stored, where, under which policy, until when.

Layer: core. May import format and the foundation; never pipe, media or anything above.

One SQLAlchemy Core schema (:mod:`.schema`, changed only by numbered :mod:`.migrations`)
serves SQLite in WAL mode, embedded at ``$PIPEVAULT_HOME/catalog.db``, and PostgreSQL by
URL. :class:`Catalog` opens it and hands out read and write transactions; the modules are
split by entity and take a connection: :mod:`.nodes` (and file spaces), :mod:`.sessions`,
:mod:`.objects` (and versions, queries by pattern and point in time), :mod:`.locations`
(restore plans), :mod:`.chunks` (duplicate discard), :mod:`.pools`, :mod:`.volumes`,
:mod:`.classes` (management classes). Whole-catalog operations: :class:`BatchWriter`
(batched cataloguing), :func:`expire`, :func:`.backup.backup` / :func:`.backup.restore`,
:func:`.check.check`, and :class:`MediaCatalogue` / :func:`.rebuild.rebuild` (cataloguing
from the stream format's records, live or from media after a loss).
"""

from pipevault.catalog.classes import ManagementClass as ManagementClass
from pipevault.catalog.database import Catalog as Catalog
from pipevault.catalog.database import catalog_url as catalog_url
from pipevault.catalog.expiration import ExpirationReport as ExpirationReport
from pipevault.catalog.expiration import expire as expire
from pipevault.catalog.rebuild import MediaCatalogue as MediaCatalogue
from pipevault.catalog.rebuild import RebuildReport as RebuildReport
from pipevault.catalog.rebuild import ensure_volume as ensure_volume
from pipevault.catalog.writer import BatchWriter as BatchWriter
from pipevault.catalog.writer import NewVersion as NewVersion
from pipevault.catalog.writer import Piece as Piece

# backup.backup, backup.restore, check.check and rebuild.rebuild are imported from their
# modules: re-exported here they would hide the modules of the same names.
__all__ = [
    "BatchWriter", "Catalog", "ExpirationReport", "ManagementClass", "MediaCatalogue", "NewVersion", "Piece",
    "RebuildReport", "catalog_url", "ensure_volume", "expire",
]
