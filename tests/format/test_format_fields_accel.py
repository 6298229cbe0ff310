"""The compiled field lists (``_accel.decode_fields`` / ``encode_fields``) against their Python
specification (``_fields._decode_values`` / ``_pack_python``).

The compiled code takes only the common road and returns None for anything else, so the
properties are: where it answers, it answers what Python answers; where it declines on a
body, the Python code raises; and ``unpack``/``pack`` give the same records and bytes
whichever path ran.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import pytest
from format_helpers import archive_footers, archive_headers, session_footers, session_headers
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.format import _fields
from pipevault.format._fields import (
    ArchiveFooter,
    ArchiveHeader,
    FieldRecord,
    SessionHeader,
    _decode_values,
    _decoding,
    _pack_python,
    fields_record,
)
from pipevault.format.errors import FormatError

pytestmark = pytest.mark.skipif(_fields._decode_fields is None, reason="covered by test_format_accel")


records = archive_headers | archive_footers | session_headers | session_footers


def _python_unpack(cls: type[FieldRecord], body: bytes) -> dict[str, Any]:
    return _decode_values(cls.__name__, _decoding(cls), memoryview(body))


def _both_decode(cls: type[FieldRecord], body: bytes) -> None:
    """The compiled decoder gives the Python values, or declines where Python raises."""
    compiled = _fields._decode_fields(memoryview(body), _decoding(cls).table)  # type: ignore[misc]
    try:
        expected = _python_unpack(cls, body)
    except FormatError:
        assert compiled is None
        return
    assert compiled == expected


@settings(max_examples=300, deadline=None)
@given(record=records)
def test_compiled_pack_and_unpack_equal_python(record: FieldRecord) -> None:
    cls = type(record)
    body = record.pack()
    assert body == _pack_python(cls, record.__dict__)
    compiled = _fields._decode_fields(memoryview(body), _decoding(cls).table)  # type: ignore[misc]
    assert compiled == _python_unpack(cls, body)
    assert cls.unpack(memoryview(body)) == record


def _entry(fid: int, value: bytes, length: int | None = None) -> bytes:
    return struct.pack("<HI", fid, len(value) if length is None else length) + value


entries = st.one_of(
    st.builds(_entry, st.integers(1, 22), st.binary(max_size=12)),  # known ids, any length
    st.builds(_entry, st.sampled_from([1, 4, 10, 13, 15]), st.binary(min_size=8, max_size=8)),
    st.builds(_entry, st.integers(0, 0xFFFF), st.binary(max_size=6)),  # unknown, critical
    st.builds(_entry, st.integers(1, 22), st.binary(max_size=6), st.integers(0, 2**32 - 1)),  # lying lengths
    st.builds(_entry, st.just(8), st.sampled_from([b"\xff\xfe", b"\xed\xa0\x80", "é".encode()])),  # bad UTF-8
    st.binary(max_size=7),  # cut entries
)


@settings(max_examples=500, deadline=None)
@given(cls=st.sampled_from([ArchiveHeader, ArchiveFooter, SessionHeader]), parts=st.lists(entries, max_size=8))
def test_compiled_decode_declines_exactly_what_python_refuses(cls: type[FieldRecord], parts: list[bytes]) -> None:
    _both_decode(cls, b"".join(parts))


@given(record=archive_headers, cut=st.integers(0, 400), flip=st.integers(0, 400), bit=st.integers(0, 7))
@settings(max_examples=200, deadline=None)
def test_damaged_headers_read_the_same_on_both_paths(record: ArchiveHeader, cut: int, flip: int, bit: int) -> None:
    body = bytearray(record.pack())
    if body:
        body[flip % len(body)] ^= 1 << bit
    _both_decode(ArchiveHeader, bytes(body[:cut]))


class _Name(bytes):
    pass


@pytest.mark.parametrize("values", [
    {"name": bytearray(b"/a")}, {"name": _Name(b"/b")}, {"owner": 5}, {"object_id": uuid.UUID(int=3)},
    {"xattrs": [(b"user.a", b"1")]}, {"xattrs": ((bytearray(b"user.a"), b"1"),)}, {"type": True},
])
def test_unusual_values_pack_as_python_packs_them(values: dict[str, Any]) -> None:
    assert ArchiveHeader.pack_fields(**values) == _pack_python(ArchiveHeader, values)


@pytest.mark.parametrize("values", [{"type": 256}, {"size": -1}, {"mtime_ns": 2**63}, {"owner": "\udc80"},
                                    {"xattrs": ((b"n" * 70000, b""),)}])
def test_values_out_of_range_raise_as_python_raises(values: dict[str, Any]) -> None:
    with pytest.raises(Exception) as python:
        _pack_python(ArchiveHeader, values)
    with pytest.raises(python.type):
        ArchiveHeader.pack_fields(**values)


@dataclass(frozen=True)
class Needs(FieldRecord):
    """A record with a field that has no default."""

    FIELDS: ClassVar[dict[str, tuple[int, str]]] = {"a": (1, "u32"), "b": (2, "str")}
    a: int
    b: str = ""


def test_a_field_without_default_left_out_is_refused() -> None:
    with pytest.raises(FormatError, match="must have: a"):
        Needs.pack_fields(b="x")
    assert Needs.unpack(memoryview(Needs(7, "x").pack())) == Needs(7, "x")
    with pytest.raises(FormatError, match="must have: a"):
        Needs.unpack(memoryview(_entry(2, b"x")))


@settings(max_examples=100, deadline=None)
@given(record=records)
def test_fields_record_makes_the_record_init_makes(record: FieldRecord) -> None:
    values = {f.name: getattr(record, f.name) for f in fields(record)}  # type: ignore[arg-type]
    made = fields_record(type(record), dict(values))
    assert made == type(record)(**values) and made.pack() == record.pack() and hash(made) == hash(record)


def test_malformed_tables_and_plans_are_refused_not_read() -> None:
    assert _fields._decode_fields is not None and _fields._encode_fields is not None
    with pytest.raises(TypeError, match="table entry"):
        _fields._decode_fields(memoryview(struct.pack("<HI", 1, 1) + b"x"), (None, 5))
    with pytest.raises(TypeError, match="plan step"):
        _fields._encode_fields((1,), {}, None)
