"""Metadata records with field lists: session and archive headers and footers, options.

A field list is a run of ``u16 id, u32 length, value`` entries (docs/format.md §4). Fields
equal to their default are not written; unknown fields are skipped unless their id has the
critical bit, so later versions can add fields that old readers ignore.
"""

from __future__ import annotations

import dataclasses
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pipevault.format._records import ALL
from pipevault.format.errors import FormatError, TruncatedError, UnsupportedFeatureError

_ENTRY = struct.Struct("<HI")
CRITICAL = 0x8000
_INTS: dict[str, struct.Struct] = {"u8": struct.Struct("<B"), "u32": struct.Struct("<I"),
                                   "u64": struct.Struct("<Q"), "i64": struct.Struct("<q")}

T = TypeVar("T", bound="FieldRecord")
_KIND_CODES = {"u8": 0, "u32": 1, "u64": 2, "i64": 3, "str": 4, "bytes": 5, "uuid": 6, "xattrs": 7}
"""The kinds as ``_accel_fields.c`` numbers them."""

_decode_fields: Callable[..., Any] | None
_encode_fields: Callable[[tuple[tuple[str, int, int, Any], ...], dict[str, Any], object], bytes | None] | None
try:
    # Field lists in one C call each (``_accel_fields.c``); the loops below are their specification.
    from pipevault.format._accel import decode_fields as _decode_fields
    from pipevault.format._accel import encode_fields as _encode_fields
except ImportError:  # a source tree whose extension was not built: the Python code runs
    _decode_fields = _encode_fields = None


class FieldRecord:
    """Base of the field-list records: ``FIELDS`` maps attribute name to (id, kind).

    Kinds: ``u8``, ``u32``, ``u64``, ``i64``, ``str``, ``bytes``, ``uuid``, ``xattrs``
    (a repeated field of ``u16 name_len, name, value``).
    """

    FIELDS: ClassVar[dict[str, tuple[int, str]]] = {}

    def pack(self) -> bytes:
        """The field list of every non-default attribute."""
        return _pack(type(self), self.__dict__)

    @classmethod
    def pack_fields(cls, **values: Any) -> bytes:
        """``cls(**values).pack()`` without making the record (a backup's encoders pack an
        archive header per file; building the frozen record first doubled the cost).

        Raises:
            FormatError: a name that is not a field of ``cls``, or a field without a
                default left out.
        """
        names = _NAMES.get(cls)
        if names is None:
            names = _NAMES[cls] = frozenset(p[0] for p in _plan(cls))
        if not values.keys() <= names:
            unknown = ", ".join(sorted(values.keys() - names))
            raise FormatError(f"{cls.__name__} has no field {unknown}")
        return _pack(cls, values)

    @classmethod
    def unpack(cls: type[T], body: memoryview) -> T:
        """Decode a field list.

        Raises:
            TruncatedError: an entry runs past the body.
            FormatError: a repeated single field, a bad length or bad UTF-8.
            UnsupportedFeatureError: an unknown critical field.
        """
        # Every object of a restore passes here twice (header and footer): the compiled decoder
        # takes the well-formed case, _decode_values (its specification) the rest and every error.
        dec = _DECODING.get(cls) or _decoding(cls)
        if _decode_fields is not None and not dec.required:
            made = _decode_fields(body, dec.table, cls, dec.defaults)  # the record, made in C
            if made is not None:
                return made  # type: ignore[no-any-return]
        values = _decode_values(cls.__name__, dec, body)
        if dec.required and not dec.required <= values.keys():
            missing = ", ".join(sorted(dec.required - values.keys()))
            raise FormatError(f"{cls.__name__} lacks a field it must have: {missing}")
        return fields_record(cls, {**dec.defaults, **values})


def fields_record(cls: type[T], values: dict[str, Any]) -> T:
    """``cls(**values)`` for a ``values`` that names every field of ``cls`` with a value of
    its type, made without ``__init__`` (see :class:`_Decoding`); ``values`` is not kept."""
    record = object.__new__(cls)
    record.__dict__.update(values)
    return record


