"""What a server checks in a client's backup stream before its store sees it (Admit)."""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.catalog.objects import VersionInfo
from pipevault.format import ArchiveHeader, ChunkEncoder, SessionKeys
from pipevault.mover import _wire as W
from pipevault.mover.errors import RemoteStreamInvalid
from pipevault.mover.remote_wire import Admit, check_doc, version_from_wire, version_to_wire

P = W.PREFIX_LEN
SID = uuid.uuid4()


def begin(doc: bytes | None = None, header: bytes | None = None, extents: bytes = b"") -> tuple[bytearray, int]:
    header = ArchiveHeader(object_index=0, name=b"/a.txt", size=3).pack() if header is None else header
    doc = W.dumps("/src", "/", "a.txt", 1, 3, '{"mode":420}') if doc is None else doc
    buf = bytearray(64 << 10)
    W.put_prefix(memoryview(buf), W.BEGIN, 0, a=W.BEGIN_REC.size + len(header) + len(doc) + len(extents))
    W.BEGIN_REC.pack_into(buf, P, len(header), len(doc), len(extents))
    pos = P + W.BEGIN_REC.size
    for part in (header, doc, extents):
        buf[pos: pos + len(part)] = part
        pos += len(part)
    return buf, pos


def encoded(key: bytes | None) -> tuple[bytearray, int]:
    keys = SessionKeys.derive(key, SID) if key else None
    enc = ChunkEncoder(SID, keys=keys)(os.urandom(1000), 0, 0, 0)
    head, stored, foot = enc.header.pack(), bytes(memoryview(enc.stored).cast("B")), enc.footer.pack()
    buf = bytearray(64 << 10)
    W.put_prefix(memoryview(buf), W.ENCODED, 0, 0, 0, len(head), len(stored), len(foot))
    data = head + stored + foot
    buf[P: P + len(data)] = data
    return buf, P + len(data)


def check(buf: bytearray, length: int, encrypt: bool = False) -> None:
    Admit(encrypt).check(memoryview(buf), length)


def test_well_formed_buffers_pass() -> None:
    check(*begin())
    check(*begin(extents=b"\0" * 32))
    check(*encoded(None))
    check(*encoded(os.urandom(32)), encrypt=True)
    end = bytearray(P + W.END_REC.size)
    W.put_prefix(memoryview(end), W.END, 0)
    W.END_REC.pack_into(end, P, 0, b"\0" * 16, 3)
    check(end, len(end))


def test_refused_kinds_lengths_and_docs() -> None:
    plain = bytearray(P + 10)
    W.put_prefix(memoryview(plain), W.CHUNK, 0, a=10)
    with pytest.raises(RemoteStreamInvalid, match="kind 2"):
        check(plain, len(plain))  # plaintext never crosses
    buf, n = begin()
    with pytest.raises(RemoteStreamInvalid, match="runs past"):
        check(buf, n - 1)
    with pytest.raises(RemoteStreamInvalid, match="runs past"):
        check(buf, P - 1)
    for doc in (b"not json", b'["/src","/","a",1]\n{}', b'["/src","/","a",1,3]\n[]',
                b'["/src","/","a",1,-3]\n{}', b'["/src","/","a",1,3]\n{"x":[1]}'):
        with pytest.raises(RemoteStreamInvalid, match="catalog doc"):
            check(*begin(doc=doc))
    with pytest.raises(RemoteStreamInvalid, match="archive header"):
        check(*begin(header=b"\xff" * 7))
    with pytest.raises(RemoteStreamInvalid, match="extent"):
        check(*begin(extents=b"\0" * 15))
    end = bytearray(P + W.END_REC.size)
    W.put_prefix(memoryview(end), W.END, 0)
    W.END_REC.pack_into(end, P, 9, b"\0" * 16, 3)
    with pytest.raises(RemoteStreamInvalid, match="status"):
        check(end, len(end))


def test_an_encrypting_class_refuses_clear_chunks() -> None:
    with pytest.raises(RemoteStreamInvalid, match="in the clear"):
        check(*encoded(None), encrypt=True)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=600), st.integers(min_value=0, max_value=7))
def test_random_bytes_are_refused_or_well_formed(payload: bytes, kind: int) -> None:
    """Whatever a client sends, the check passes it or raises RemoteStreamInvalid; nothing else."""
    buf = bytearray(P) + bytearray(payload)
    W.put_prefix(memoryview(buf), kind, 0, a=len(payload) // 3, b=len(payload) // 3, c=len(payload) // 5)
    try:
        check(buf, len(buf), encrypt=kind % 2 == 0)
    except RemoteStreamInvalid:
        pass


def test_check_doc_accepts_what_the_reader_writes() -> None:
    check_doc(memoryview(W.dumps("/fs\udce9", "/d\n", "x", 2, 0, '{"a":null,"b":"t","c":1.5}')))


@pytest.mark.parametrize("raw", [b"", b"no head line", b"\n{}", b'["a","b","c",1,2\n{}',
                                 b'["a","b","c",1,2] x\n{}', b'["a","b","c",1,2]\n{"x":[1]}',
                                 b'["a","b","c",-1,2]\n{}', b'["a","b",3,1,2]\n{}', "[\u00e9]\n{}".encode()])
def test_check_doc_refuses_anything_else(raw: bytes) -> None:
    with pytest.raises(RemoteStreamInvalid):
        check_doc(memoryview(raw))


def test_versions_cross_as_json() -> None:
    v = VersionInfo(7, 3, "n1", "/src", "/d", "f", 1, "active", "STANDARD", 1.5, None, None, 10, b"\1" * 16,
                    '{"size":10}', "", 4)
    assert version_from_wire(version_to_wire(v)) == v
    with pytest.raises(RemoteStreamInvalid):
        version_from_wire({"version_id": 7})
