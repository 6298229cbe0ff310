"""Cataloguing durable objects: the last stage of a backup pipe.

The store (:mod:`pipevault.mover.store`) hands on objects only once they are wholly on
synced media; this module turns them into catalog versions, thousands per transaction, in
a stage of its own after the store (:class:`CatalogStage`), usually a process: building
catalog rows and SQLite's work overlap with writing superblocks instead of adding to it.

A CATALOG buffer (store -> catalog stage) holds a volume-name table, then per object
``CATALOG_REC`` followed by its doc and its pieces (see :mod:`pipevault.mover._wire`). The
last buffer of a durability point has prefix ``b`` = 1: the catalog stage commits after
it, so a killed job loses at most the objects of one durability point from the catalog,
never catalogues one that is not durable.
"""

from __future__ import annotations

from typing import Any

from pipevault.catalog.objects import index_fields
from pipevault.catalog.writer import BatchWriter, NewVersion, Piece
from pipevault.errors import InternalError
from pipevault.mover import _wire as W
from pipevault.mover.site import Site
from pipevault.mover.store import Durable
from pipevault.pipe import StageContext

BATCH_SIZE = 5000


class Cataloguer:
    """Catalogues one session's durable objects (one thread).

    Args:
        site: the open site whose catalog receives the versions.
        params: the backup's StoreParams (session row, class, archive fields, backup date).
    """

    def __init__(self, site: Site, params: Any) -> None:
        self.p = params
        self.session = str(params.session_id)
        self._batch = BatchWriter(site.catalog, params.catalog_session, batch_size=BATCH_SIZE)
        self.objects = self.bytes = 0

    def add(self, index: int, status: int, digest: bytes, stream: int, stored: int, doc: bytes | memoryview,
            spans: tuple[tuple[str, int], ...], refs: tuple[int, ...] = ()) -> None:
        """Queue the version of object ``index`` (written in the pieces of ``spans``; repeating
        chunks of the objects ``refs``)."""
        (fs, hl, ll, obj_type, size), attrs = W.loads(doc)
        attrs = with_catalog_fields(attrs, stream, status, self.session, index, refs)
        p = self.p
        if len(spans) == 1:  # nearly every object: no generator
            pieces: tuple[Piece, ...] = (Piece(spans[0][0], spans[0][1], 0, stored),)
        else:
            share = stored // max(1, len(spans))
            pieces = tuple(Piece(vol, first, 0, share) for vol, first in spans)
        self._batch.add(NewVersion(fs, hl, ll, size, pieces, p.stored, obj_type, p.class_name, attrs, digest,
                                   p.archive, p.description, p.expires))
        self.objects += 1
        self.bytes += stream

    def commit(self) -> None:
        """Write what was queued in one transaction (returns when committed)."""
        self._batch.flush()


def with_catalog_fields(attrs: str, stream: int, status: int, session: str, index: int,
                        refs: tuple[int, ...] = ()) -> str:
    """The attributes' JSON object text with what the catalog adds at its end (the stream
    bytes, the status, the objects of the session whose chunks this one repeats when there
    are any, the media session and the object's index in it), as the JSON encoder would
    write them. Written out directly, at a third of the encoder's cost, once per object of a
    backup; ``session`` is a UUID's text, which needs no escaping. Restore planning reads the
    index back from this tail (``catalog.objects.object_index``) and the refs when it restores
    an object without them (``restore_plan.dedup_sources``)."""
    suffix = f',"stream":{int(stream)},"status":{int(status)},' + index_fields(session, index, refs)
    return attrs[:-1] + suffix if len(attrs) > 2 else "{" + suffix[1:]


def send_durable(ctx: StageContext, durable: list[Durable]) -> None:
    """The store's side: ``durable`` objects in CATALOG buffers, the last flagged to commit."""
    P = W.PREFIX_LEN
    limit = ctx.pool.buffer_size
    names = sorted({vol for item in durable for vol, _ in item.spans})  # a session uses few volumes
    number = {name: k for k, name in enumerate(names)}
    i = 0
    while True:
        buf = ctx.alloc_buf()
        d = buf.data
        pos = W.pack_names(d, P, names)
        count = 0
        while i < len(durable):
            item = durable[i]
            doc, digest, stream = item.ident
            need = W.CATALOG_REC.size + len(doc) + W.PIECE.size * len(item.spans) + W.REF.size * len(item.refs)
            if pos + need > limit:
                if count == 0:
                    raise InternalError(f"object {item.footer.object_index}: catalog record of {need} bytes "
                                     "does not fit an empty buffer")
                break
            f = item.footer
            W.CATALOG_REC.pack_into(d, pos, f.object_index, f.status, digest, stream, f.stored_bytes, len(doc),
                                    len(item.spans), len(item.refs))
            pos += W.CATALOG_REC.size
            d[pos: pos + len(doc)] = doc
            pos += len(doc)
            for vol, first in item.spans:
                W.PIECE.pack_into(d, pos, number[vol], first)
                pos += W.PIECE.size
            for ref in item.refs:
                W.REF.pack_into(d, pos, ref)
                pos += W.REF.size
            count += 1
            i += 1
        last = i >= len(durable)
        W.put_prefix(d, W.CATALOG, 0, a=count, b=int(last))
        buf.length = pos
        del d
        ctx.send_buf(buf)
        if last:
            return


class CatalogStage:
    """Tail after the store: catalogues the objects of CATALOG buffers, committing at each
    durability point. Result: objects and bytes catalogued.

    Runs in the initiator with its ``site``, or as a process module opening its own site
    from the parameters (as the store stage does).
    """

    def __init__(self, params: Any, site: Site | None = None) -> None:
        self.params, self.site = params, site

    def run(self, ctx: StageContext) -> dict[str, int]:
        p = self.params
        site = self.site if self.site is not None else Site.open(p.settings, passphrase=p.passphrase, node=p.node,
                                                                 tape=p.tape)
        try:
            cat = Cataloguer(site, p)
            while (buf := ctx.receive_buf()) is not None:
                d = buf.data
                _kind, _i, _s, _o, count, commit, _c = W.get_prefix(d)
                names, pos = W.unpack_names(d, W.PREFIX_LEN)
                for _ in range(count):
                    index, status, digest, stream, stored, lc, npieces, nrefs = W.CATALOG_REC.unpack_from(d, pos)
                    pos += W.CATALOG_REC.size
                    doc = d[pos: pos + lc]
                    pos += lc
                    spans = []
                    for _ in range(npieces):
                        vol, first = W.PIECE.unpack_from(d, pos)
                        spans.append((names[vol], first))
                        pos += W.PIECE.size
                    refs = tuple(W.REF.unpack_from(d, pos + k * W.REF.size)[0] for k in range(nrefs)) if nrefs else ()
                    pos += nrefs * W.REF.size
                    cat.add(index, status, digest, stream, stored, doc, tuple(spans), refs)
                    del doc
                del d
                ctx.free_buf(buf)
                if commit:
                    cat.commit()
            cat.commit()
            return {"objects": cat.objects, "bytes": cat.bytes}
        finally:
            if self.site is None:
                site.close()
