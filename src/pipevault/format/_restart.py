"""Restart from point of failure: where a session continues after its last durable superblock."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from pipevault.format._codecs import Buffer
from pipevault.format._events import ChunkRead, Damage, ObjectEnded, ObjectStarted
from pipevault.format._fields import ArchiveHeader
from pipevault.format._reader import SessionReader
from pipevault.format._superblock import Required, peek_header, verify
from pipevault.format.errors import FormatError, NothingToResumeError


@dataclass(frozen=True)
class ResumePoint:
    """Everything a writer needs to continue a session (docs/format.md §9).

    The caller re-sends object ``open_object`` from ``object_offset`` (its chunk
    ``chunk_seq``), or, when ``open_object`` is None, starts object ``next_object_index``.
    Objects below those indexes are complete on the media.
    """

    session_id: uuid.UUID
    size: int
    key_check: bytes
    required: Required
    next_seq: int
    objects: int
    plain_bytes: int
    stored_bytes: int
    errors: int
    duplicates: int
    next_object_index: int
    open_object: ArchiveHeader | None
    object_first_seq: int
    chunk_seq: int
    object_offset: int
    object_stored: int
    object_duplicates: int
    object_refs: tuple[int, ...] = ()  # the other objects the open object's duplicates repeat so far


def resume_point(blocks: Iterable[Buffer], session_id: uuid.UUID,
                 durable_seq: int | None = None) -> ResumePoint:
    """Compute where ``session_id`` continues, from its superblocks on the media.

    Args:
        blocks: superblocks in media order (other sessions' are skipped by header).
        session_id: the session to resume.
        durable_seq: the last superblock the medium confirmed; later ones are ignored
            (default: every superblock given).

    Raises:
        FormatError: the session's superblocks are damaged or incomplete before that point,
            so the place to continue is not known for certain.
        NothingToResumeError: the session is already complete, or none of it was found.
    """
    reader = SessionReader(session_id, decode=False)
    size = 0
    required = Required.NONE
    objects = errors = duplicates = plain = stored = 0
    obj_first = obj_stored = obj_dups = 0
    obj_refs: set[int] = set()
    for block in blocks:
        view = memoryview(block).cast("B")
        try:
            if peek_header(view).session_id != session_id:
                continue
        except FormatError:
            continue
        header, payload = verify(view)
        if durable_seq is not None and header.seq > durable_seq:
            continue
        size, required = header.size, required | header.required
        for event in reader.feed(header, payload):
            if isinstance(event, Damage):
                raise FormatError(f"session {session_id} is damaged before its resume point: "
                                  f"{event.describe()}")
            if isinstance(event, ObjectStarted):
                obj_first, obj_stored, obj_dups = event.seq, 0, 0
                obj_refs = set()
            elif isinstance(event, ChunkRead):
                plain += event.header.plain_len
                stored += event.header.stored_len
                obj_stored += event.header.stored_len
                obj_dups += bool(event.header.ref)
                if event.header.ref is not None and event.header.ref[0] != event.header.object_index:
                    obj_refs.add(event.header.ref[0])
                duplicates += bool(event.header.ref)
            elif isinstance(event, ObjectEnded):
                objects += 1
                errors += event.footer.status != 0
    if reader.header is None or reader.expected is None:
        raise NothingToResumeError(f"session {session_id} has no readable start on these media")
    if reader.footer is not None:
        raise NothingToResumeError(f"session {session_id} is complete; there is nothing to resume")
    obj = reader.obj
    return ResumePoint(
        session_id=session_id, size=size, key_check=reader.header.key_check, required=required,
        next_seq=reader.expected, objects=objects, plain_bytes=plain, stored_bytes=stored, errors=errors,
        duplicates=duplicates, next_object_index=reader.next_object, open_object=obj,
        object_first_seq=obj_first if obj else 0, chunk_seq=reader.next_chunk if obj else 0,
        object_offset=reader.obj_offset if obj else 0, object_stored=obj_stored if obj else 0,
        object_duplicates=obj_dups if obj else 0, object_refs=tuple(sorted(obj_refs)) if obj else ())