def _decode_values(what: str, dec: _Decoding, body: memoryview) -> dict[str, Any]:
    """The values of the field list ``body`` (defaults not filled in): the specification of
    ``_accel.decode_fields``, and the path that raises the errors of :meth:`FieldRecord.unpack`."""
    by_id = dec.by_id
    values: dict[str, Any] = {}
    pos = 0
    end = len(body)
    entry_at = _ENTRY.unpack_from
    while pos < end:
        if pos + 6 > end:
            raise TruncatedError(f"{what} field entry cut at byte {pos}")
        fid, length = entry_at(body, pos)
        pos += 6
        stop = pos + length
        if stop > end:
            raise TruncatedError(f"{what} field {fid} of {length} bytes runs past the record")
        known = by_id.get(fid)
        if known is None:
            known = by_id.get(fid & ~CRITICAL) if fid & CRITICAL else None
            if known is None:
                if fid & CRITICAL:
                    raise UnsupportedFeatureError(f"{what} has unknown critical field {fid & ~CRITICAL}")
                pos = stop
                continue
        name, kind, fmt = known
        if kind == "xattrs":
            values.setdefault(name, []).append(_decode_xattr(body[pos:stop], what))
            pos = stop
            continue
        if name in values:
            raise FormatError(f"{what} field {name} appears twice")
        if fmt is not None and length == fmt.size:  # the common case, decoded in place
            values[name] = fmt.unpack_from(body, pos)[0]
        elif kind == "bytes":
            values[name] = bytes(body[pos:stop])
        else:
            values[name] = _decode(kind, body[pos:stop], f"{what}.{name}")
        pos = stop
    if "xattrs" in values:
        values["xattrs"] = tuple(values["xattrs"])
    return values


@dataclass(frozen=True)
class _Decoding:
    """What :meth:`FieldRecord.unpack` needs of a class, computed once per class.

    ``by_id``: field id -> (attribute, kind, struct of a fixed-size kind or None); ``table``
    the same for ``_accel.decode_fields``: indexed by field id, ``(attribute, kind code)`` or None.
    ``defaults``: every attribute with a default; ``required``: those without one. The
    records are frozen dataclasses of plain values with no ``__post_init__``, so filling
    ``__dict__`` makes the same object ``__init__`` would, at a fifth of the cost.
    """

    by_id: dict[int, tuple[str, str, struct.Struct | None]]
    table: tuple[tuple[str, int] | None, ...]
    defaults: dict[str, Any]
    required: frozenset[str]


_DECODING: dict[type, _Decoding] = {}


def _decoding(cls: type) -> _Decoding:
    fields = dataclasses.fields(cls)
    defaults = {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}
    by_name: dict[str, tuple[int, str]] = cls.FIELDS  # type: ignore[attr-defined]
    by_id = {fid: (name, kind) for name, (fid, kind) in by_name.items()}
    table = tuple((by_id[i][0], _KIND_CODES[by_id[i][1]]) if i in by_id else None
                  for i in range(max(by_id, default=-1) + 1))
    dec = _DECODING[cls] = _Decoding(
        {fid: (name, kind, _INTS.get(kind)) for fid, (name, kind) in by_id.items()}, table,
        defaults, frozenset(f.name for f in fields if f.name not in defaults))
    return dec


_MISSING = object()
_NAMES: dict[type, frozenset[str]] = {}
_COMPILED_PLANS: dict[type, tuple[tuple[str, int, int, Any], ...]] = {}
_PLANS: dict[type, tuple[tuple[str, int, str, Any, struct.Struct | None], ...]] = {}


def _plan(cls: type) -> tuple[tuple[str, int, str, Any, struct.Struct | None], ...]:
    """``(name, id, kind, default, entry)`` of each field of ``cls``, computed once per class
    (packing runs for every object of a backup; looking the dataclass fields up each time
    cost half of it); ``entry`` packs a fixed-size integer field whole (id, length, value)."""
    plan = _PLANS.get(cls)
    if plan is None:
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        plan = _PLANS[cls] = tuple(
            (name, fid, kind, _MISSING if defaults[name] is dataclasses.MISSING else defaults[name],
             struct.Struct(_ENTRY.format + _INTS[kind].format[1:]) if kind in _INTS else None)
            for name, (fid, kind) in cls.FIELDS.items())  # type: ignore[attr-defined]
    return plan


def _pack(cls: type, values: dict[str, Any]) -> bytes:
    """The field list of ``values`` (attribute name -> value; absent ones take the default).

    In one compiled call (``_accel.encode_fields``) for the common values; :func:`_pack_python`,
    its specification, encodes the rest and raises the errors.
    """
    if _encode_fields is not None:
        plan = _COMPILED_PLANS.get(cls)
        if plan is None:
            plan = _COMPILED_PLANS[cls] = tuple((name, fid, _KIND_CODES[kind], default)
                                                for name, fid, kind, default, _entry in _plan(cls))
        packed = _encode_fields(plan, values, _MISSING)
        if packed is not None:
            return packed
    return _pack_python(cls, values)


