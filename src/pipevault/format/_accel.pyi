"""Type stub of the compiled superblock paths and field lists (``_accel.c``, ``_accel_fields.c``)."""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pipevault.format._codecs import Buffer

T = TypeVar("T")

def checksum(buf: Buffer, start: int, end: int, /) -> int:
    """xxh3-64 of ``buf[:56]`` and of ``buf[start:end]`` without the stored bytes of DATA records."""

def pack_plain(allocate: Callable[[], memoryview], buf: memoryview | None, pos: int, flags: int, session_id: bytes,
               seq: int, size_log2: int, required: int, optional: int, header: bytes, footer: bytes,
               data: Buffer, done: list[memoryview], points: list[Any], point: tuple[Any, ...], hashed: bool, /
               ) -> tuple[int, memoryview, int]:
    """Pack a whole chunk (``SessionWriter._put_plain``); ``(superblocks sealed, open buffer, pos)``."""

def unpack_stored(compression: int, pieces: Sequence[Buffer], plain_len: int, content_hash: bytes | None, /
                  ) -> bytes | None:
    """The verified plaintext of a compressed chunk's stored bytes in ``pieces``; None for anything unusual."""

def sole_data(buf: Buffer, /) -> tuple[bytes, int, int, int, int, int, int, int, int] | None:
    """``(session_id, seq, checksum, object_index, chunk_seq, object_offset, stored_offset, start,
    end)`` of a valid superblock holding nothing but one DATA record; None for anything else."""

def decode_fields(body: Buffer, table: tuple[tuple[str, int] | None, ...], cls: type = ...,
                  defaults: dict[str, Any] = ..., /) -> Any:
    """The values of a well-formed field list (``_fields._decode_values``), or with ``cls`` and
    ``defaults`` the record; None for anything else."""

def encode_fields(plan: tuple[tuple[str, int, int, Any], ...], values: dict[str, Any], missing: object, /
                  ) -> bytes | None:
    """The field list of ``values`` (``_fields._pack_python``); None for an unusual value."""

def record_spans(payload: Buffer, /) -> tuple[list[tuple[int, int, int, int]], int]:
    """``(type, flags, start, end)`` of each sound record and where the walk stopped (``_records.record_spans``)."""

def make(cls: type[T], /, *values: Any) -> T:
    """``cls(*values)`` for a frozen slotted dataclass, without running its ``__init__``."""

def chunk_header(body: Buffer, cls: type, compressions: list[Any], encryptions: list[Any], dedups: list[Any],
                 flags: list[Any], /) -> Any:
    """``ChunkHeader.unpack(body)`` of a sound header; None for anything else."""

def chunk_footer(body: Buffer, cls: type, /) -> Any:
    """``ChunkFooter.unpack(body)``; None for a short body."""

def walk_chunks(block: memoryview, session_id_bytes: bytes, expected: int, chunk: Any, got: int,
                pieces: list[memoryview] | None, obj_index: int, next_chunk: int, obj_offset: int,
                delivered_index: int, delivered_seq: int, first_seq: int, defer: int, session_id: Any,
                types: tuple[Any, ...], /) -> tuple[Any, ...] | None:
    """A superblock of compressed chunks' records read as ``SessionReader.feed`` would; None to decline."""

def frame_whole(object_index: int, header_body: Buffer, plain: Buffer, compression: int, level: int,
                packer: Callable[[Buffer], bytes] | None, hasher: Callable[[Buffer], Any] | None,
                algo: int, repeats: set[bytes] | None, repeats_max: int,
                /) -> tuple[bytes, int, int, bytes | None] | None:
    """``(records, stored_len, required, dedup_hash)`` of a small object framed whole without keys
    (``_framed.frame_whole``); None for arguments outside that path."""
