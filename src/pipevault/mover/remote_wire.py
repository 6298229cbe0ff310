"""A backup stream from another machine: what a server checks before its store sees it.

A remote backup's client sends the buffers of its encoders as they are (the in-pipe layout
of :mod:`pipevault.mover._wire`: packed records and JSON catalog docs, no Python objects).
The server's :class:`Admit` stage, right after its network agent, checks every buffer before
the store stage parses it: only the kinds an encoder emits, every length inside its buffer,
archive headers that parse, catalog docs of the documented shape, known object statuses,
and (when the class encrypts) only encrypted data. A client can then at worst store
nonsense under its own name; it cannot crash, confuse or mislead the server's store.

Also here: :func:`version_to_wire` and :func:`version_from_wire`, a catalog version as JSON.
"""

from __future__ import annotations

import json
from typing import Any

from pipevault.catalog.objects import VersionInfo
from pipevault.errors import PipevaultError
from pipevault.format import ArchiveHeader, ChunkHeader, Encryption, ObjectStatus
from pipevault.format._superblock import Required
from pipevault.mover import _wire as W
from pipevault.mover.errors import RemoteStreamInvalid
from pipevault.pipe import StageContext

P = W.PREFIX_LEN
STATUSES = (ObjectStatus.COMPLETE, ObjectStatus.CHANGED, ObjectStatus.ABORTED)
EXTENT_LEN = 16


def _within(length: int, pos: int, n: int) -> None:
    if pos + n > length:
        raise RemoteStreamInvalid(f"a record of {n} bytes at byte {pos} runs past its {length}-byte buffer")


def check_doc(raw: memoryview) -> None:
    """A catalog doc (:func:`pipevault.mover._wire.dumps`): its head ``[file space, high name,
    low name, type, size]`` and its attributes, a JSON object of numbers, text or null.

    Raises:
        RemoteStreamInvalid: anything else.
    """
    try:
        head, attributes_text = W.loads(raw)
        attributes = json.loads(attributes_text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RemoteStreamInvalid(f"a catalog doc of the backup stream is not JSON: {exc}") from exc
    if not (isinstance(head, list) and len(head) == 5 and all(isinstance(x, str) for x in head[:3])
            and all(type(x) is int and x >= 0 for x in head[3:5]) and isinstance(attributes, dict)
            and all(isinstance(k, str) and (v is None or isinstance(v, int | float | str))
                    for k, v in attributes.items())):
        raise RemoteStreamInvalid("a catalog doc of the backup stream is not [file space, high name, low name, "
                                  "type, size] and an object of attributes")


def _header(raw: memoryview) -> None:
    try:
        ArchiveHeader.unpack(raw)
    except PipevaultError as exc:
        raise RemoteStreamInvalid(f"an archive header of the backup stream is malformed: {exc.message}") from exc


def _status(status: int) -> None:
    if status not in STATUSES:
        raise RemoteStreamInvalid(f"an object status of the backup stream is {status}")


class Admit:
    """Server stage after the network agent: checks each buffer (see the module doc) and
    passes it on untouched. ``encrypt``: the class encrypts, so every chunk must be.

    Raises:
        RemoteStreamInvalid: the first thing that is not a well-formed backup stream.
    """

    def __init__(self, encrypt: bool) -> None:
        self.encrypt = encrypt

    def run(self, ctx: StageContext) -> None:
        while (buf := ctx.receive_buf()) is not None:
            self.check(buf.data, buf.length)
            ctx.send_buf(buf)

    def check(self, d: memoryview, length: int) -> None:
        """Check one buffer of ``length`` bytes."""
        _within(length, 0, P)
        kind, _index, _seq, _off, a, b, c = W.get_prefix(d)
        if kind == W.ENCODED:
            _within(length, P, a + b + c)
            self._chunk(d[P: P + a])
        elif kind == W.BEGIN:
            _within(length, P, W.BEGIN_REC.size)
            lh, lc, lx = W.BEGIN_REC.unpack_from(d, P)
            pos = P + W.BEGIN_REC.size
            _within(length, pos, lh + lc + lx)
            _header(d[pos: pos + lh])
            check_doc(d[pos + lh: pos + lh + lc])
            if lx % EXTENT_LEN:
                raise RemoteStreamInvalid(f"an extent list of {lx} bytes is not whole (offset, length) pairs")
        elif kind == W.END:
            _within(length, P, W.END_REC.size)
            _status(W.END_REC.unpack_from(d, P)[0])
        elif kind == W.BATCH_ENCODED:
            pos = P
            for _ in range(a):
                _within(length, pos, W.BATCH_ENC.size)
                (_i, lr, lc, chunks, _plain, _stored, required, status, _digest, _hashed,
                 _dhash) = W.BATCH_ENC.unpack_from(d, pos)
                pos += W.BATCH_ENC.size
                _within(length, pos, lr + lc)
                _status(status)
                if self.encrypt and chunks and not required & Required.AES_GCM:
                    raise RemoteStreamInvalid("the class encrypts but the client sent an object in the clear")
                check_doc(d[pos + lr: pos + lr + lc])
                pos += lr + lc
        else:
            raise RemoteStreamInvalid(f"a buffer of kind {kind} has no place in a backup stream between machines")

    def _chunk(self, raw: memoryview) -> None:
        try:
            header = ChunkHeader.unpack(raw)
        except PipevaultError as exc:
            raise RemoteStreamInvalid(f"a chunk header of the backup stream is malformed: {exc.message}") from exc
        if self.encrypt and header.encryption is not Encryption.AES_256_GCM:
            raise RemoteStreamInvalid("the class encrypts but the client sent a chunk in the clear")


def version_to_wire(v: VersionInfo) -> dict[str, Any]:
    """A catalog version as a JSON-ready mapping."""
    d = v._asdict()
    d["digest"] = v.digest.hex() if v.digest is not None else None
    return d


def version_from_wire(d: Any) -> VersionInfo:
    """Inverse of :func:`version_to_wire` (from a server the client authenticated).

    Raises:
        RemoteStreamInvalid: not the fields of a version.
    """
    fields = set(VersionInfo._fields)
    if not isinstance(d, dict) or set(d) != fields:
        raise RemoteStreamInvalid("a version from the server lacks or adds fields")
    digest = d["digest"]
    return VersionInfo(**{**d, "digest": bytes.fromhex(digest) if digest is not None else None})