def _pack_python(cls: type, values: dict[str, Any]) -> bytes:
    """:func:`_pack` in Python."""
    out = bytearray()
    get = values.get
    for name, fid, kind, default, entry in _plan(cls):
        value = get(name, default)
        if value == default:
            if value is _MISSING:
                raise FormatError(f"{cls.__name__} lacks a field it must have: {name}")
            continue
        if entry is not None:  # a fixed-size integer: id, length and value in one pack
            out += entry.pack(fid, entry.size - 6, value)
        elif kind == "xattrs":
            for xname, xvalue in value:
                _put(out, fid, struct.pack("<H", len(xname)) + bytes(xname) + bytes(xvalue))
        else:
            _put(out, fid, _encode(kind, value, name))
    return bytes(out)


def _put(out: bytearray, fid: int, value: bytes) -> None:
    out += _ENTRY.pack(fid, len(value))
    out += value


def _encode(kind: str, value: Any, name: str) -> bytes:
    if kind in _INTS:
        return _INTS[kind].pack(value)
    if kind == "str":
        return str(value).encode()
    if kind == "uuid":
        return bytes(value.bytes)
    return bytes(value)


def _decode(kind: str, raw: memoryview, what: str) -> Any:
    if kind in _INTS:
        fmt = _INTS[kind]
        if len(raw) != fmt.size:
            raise FormatError(f"{what} has {len(raw)} bytes, expected {fmt.size}")
        return fmt.unpack(raw)[0]
    if kind == "str":
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{what} is not UTF-8") from exc
    if kind == "uuid":
        if len(raw) != 16:
            raise FormatError(f"{what} has {len(raw)} bytes, expected 16")
        return uuid.UUID(bytes=bytes(raw))
    return bytes(raw)


def _decode_xattr(raw: memoryview, what: str) -> tuple[bytes, bytes]:
    if len(raw) < 2:
        raise FormatError(f"{what} xattr entry of {len(raw)} bytes")
    (n,) = struct.unpack_from("<H", raw, 0)
    if 2 + n > len(raw):
        raise FormatError(f"{what} xattr name runs past its entry")
    return bytes(raw[2:2 + n]), bytes(raw[2 + n:])


class SessionStatus:
    """Values of ``SessionFooter.status``."""

    COMPLETED = 0
    WARNINGS = 1
    FAILED = 2
    ABORTED = 3


class ObjectStatus:
    """Values of ``ArchiveFooter.status``."""

    COMPLETE = 0
    CHANGED = 1
    ABORTED = 2


class ObjectType:
    """Values of ``ArchiveHeader.type``."""

    FILE = 0
    DIRECTORY = 1
    SYMLINK = 2
    HARDLINK = 3
    DEVICE = 4
    FIFO = 5
    SOCKET = 6
    BLOB = 7


@dataclass(frozen=True)
class SessionHeader(FieldRecord):
    """Opens a session: who wrote it, when, and how (docs/format.md §4)."""

    FIELDS: ClassVar[dict[str, tuple[int, str]]] = {
        "created_ns": (1, "i64"), "node": (2, "str"), "job": (3, "str"), "kind": (4, "str"),
        "stream": (5, "str"), "host": (6, "str"), "software": (7, "str"), "size_log2": (8, "u8"),
        "key_check": (9, "bytes"), "options": (10, "str")}
    created_ns: int = 0
    node: str = ""
    job: str = ""
    kind: str = "backup"
    stream: str = ""
    host: str = ""
    software: str = ""
    size_log2: int = 18
    key_check: bytes = b""
    options: str = ""


@dataclass(frozen=True)
class SessionFooter(FieldRecord):
    """Closes a session with the totals a catalog rebuild needs."""

    FIELDS: ClassVar[dict[str, tuple[int, str]]] = {
        "status": (1, "u8"), "objects": (2, "u64"), "plain_bytes": (3, "u64"),
        "stored_bytes": (4, "u64"), "first_seq": (5, "u64"), "last_seq": (6, "u64"),
        "ended_ns": (7, "i64"), "errors": (8, "u64"), "duplicates": (9, "u64")}
    status: int = SessionStatus.COMPLETED
    objects: int = 0
    plain_bytes: int = 0
    stored_bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    ended_ns: int = 0
    errors: int = 0
    duplicates: int = 0


