"""An entry's metadata on its way through a backup pipe.

The reader is the one serial stage of a backup that touches every entry, so it does as
little per entry as it can: it sends the entry's raw metadata (:func:`entry_meta`, a
pickled tuple of numbers and names: this part of the pipe never leaves the machine). The
encoders, several processes at once, make of it what the store needs
(:func:`header_and_doc`): the archive header as the stream format's record, and the catalog
doc (see :mod:`pipevault.mover._wire`).
"""

from __future__ import annotations

import os
import pickle

from pipevault.format import ArchiveHeader, ObjectType
from pipevault.mover import _wire as W
from pipevault.mover.walk import Entry, group_name, high_name, low_name, to_text, user_name


def entry_meta(e: Entry, class_name: str, stored_ns: int, expires_ns: int, description: str) -> bytes:
    """What the encoders need to describe entry ``e`` (and the session's archive fields)."""
    st = e.st
    return pickle.dumps((e.rel, e.kind, st.st_size, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                         st.st_ctime_ns, st.st_atime_ns, st.st_ino, st.st_nlink, st.st_rdev, e.xattrs,
                         e.link_target, e.hardlink_of, e.filespace, class_name, stored_ns, expires_ns, description),
                        protocol=pickle.HIGHEST_PROTOCOL)


def header_and_doc(meta: bytes | memoryview, index: int) -> tuple[bytes, bytes]:
    """The packed archive header (object ``index``) and the catalog doc of an entry's meta."""
    (rel, kind, size, mode, uid, gid, mtime, ctime, atime, ino, nlink, rdev, xattrs, link_target, hardlink_of,
     filespace, class_name, stored_ns, expires_ns, description) = pickle.loads(meta)
    fs = to_text(filespace)
    data_size = size if kind == ObjectType.FILE else 0
    header = ArchiveHeader.pack_fields(
        object_index=index, name=os.fsencode("/" + rel), type=kind, size=data_size,
        mode=mode, uid=uid, gid=gid, owner=user_name(uid), group=group_name(gid), mtime_ns=mtime, ctime_ns=ctime,
        atime_ns=atime, xattrs=xattrs, mgmt_class=class_name,
        link_target=(link_target if kind == ObjectType.SYMLINK
                     else os.fsencode("/" + hardlink_of) if hardlink_of else b""),
        filespace=fs, stored_ns=stored_ns, expires_ns=expires_ns, description=description)
    attrs = attributes_text(kind, mode, uid, gid, size, mtime, ctime, atime, ino, nlink, rdev, link_target,
                            hardlink_of)
    return header, W.dumps(fs, high_name(rel), low_name(rel), kind, data_size, attrs)


def attributes_text(kind: int, mode: int, uid: int, gid: int, size: int, mtime: int, ctime: int, atime: int,
                    ino: int, nlink: int, rdev: int, link_target: bytes, hardlink_of: str | None) -> str:
    """The attributes kept in the catalog for an entry (compared by the next backup), as the
    compact JSON object text: written out directly, byte for byte what the JSON encoder would
    write of them (once per file of a backup: its walk of a dict cost 8 us)."""
    lt = W.JSON_STR(os.fsdecode(link_target)) if link_target else "null"
    ho = W.JSON_STR(hardlink_of) if hardlink_of is not None else "null"
    return (f'{{"type":{int(kind)},"mode":{int(mode)},"uid":{int(uid)},"gid":{int(gid)},"size":{int(size)},'
            f'"mtime_ns":{int(mtime)},"ctime_ns":{int(ctime)},"atime_ns":{int(atime)},"ino":{int(ino)},'
            f'"nlink":{int(nlink)},"rdev":{int(rdev)},"link_target":{lt},"hardlink_of":{ho}}}')
