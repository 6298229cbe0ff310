"""Durability points on disk sync in the background: appends go on meanwhile, and an object
is handed on to be catalogued only after a sync that covers it has returned."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest
from mover_helpers import open_site

from pipevault.format import ArchiveHeader, SessionHeader, SessionWriter
from pipevault.media._blockfile import BlockFileVolume
from pipevault.mover.store import Durable, SessionStore

KB = 1 << 10


def _store(tmp_path: Path, handed: list[Durable]) -> tuple[Any, SessionStore]:
    site = open_site(tmp_path / "home")
    writer = SessionWriter(SessionHeader(node="n"), chunk_size=64 * KB)
    pool = site.management_class(None).destination_pool
    return site, SessionStore(site, writer, pool, handed.extend, sync_every=512 * KB, background_sync=True)


def _put(store: SessionStore, i: int) -> None:
    w = store.writer
    store.begin(ArchiveHeader(name=f"/f{i}".encode(), size=200 * KB), None)
    for k in range(4):  # incompressible-looking data, so each object fills most of a superblock
        data = random.Random(i * 8 + k).randbytes(50 * KB)
        store.chunk(w.encoder(data, *w.next_chunk()))
    store.end(0, i)


def test_appends_go_on_while_a_sync_runs_and_objects_wait_for_it(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()
    real_sync = BlockFileVolume.sync

    def slow_sync(self: BlockFileVolume) -> None:
        started.set()
        assert release.wait(30)
        real_sync(self)

    monkeypatch.setattr(BlockFileVolume, "sync", slow_sync)
    handed: list[Durable] = []
    site, store = _store(tmp_path, handed)
    try:
        i = 0
        while not started.is_set():
            _put(store, i)
            i += 1
        in_flight = i
        for _ in range(2):  # the store is not held up by the sync (within two intervals)
            _put(store, i)
            i += 1
        assert handed == []  # nothing is durable before the sync returns
        release.set()
        store.close(0)
        idents = [d.ident for d in handed]
        assert idents == list(range(i))  # all of them, in order, each once
        assert in_flight >= 1
    finally:
        site.close()


def test_a_failed_background_sync_fails_the_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_sync(self: BlockFileVolume) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(BlockFileVolume, "sync", broken_sync)
    handed: list[Durable] = []
    site, store = _store(tmp_path, handed)
    try:
        def write_all() -> None:
            for i in range(40):
                _put(store, i)
            store.close(0)

        with pytest.raises(OSError):
            write_all()
        assert handed == []  # nothing was handed on as durable
        store.abort()
    finally:
        site.close()


def test_many_small_objects_call_durability_points_of_their_own(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipevault.mover.store.OBJECTS_EVERY", 50)
    # What triggers a durability point is under test, not the disk's speed: an fsync slowed
    # by a busy machine would leave fewer objects handed on before the end.
    monkeypatch.setattr(BlockFileVolume, "sync", lambda self: None)
    site = open_site(tmp_path / "home")
    calls: list[int] = []
    writer = SessionWriter(SessionHeader(node="n"))
    pool = site.management_class(None).destination_pool
    store = SessionStore(site, writer, pool, lambda d: calls.append(len(d)), sync_every=1 << 30,
                         background_sync=True)
    try:
        for i in range(1000):
            store.begin(ArchiveHeader(name=f"/s{i}".encode(), size=2000), None)
            store.chunk(writer.encoder(random.Random(i).randbytes(2000), *writer.next_chunk()))
            store.end(0, i)
        before_close = sum(calls)
        store.close(0)
    finally:
        site.close()
    assert sum(calls) == 1000
    # Far below the byte interval (1 GiB), only the object count can have made objects
    # durable on the way.
    assert before_close > 0