@dataclass(frozen=True)
class ArchiveHeader(FieldRecord):
    """Opens one object: every attribute the catalog needs to list and restore it."""

    FIELDS: ClassVar[dict[str, tuple[int, str]]] = {
        "object_index": (1, "u32"), "name": (2, "bytes"), "type": (3, "u8"), "size": (4, "u64"),
        "mode": (5, "u32"), "uid": (6, "u32"), "gid": (7, "u32"), "owner": (8, "str"),
        "group": (9, "str"), "mtime_ns": (10, "i64"), "ctime_ns": (11, "i64"), "atime_ns": (12, "i64"),
        "xattrs": (13, "xattrs"), "mgmt_class": (14, "str"), "object_id": (15, "uuid"),
        "version": (16, "u64"), "link_target": (17, "bytes"), "stored_ns": (18, "i64"),
        "filespace": (19, "str"), "expires_ns": (20, "i64"), "description": (21, "str")}
    object_index: int = 0
    name: bytes = b""
    type: int = ObjectType.FILE
    size: int = 0
    mode: int = 0
    uid: int = 0
    gid: int = 0
    owner: str = ""
    group: str = ""
    mtime_ns: int = 0
    ctime_ns: int = 0
    atime_ns: int = 0
    xattrs: tuple[tuple[bytes, bytes], ...] = ()
    mgmt_class: str = ""
    object_id: uuid.UUID | None = None
    version: int = 0
    link_target: bytes = b""
    stored_ns: int = 0
    filespace: str = ""
    expires_ns: int = 0
    description: str = ""


@dataclass(frozen=True)
class ArchiveFooter(FieldRecord):
    """Closes one object with its totals and the superblocks it spans."""

    FIELDS: ClassVar[dict[str, tuple[int, str]]] = {
        "object_index": (1, "u32"), "status": (2, "u8"), "plain_bytes": (3, "u64"),
        "stored_bytes": (4, "u64"), "chunks": (5, "u32"), "first_seq": (6, "u64"),
        "last_seq": (7, "u64"), "duplicates": (8, "u32")}
    object_index: int = 0
    status: int = ObjectStatus.COMPLETE
    plain_bytes: int = 0
    stored_bytes: int = 0
    chunks: int = 0
    first_seq: int = 0
    last_seq: int = 0
    duplicates: int = 0


_OPT_HEAD = struct.Struct("<II")


@dataclass(frozen=True)
class Options:
    """Processing instructions carried with the data (seed fig. 13 options header).

    ``object_index``/``chunk_seq`` are :data:`ALL` when they apply to the session/object.
    """

    items: tuple[tuple[str, bytes], ...]
    object_index: int = ALL
    chunk_seq: int = ALL

    def pack(self) -> bytes:
        """The options body."""
        out = bytearray(_OPT_HEAD.pack(self.object_index, self.chunk_seq))
        for key, value in self.items:
            k = key.encode()
            out += struct.pack("<H", len(k)) + k + struct.pack("<I", len(value)) + bytes(value)
        return bytes(out)

    @classmethod
    def unpack(cls, body: memoryview) -> Options:
        """Decode an options body. Raises TruncatedError or FormatError on bad lengths or UTF-8."""
        if len(body) < _OPT_HEAD.size:
            raise TruncatedError("options record too short")
        oi, cs = _OPT_HEAD.unpack_from(body, 0)
        pos, items = _OPT_HEAD.size, []
        try:
            while pos < len(body):
                (klen,) = struct.unpack_from("<H", body, pos)
                key = str(body[pos + 2:pos + 2 + klen], "utf-8")
                pos += 2 + klen
                (vlen,) = struct.unpack_from("<I", body, pos)
                pos += 4
                if pos + vlen > len(body) or len(key.encode()) != klen:
                    raise TruncatedError("options value runs past the record")
                items.append((key, bytes(body[pos:pos + vlen])))
                pos += vlen
        except (struct.error, UnicodeDecodeError) as exc:
            raise FormatError(f"options record damaged at byte {pos}") from exc
        return cls(tuple(items), oi, cs)

    def get(self, key: str) -> bytes | None:
        """The value of the last item named ``key``, or None."""
        found = None
        for k, v in self.items:
            if k == key:
                found = v
        return found
