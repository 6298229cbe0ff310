"""The catalog doc the encoders write out by hand is what the JSON encoder would write."""

from __future__ import annotations

import json
import os

from hypothesis import given
from hypothesis import strategies as st

from pipevault.mover import _wire as W
from pipevault.mover.catalogue import with_catalog_fields
from pipevault.mover.objmeta import attributes_text


def attributes_of(kind: int, mode: int, uid: int, gid: int, size: int, mtime_ns: int, ctime_ns: int,
                  atime_ns: int, ino: int, nlink: int, rdev: int, link_target: bytes,
                  hardlink_of: str | None) -> dict[str, object]:
    """The attributes the catalog keeps for an entry, as the dict the JSON encoder would write."""
    return {"type": kind, "mode": mode, "uid": uid, "gid": gid, "size": size, "mtime_ns": mtime_ns,
            "ctime_ns": ctime_ns, "atime_ns": atime_ns, "ino": ino, "nlink": nlink, "rdev": rdev,
            "link_target": os.fsdecode(link_target) if link_target else None, "hardlink_of": hardlink_of}


compact = json.JSONEncoder(separators=(",", ":")).encode  # the catalog's JSON: no spaces
ints = st.integers(min_value=0, max_value=2**64 - 1)
signed = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Names with quotes, backslashes, newlines, control characters, non-ASCII and undecodable bytes.
raw_names = st.binary(max_size=40)
names = raw_names.map(os.fsdecode)


@given(kind=st.integers(0, 9), mode=ints, uid=ints, gid=ints, size=ints, times=st.tuples(signed, signed, signed),
       ino=ints, nlink=ints, rdev=ints, link_target=raw_names, hardlink_of=st.none() | names)
def test_attributes_text_is_the_json_encoders(kind: int, mode: int, uid: int, gid: int, size: int,
                                              times: tuple[int, int, int], ino: int, nlink: int, rdev: int,
                                              link_target: bytes, hardlink_of: str | None) -> None:
    args = (kind, mode, uid, gid, size, *times, ino, nlink, rdev, link_target, hardlink_of)
    text = attributes_text(*args)
    assert text == compact(attributes_of(*args))
    assert json.loads(text) == attributes_of(*args)


@given(fs=names, hl=names, ll=names, obj_type=st.integers(0, 9), size=ints, attrs=st.just('{"a":1}'))
def test_doc_head_is_the_json_encoders_and_reads_back(fs: str, hl: str, ll: str, obj_type: int, size: int,
                                                     attrs: str) -> None:
    doc = W.dumps(fs, hl, ll, obj_type, size, attrs)
    head = json.dumps([fs, hl, ll, obj_type, size], separators=(",", ":"))
    assert doc == (head + "\n" + attrs).encode("ascii")
    assert W.loads(doc) == ([fs, hl, ll, obj_type, size], attrs)


@given(stream=ints, status=st.integers(0, 255), index=ints, session=st.uuids(),
       attrs=st.sampled_from(["{}", '{"type":1}', '{"type":1,"name":"a\\"b"}']))
def test_catalog_suffix_extends_the_attributes_as_the_json_encoder_would(
        stream: int, status: int, index: int, session: object, attrs: str) -> None:
    text = with_catalog_fields(attrs, stream, status, str(session), index)
    extra = {"stream": stream, "status": status, "session": str(session), "object": index}
    assert text == compact({**json.loads(attrs), **extra})
