"""The compiled reader of one-piece superblocks (``_accel.sole_data`` and ``continue_data``).

Most superblocks of a large untransformed object hold one DATA record continuing the open
chunk; the scanner reads those through one compiled call. Whatever the input (damaged,
reordered, repeated superblocks), the scanner must report exactly what the general path
reports, and the compiled recogniser must accept exactly the superblocks its specification
(written out here in Python) accepts.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest
import xxhash
from format_helpers import KEY, loglike, write_session
from hypothesis import given, settings
from hypothesis import strategies as st

from pipevault.format import Compression, Scanner, _superblock, fixed
from pipevault.format import _scanner as scanner_module
from pipevault.format._reader import SessionReader
from pipevault.format._superblock import MAGIC

pytestmark = pytest.mark.skipif(_superblock.sole_data is None, reason="covered by test_format_accel")


def _spec(buf: bytes) -> tuple[Any, ...] | None:
    """What ``sole_data`` must return, per its docstring."""
    if len(buf) <= 96 or buf[:8] != MAGIC:
        return None
    (major, _minor, header_len, log2, flags, _r, required, _o, sid, seq, payload_len, _r2,
     sealed) = struct.unpack_from("<BBHBBHII16sQIIQ", buf, 8)
    end = 64 + payload_len
    if major != 1 or header_len != 64 or not 16 <= log2 <= 24 or flags or required & ~15:
        return None
    if payload_len > (1 << log2) - 64 or end > len(buf) or end <= 96:
        return None
    rtype, rflags, reserved, length = struct.unpack_from("<BBHI", buf, 64)
    if rtype != 6 or rflags or reserved or length != payload_len - 8:
        return None
    if xxhash.xxh3_64_intdigest(buf[:56] + buf[64:96]) != sealed:
        return None
    return (sid, seq, sealed, *struct.unpack_from("<IIQI", buf, 72), 96, end)


def _session(size: int = 400_000, chunk: int = 150_000, comp: Compression = Compression.NONE) -> list[memoryview]:
    _w, blocks = write_session([(b"/s", loglike(size, 2)), (b"/t", loglike(size // 3, 3))], size=1 << 16,
                               chunk_size=chunk, selector=fixed(comp), key=None)
    return blocks


BLOCKS = [bytes(b) for b in _session()]


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, len(BLOCKS) - 1), flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 7)),
                                                            max_size=3), cut=st.integers(0, 1 << 16))
def test_sole_data_accepts_exactly_what_its_specification_accepts(which: int, flips: list[tuple[int, int]],
                                                                   cut: int) -> None:
    buf = bytearray(BLOCKS[which])
    for at, bit in flips:  # damage in the header and the first record, where the decisions are
        buf[at] ^= 1 << bit
    buf = buf[:max(cut, 60)]
    assert _superblock.sole_data is not None
    assert _superblock.sole_data(memoryview(buf)) == _spec(bytes(buf))


def test_sole_data_recognises_the_continuation_superblocks() -> None:
    found = [_superblock.sole_data(memoryview(b)) for b in BLOCKS]  # type: ignore[misc]
    assert sum(f is not None for f in found) >= 3
    assert found[0] is None  # the session header is there


def _normal(events: list[Any]) -> list[Any]:
    out = []
    for e in events:
        fields = {f.name: getattr(e, f.name) for f in dataclasses.fields(e)}
        for name in ("data", "pieces"):
            if name in fields:
                value = fields[name]
                fields[name] = (bytes(value) if value is not None and not isinstance(value, tuple)
                                else tuple(bytes(p) for p in value) if isinstance(value, tuple) else None)
        out.append((type(e).__name__, fields))
    return out


def _scan(blocks: list[bytes], views: bool, decode: bool) -> list[Any]:
    scanner = Scanner(key=KEY, views=views, decode=decode)
    events = [e for b in blocks for e in scanner.feed(bytearray(b))]
    return _normal(events + scanner.finish())


edits = st.lists(st.one_of(
    st.tuples(st.just("drop"), st.integers(0, 100), st.integers(0, 0)),
    st.tuples(st.just("repeat"), st.integers(0, 100), st.integers(0, 0)),
    st.tuples(st.just("swap"), st.integers(0, 100), st.integers(0, 100)),
    st.tuples(st.just("flip"), st.integers(0, 100), st.integers(0, (1 << 16) * 8 - 1)),
    st.tuples(st.just("flip_head"), st.integers(0, 100), st.integers(0, 96 * 8 - 1)),
), max_size=4)


@settings(max_examples=60, deadline=None)
@given(edit=edits, views=st.booleans(), decode=st.booleans())
def test_the_scanner_reports_the_same_with_and_without_the_compiled_path(
        edit: list[tuple[str, int, int]], views: bool, decode: bool) -> None:
    blocks = list(BLOCKS)
    for kind, i, arg in edit:
        i %= len(blocks)
        if kind == "drop" and len(blocks) > 1:
            del blocks[i]
        elif kind == "repeat":
            blocks.insert(i, blocks[i])
        elif kind == "swap":
            j = arg % len(blocks)
            blocks[i], blocks[j] = blocks[j], blocks[i]
        elif kind in ("flip", "flip_head"):
            b = bytearray(blocks[i])
            b[arg // 8] ^= 1 << (arg % 8)
            blocks[i] = bytes(b)
    compiled = _scan(blocks, views, decode)
    saved = scanner_module.sole_data
    try:
        scanner_module.sole_data = None
        general = _scan(blocks, views, decode)
    finally:
        scanner_module.sole_data = saved
    assert compiled == general


def test_the_compiled_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = []
    original = SessionReader.continue_data

    def counting(self: SessionReader, sole: Any, block: memoryview) -> bool:
        taken.append(original(self, sole, block))
        return taken[-1]

    monkeypatch.setattr(SessionReader, "continue_data", counting)
    _scan(BLOCKS, True, True)
    assert taken.count(True) >= 3
