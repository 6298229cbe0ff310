"""Chunk transforms: encode plaintext into stored bytes and back (docs/format.md §5.4-5.5).

:class:`ChunkEncoder` and :class:`ChunkDecoder` are the codecs a DataPipe runs as
multi-instance stages: each call is independent (per-call random nonce, per-thread
compression contexts), so several threads may share one instance. :class:`ChunkAssembly`
is the reader's incremental form of the decoder: it takes a chunk's stored bytes piece by
piece, as they come out of superblocks, so no piece is copied twice.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import xxhash
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipevault.format._codecs import Buffer, SamplingSelector, Selector, compress, decompress
from pipevault.format._crypto import SessionKeys, dedup_hash
from pipevault.format._records import (
    CHUNK_FLAGS,
    MAX_CHUNK,
    ChunkFlags,
    ChunkFooter,
    ChunkHeader,
    Compression,
    DedupAlgo,
    Encryption,
    new_frozen,
)
from pipevault.format.errors import FormatError, IntegrityError, KeyRequiredError, LimitError

_unpack_stored: Callable[[int, Any, int, bytes | None], bytes | None] | None
try:
    # Hash check and decompression in one call, on the pieces as they arrived (``_accel_codec.c``);
    # None for anything unusual, and the Python code below (its specification) decodes and raises.
    from pipevault.format._accel import unpack_stored as _unpack_stored
except ImportError:
    _unpack_stored = None


@dataclass(frozen=True, slots=True)
class EncodedChunk:
    """A chunk ready to be packed: header, stored bytes and footer.

    ``stored`` is a new buffer owned by the chunk, except for an untransformed chunk, where it
    is a view of the caller's plaintext: the caller keeps that buffer unchanged until the
    writer has packed the chunk (``SessionWriter.add_chunk`` copies it before returning).
    """

    header: ChunkHeader
    stored: Buffer
    footer: ChunkFooter


_DUPLICATE, _STORED_HASH = int(ChunkFlags.DUPLICATE), int(ChunkFlags.STORED_HASH)
_RAW_FALLBACK, _HAS_DEDUP_HASH = int(ChunkFlags.RAW_FALLBACK), int(ChunkFlags.HAS_DEDUP_HASH)
_NO_HASH = bytes(16)
# Enum members as module constants: looking a member up on its class costs ~0.2 us (Python
# 3.11), and the per-chunk paths did so several times per chunk.
_NO_COMPRESSION, _LZ4, _ZSTD = Compression.NONE, Compression.LZ4, Compression.ZSTD
_NO_ENCRYPTION, _AES_256_GCM, _NO_DEDUP = Encryption.NONE, Encryption.AES_256_GCM, DedupAlgo.NONE


def _tampered(h: ChunkHeader) -> IntegrityError:
    return IntegrityError(f"chunk {h.object_index}/{h.chunk_seq} at object offset {h.object_offset} fails "
                          "authentication: altered on media", object_index=h.object_index, chunk=h.chunk_seq)


def _mismatch(h: ChunkHeader) -> IntegrityError:
    return IntegrityError(f"chunk {h.object_index}/{h.chunk_seq} at object offset {h.object_offset} does not "
                          "match its content hash", object_index=h.object_index, chunk=h.chunk_seq)


def _compressed_hashed_as_stored(h: ChunkHeader) -> bool:
    """Whether a chunk is compressed, not encrypted, not a duplicate, and its content hash
    covers its stored bytes (format 1.1): the chunks :func:`decode_stored` decodes from their
    pieces, and a reader may defer."""
    return (h.compression is not _NO_COMPRESSION and h.encryption is not _AES_256_GCM
            and (int(h.flags) & (_STORED_HASH | _DUPLICATE)) == _STORED_HASH)


def _agrees(h: ChunkHeader, footer: ChunkFooter) -> bool:
    """Whether ``footer`` closes the chunk of header ``h`` with the same stored length."""
    return (footer.object_index, footer.chunk_seq, footer.stored_len) == (h.object_index, h.chunk_seq, h.stored_len)


def _unpacked(h: ChunkHeader, stored: Buffer, verified: bool = True) -> Buffer:
    """Decompress decrypted ``stored`` bytes (``stored`` itself when untransformed).

    ``verified``: the bytes were checked (content hash of the stored bytes, or GCM tag), so
    any zstd version decodes them alike and the compiled decoder may run; unverified damaged
    bytes may decode differently under another zstd version than the Python package's.
    """
    if h.compression is _NO_COMPRESSION:
        if h.stored_len != h.plain_len:
            raise FormatError(f"uncompressed chunk {h.object_index}/{h.chunk_seq} "
                              f"stores {h.stored_len} of {h.plain_len} bytes")
        return stored
    if verified and _unpack_stored is not None:
        plain = _unpack_stored(h.compression, (stored,), h.plain_len, None)
        if plain is not None:
            return plain
    return decompress(h.compression, stored, h.plain_len)


def _plain(h: ChunkHeader, stored: Buffer, content_hash: bytes) -> Buffer:
    """Decompress decrypted ``stored`` bytes and check them against ``content_hash``.

    A ``STORED_HASH`` chunk was checked before (its hash covers the stored bytes, or the GCM
    tag does); a chunk of format 1.0 is checked here, on its plaintext.
    """
    plain = _unpacked(h, stored, verified=h.encryption is _AES_256_GCM)
    if not int(h.flags) & _STORED_HASH and xxhash.xxh3_128_digest(plain) != content_hash:
        raise _mismatch(h)
    return plain


def _aad(session_id: uuid.UUID, header: ChunkHeader) -> bytes:
    return session_id.bytes + header.pack()


REPEATS_MAX = 1 << 16  # dedup hashes a ChunkEncoder(raw_repeats=True) remembers (a few MB)


class ChunkEncoder:
    """Turns plaintext chunks of one session into :class:`EncodedChunk`.

    Args:
        session_id: the session the chunks belong to (bound into the encryption).
        keys: the session's keys, or None for no encryption.
        selector: picks compression per chunk (default: zstd-1 unless a sample does not compress).
        dedup: compute the dedup hash of every chunk.
        stored_hash: write format 1.1 chunks (``STORED_HASH``: the content hash covers the
            stored bytes; none under encryption, whose GCM tag covers them); False writes
            chunks as format 1.0 did (the hash of the plaintext, sealed in the footer when
            encrypted).
        raw_repeats: do not compress a chunk whose dedup hash this encoder has given out
            before (with ``dedup``): for a writer that discards duplicates, which drops the
            repeat's data, so compressing it again is wasted (a repeat the writer no longer
            remembers is stored uncompressed, whole and correct). At most ``REPEATS_MAX``
            hashes are remembered; then the memory starts again.
    """

    def __init__(self, session_id: uuid.UUID, *, keys: SessionKeys | None = None,
                 selector: Selector | None = None, dedup: bool = False, stored_hash: bool = True,
                 raw_repeats: bool = False) -> None:
        self.session_id = session_id
        self.keys = keys
        self.selector: Selector = selector if selector is not None else SamplingSelector()
        self.dedup = dedup
        self.stored_hash = stored_hash
        # One AEAD object per session: it holds the expanded key (encrypt is thread-safe).
        self._aead = AESGCM(keys.chunk_key) if keys is not None else None
        # The dedup hashes given out (raw_repeats); compiled framing (_framed) shares it.
        self.repeats: set[bytes] | None = set() if raw_repeats and dedup else None

    def __call__(self, plain: Buffer, object_index: int, chunk_seq: int, object_offset: int) -> EncodedChunk:
        """Encode one chunk of at most 64 MiB.

        Raises:
            LimitError: the chunk is larger than 64 MiB.
        """
        view = memoryview(plain).cast("B")
        return self.encode(view, object_index, chunk_seq, object_offset, self.selector(view))

    def transform(self, view: memoryview, choice: tuple[Compression, int],
                  ) -> tuple[Buffer, Compression, int, int, DedupAlgo, bytes]:
        """What every chunk gets before its records are made: ``(stored bytes, compression,
        level, flags, dedup algorithm, dedup hash)`` for the plaintext ``view`` (bytes) and
        the selector's ``choice``; ``flags`` an int without ``STORED_HASH``.

        Raises:
            LimitError: the chunk is larger than 64 MiB.
        """
        if len(view) > MAX_CHUNK:
            raise LimitError(f"chunk of {len(view)} bytes exceeds the 64 MiB limit")
        flags = 0  # ints: IntFlag operations run Python code, and this runs per chunk
        comp, level = choice
        algo, dhash = _NO_DEDUP, bytes(32)
        if self.dedup:
            algo, dhash = dedup_hash(view, self.keys)
            flags = _HAS_DEDUP_HASH
            repeats = self.repeats
            if repeats is not None:
                if dhash in repeats:
                    comp = _NO_COMPRESSION  # a repeat: the writer discards its data
                else:
                    if len(repeats) >= REPEATS_MAX:
                        repeats.clear()
                    repeats.add(dhash)
        stored: Buffer = view
        if comp is not _NO_COMPRESSION:
            packed = compress(comp, level, view)
            if len(packed) < len(view):
                stored = packed
            else:
                comp, level, flags = _NO_COMPRESSION, 0, flags | _RAW_FALLBACK
        if comp is _NO_COMPRESSION:
            level = 0
        return stored, comp, level, flags, algo, dhash

    def encode(self, view: memoryview, object_index: int, chunk_seq: int, object_offset: int,
               choice: tuple[Compression, int]) -> EncodedChunk:
        """:meth:`__call__` with the selector's ``(compression, level)`` already chosen; ``view`` is bytes."""
        stored, comp, level, flags, algo, dhash = self.transform(view, choice)
        if self.stored_hash:
            return self._encode_stored_hash(view, stored, object_index, chunk_seq, object_offset, comp, level,
                                            CHUNK_FLAGS[flags | _STORED_HASH], algo, dhash)
        # Hashed after compressing: the compressor has just pulled the plaintext into cache.
        content_hash = xxhash.xxh3_128_digest(view)
        cflags = CHUNK_FLAGS[flags]
        if self.keys is None:
            header = ChunkHeader(object_index, chunk_seq, object_offset, len(view), len(stored), comp, level,
                                 _NO_ENCRYPTION, cflags, algo, bytes(12), content_hash, dhash)
            return EncodedChunk(header, stored, ChunkFooter(object_index, chunk_seq, len(stored)))
        nonce = secrets.token_bytes(12)
        header = ChunkHeader(object_index, chunk_seq, object_offset, len(view), len(stored), comp, level,
                             _AES_256_GCM, cflags, algo, nonce, bytes(16), dhash)
        enc = Cipher(algorithms.AES(self.keys.chunk_key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(_aad(self.session_id, header))
        ciphertext = enc.update(stored)
        sealed = enc.update(content_hash) + enc.finalize()
        footer = ChunkFooter(object_index, chunk_seq, len(stored), sealed, enc.tag)
        return EncodedChunk(header, ciphertext, footer)

    def _encode_stored_hash(self, view: memoryview, stored: Buffer, object_index: int, chunk_seq: int,
                            object_offset: int, comp: Compression, level: int, flags: ChunkFlags,
                            algo: DedupAlgo, dhash: bytes) -> EncodedChunk:
        """A format 1.1 chunk: the content hash of the stored bytes, or the GCM tag alone."""
        n = len(stored)
        if self._aead is None:
            # Hashed right after compressing: the compressed bytes are still in cache.
            header = ChunkHeader(object_index, chunk_seq, object_offset, len(view), n, comp, level,
                                 _NO_ENCRYPTION, flags, algo, bytes(12), xxhash.xxh3_128_digest(stored), dhash)
            return new_frozen(EncodedChunk, header, stored, ChunkFooter(object_index, chunk_seq, n))
        nonce = secrets.token_bytes(12)
        header = ChunkHeader(object_index, chunk_seq, object_offset, len(view), n, comp, level,
                             _AES_256_GCM, flags, algo, nonce, _NO_HASH, dhash)
        sealed = self._aead.encrypt(nonce, stored, _aad(self.session_id, header))  # ciphertext, then the tag
        footer = ChunkFooter(object_index, chunk_seq, n, _NO_HASH, sealed[n:])
        return EncodedChunk(header, memoryview(sealed)[:n], footer)

    def duplicate(self, object_index: int, chunk_seq: int, object_offset: int, original: ChunkHeader,
                  of: tuple[int, int]) -> EncodedChunk:
        """A chunk that repeats the plaintext of chunk ``of`` (object index, chunk seq): no data."""
        flags = ChunkFlags.DUPLICATE | ChunkFlags.HAS_DEDUP_HASH
        header = ChunkHeader(object_index, chunk_seq, object_offset, original.plain_len, 0, _NO_COMPRESSION,
                             0, _NO_ENCRYPTION, flags, original.dedup_algo, bytes(12),
                             bytes(16) if self.keys else original.content_hash, original.dedup_hash, of)
        return EncodedChunk(header, b"", ChunkFooter(object_index, chunk_seq, 0))


class ChunkDecoder:
    """Turns stored chunks of one session back into plaintext, verifying everything.

    Args:
        session_id: the session the chunks belong to.
        keys: the session's keys (None for an unencrypted session).
    """

    def __init__(self, session_id: uuid.UUID, keys: SessionKeys | None = None) -> None:
        self.session_id = session_id
        self.keys = keys
        self._aead = AESGCM(keys.chunk_key) if keys is not None else None

    def __call__(self, header: ChunkHeader, stored: Buffer, footer: ChunkFooter) -> Buffer:
        """The chunk's plaintext: ``stored`` itself when untransformed (no copy), else new bytes.

        Raises:
            FormatError: header and footer disagree, or the stored length is wrong.
            KeyRequiredError: the chunk is encrypted and the decoder has no keys.
            IntegrityError: tag, decompression or content hash check failed; nothing is returned.
        """
        if not _agrees(header, footer) or len(stored) != header.stored_len:
            raise FormatError(f"chunk {header.object_index}/{header.chunk_seq}: header, footer and data "
                              f"lengths disagree ({header.stored_len}, {footer.stored_len}, {len(stored)})")
        if int(header.flags) & _DUPLICATE:
            raise FormatError(f"chunk {header.object_index}/{header.chunk_seq} is a duplicate; "
                              "its data is in the chunk it refers to")
        content_hash = header.content_hash
        stored_hash = int(header.flags) & _STORED_HASH
        if header.encryption is _AES_256_GCM:
            if self._aead is None:
                raise KeyRequiredError(f"chunk {header.object_index}/{header.chunk_seq} is encrypted; "
                                       "no key given")
            if stored_hash:
                try:
                    stored = self._aead.decrypt(header.nonce, bytes(stored) + footer.tag,
                                                _aad(self.session_id, header))
                except InvalidTag as exc:
                    raise _tampered(header) from exc
                return _unpacked(header, stored)
            assert self.keys is not None
            dec = Cipher(algorithms.AES(self.keys.chunk_key), modes.GCM(header.nonce, footer.tag)).decryptor()
            dec.authenticate_additional_data(_aad(self.session_id, header))
            stored = dec.update(stored)
            content_hash = dec.update(footer.sealed_hash)
            try:
                dec.finalize()
            except InvalidTag as exc:
                raise _tampered(header) from exc
        elif stored_hash:
            return decode_stored(header, (stored,))
        return _plain(header, stored, content_hash)


def decode_stored(header: ChunkHeader, pieces: tuple[Buffer, ...]) -> Buffer:
    """The plaintext of a chunk handed out stored (``ChunkRead.stored``): its stored bytes,
    the ``pieces`` joined, are checked against the content hash before anything is
    decompressed. A new buffer owned by the caller; the pieces are read during the call only.
    Thread-safe, and the compiled decoder runs without the interpreter lock.

    Raises:
        IntegrityError: the bytes do not match the hash, or do not decompress to
            ``plain_len`` bytes (exactly where the reader, decoding itself, would have
            reported integrity damage).
    """
    if _unpack_stored is not None and header.compression is not _NO_COMPRESSION:
        plain = _unpack_stored(header.compression, pieces, header.plain_len, header.content_hash)
        if plain is not None:
            return plain
    stored = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    # Checked before decompressing: damaged bytes never reach the decompressor.
    if xxhash.xxh3_128_digest(stored) != header.content_hash:
        raise _mismatch(header)
    return _unpacked(header, stored)


class ChunkAssembly:
    """One chunk's stored bytes, gathered piece by piece while superblocks are read; not thread-safe.

    Each piece is consumed by :meth:`add` at once, so the caller may reuse the superblock
    buffer afterwards, with one exception: a chunk that arrives whole in one piece is kept as
    a view of it (no copy) until :meth:`detach` or :meth:`finish`, unless it needs decrypting
    with known keys, and decoded at :meth:`finish` by the one-shot :class:`ChunkDecoder`. How
    the pieces of other chunks are consumed:

    - encrypted, keys known: decrypted straight into the chunk's own buffer (the copy out of
      the superblock and the decryption are one pass);
    - untransformed, or with a content hash of the stored bytes (``STORED_HASH``): appended to
      the chunk's own buffer and hashed while still in cache; the hash is compared before
      anything is decompressed;
    - otherwise appended, and decoded at :meth:`finish` with the one-shot :class:`ChunkDecoder`.

    With ``views``, pieces that need no decryption are kept as the views they came in (hashed
    in place): the caller keeps every superblock of the chunk unchanged until it is done with
    what :meth:`finish` returns, and an untransformed chunk is never copied at all.

    Args:
        header: the chunk's header (its stored bytes are ``header.stored_len`` long).
        decoder: the session's decoder, or None when the keys are not known yet.
        views: keep pieces as views instead of copying them (see above).
    """

    __slots__ = ("_buf", "_dec", "_hash", "_hashed", "_pieces", "_view", "_whole", "defers", "header")

    def __init__(self, header: ChunkHeader, decoder: ChunkDecoder | None, views: bool = False,
                 defer: bool = False) -> None:
        self.header = header
        # Deferred: a compressed chunk whose hash covers its stored bytes, gathered unchecked
        # and handed out as stored (take_stored); the caller checks and decodes it elsewhere.
        self.defers = defer and _compressed_hashed_as_stored(header)
        self._buf: bytearray | memoryview | None = None
        self._view: memoryview | None = None
        self._whole: memoryview | bytearray | None = None  # the chunk's stored bytes, arrived in one piece
        self._dec: Any = None
        self._hash: Any = None
        self._hashed = False
        self._pieces: list[memoryview] | None = None
        keys = decoder.keys if decoder is not None else None
        if header.encryption is _AES_256_GCM:
            if keys is not None and decoder is not None:
                dec = Cipher(algorithms.AES(keys.chunk_key), modes.GCM(header.nonce)).decryptor()
                dec.authenticate_additional_data(_aad(decoder.session_id, header))
                self._dec = dec
                # update_into wants room for a cipher block beyond the input.
                self._buf = bytearray(header.stored_len + 16)
                self._view = memoryview(self._buf)
        elif header.compression is _NO_COMPRESSION:
            self._hashed = True  # the hasher is made with the first piece that is not the whole chunk
        elif int(header.flags) & _STORED_HASH:
            # Compressed pieces kept as views are hashed by the compiled decoder at finish,
            # deferred ones by whoever decodes them (decode_stored).
            self._hashed = not (self.defers or (views and _unpack_stored is not None))
        if views and self._dec is None:
            self._pieces = []

    def add(self, piece: memoryview, at: int) -> None:
        """Take the piece of stored bytes that starts at stored offset ``at`` (pieces come in order)."""
        if self._view is not None:
            self._dec.update_into(piece, self._view[at:])
            return
        if not at and len(piece) == self.header.stored_len and self._dec is None:
            # The whole chunk in one piece (every small object): kept as it is and decoded at
            # finish in one call, without a streaming hash or a copy.
            self._whole = piece
            return
        if self._hashed and self._hash is None:
            self._hash = xxhash.xxh3_128()
        if self._pieces is not None:
            self._pieces.append(piece)
            if self._hash is not None:
                self._hash.update(piece)
            return
        if self._buf is None:
            self._buf = bytearray(piece)
        else:
            # A new buffer per chunk grown by appending (no zero fill), never a reused one:
            # data handed out must not change under a caller that keeps it.
            assert isinstance(self._buf, bytearray)
            self._buf += piece
        if self._hash is not None:
            self._hash.update(piece)  # after the copy, which pulled the piece into cache

    @classmethod
    def holding(cls, header: ChunkHeader, pieces: list[memoryview]) -> ChunkAssembly:
        """The assembly ``ChunkAssembly(header, decoder, views=True)`` makes for a chunk that
        ``_accel.walk_chunks`` reads (compressed, hashed as stored, no key, not deferred), with
        ``pieces`` held as views: what the reader's compiled walk leaves open."""
        asm = cls.__new__(cls)
        asm.header, asm.defers, asm._hashed, asm._pieces = header, False, False, pieces
        asm._buf = asm._view = asm._whole = asm._dec = asm._hash = None
        return asm

    def views_held(self) -> list[memoryview] | None:
        """The list of pieces of a chunk held only as views (compressed, hashed at :meth:`finish`
        by the compiled decoder, no piece hashed or kept whole yet), which the reader's compiled
        walk (``_accel.walk_chunks``) extends in place; None for any other assembly."""
        if self._pieces is None or self._hashed or self._whole is not None or self.defers:
            return None
        return self._pieces

    def take_stored(self, footer: ChunkFooter) -> tuple[Buffer, ...] | None:
        """A deferred chunk's stored bytes, unchecked, as the pieces they are held in (views
        of superblocks as :meth:`finish` describes, or the chunk's own buffer); None when the
        chunk does not defer or its footer or length disagree with its header (then
        :meth:`finish` raises the precise error). Check and decode them with :func:`decode_stored`.
        """
        h = self.header
        if not self.defers or not _agrees(h, footer):
            return None
        got: tuple[Buffer, ...]
        if self._whole is not None:
            got = (self._whole,)
        elif self._pieces is not None:
            got = tuple(self._pieces)
        else:
            got = (self._buf,) if self._buf is not None else ()
        if sum(len(p) for p in got) != h.stored_len:
            return None
        self._whole = self._pieces = self._buf = None
        return got

    def detach(self) -> None:
        """Copy a piece still held as a view: its superblock buffer is about to be reused."""
        if isinstance(self._whole, memoryview):
            self._whole = bytearray(self._whole)

    def finish(self, footer: ChunkFooter, decoder_for: Callable[[ChunkHeader], ChunkDecoder]
               ) -> Buffer | tuple[memoryview, ...]:
        """The chunk's verified plaintext, once all its stored bytes were added.

        One buffer; with ``views``, an untransformed chunk that came in several pieces is
        returned as those pieces, in order (views of the superblocks, never copied).
        ``decoder_for`` supplies the decoder where this assembly did not have one.

        Raises:
            the errors of :meth:`ChunkDecoder.__call__`; nothing is returned on failure.
        """
        h = self.header
        if self._view is not None:
            return self._decrypted(footer)
        if self._whole is not None:
            whole, self._whole = self._whole, None
            # The one-shot decoder checks exactly what the piecewise path below does.
            return decoder_for(h)(h, whole, footer)
        stored: Buffer
        if self._pieces is not None:
            pieces, self._pieces = self._pieces, None
            if len(pieces) > 1 and h.compression is _NO_COMPRESSION and self._hash is not None and _agrees(
                    h, footer) and h.stored_len == h.plain_len == sum(
                    len(p) for p in pieces) and not int(h.flags) & _DUPLICATE:
                if self._hash.digest() != h.content_hash:
                    raise _mismatch(h)
                return tuple(pieces)
            if self._hash is None and _unpack_stored is not None and _agrees(h, footer) and (
                    _compressed_hashed_as_stored(h)) and sum(len(p) for p in pieces) == h.stored_len:
                # Hashed and decompressed as they are, without a join (zstd), or with the join
                # and the hash in one pass (lz4); None leaves the checks below to raise.
                plain = _unpack_stored(h.compression, pieces, h.plain_len, h.content_hash)
                if plain is not None:
                    return plain
            # One allocation for the whole chunk, no zero fill and no regrowth.
            stored = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        else:
            stored = self._buf if self._buf is not None else b""
        self._buf = None
        flags = int(h.flags)
        if self._hash is None or len(stored) != h.stored_len or not _agrees(h, footer) or flags & _DUPLICATE or (
                h.stored_len != h.plain_len and not flags & _STORED_HASH):
            # Transformed as in format 1.0, or something is off: the one-shot decoder checks and raises.
            return decoder_for(h)(h, stored, footer)
        if self._hash.digest() != h.content_hash:
            raise _mismatch(h)
        return _unpacked(h, stored)

    def _decrypted(self, footer: ChunkFooter) -> Buffer:
        h = self.header
        assert self._view is not None and isinstance(self._buf, bytearray)
        buf, self._buf = self._buf, None
        self._view.release()
        self._view = None
        if not _agrees(h, footer):
            raise FormatError(f"chunk {h.object_index}/{h.chunk_seq}: header and footer lengths disagree "
                              f"({h.stored_len}, {footer.stored_len})")
        stored_hash = int(h.flags) & _STORED_HASH
        content_hash = _NO_HASH if stored_hash else self._dec.update(footer.sealed_hash)
        try:
            self._dec.finalize_with_tag(footer.tag)
        except InvalidTag as exc:
            raise _tampered(h) from exc
        del buf[h.stored_len:]
        return _unpacked(h, buf) if stored_hash else _plain(h, buf, content_hash)
