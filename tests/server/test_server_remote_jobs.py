"""Remote backup and restore through an in-process daemon over loopback: the server's pools
and catalog keep the data under the authenticated node; the client encodes and decodes."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_helpers import running_daemon, wait_for

from pipevault import config
from pipevault.catalog import classes as class_rows
from pipevault.catalog import objects as object_rows
from pipevault.catalog import sessions as session_rows
from pipevault.config import Settings
from pipevault.mover import BackupOptions, RestoreOptions, Site
from pipevault.mover import _wire as W
from pipevault.mover.errors import KeyMissing, NothingMatched, WrongPassphrase
from pipevault.mover.keys import node_key
from pipevault.mover.remote import Server, run_remote_backup, run_remote_restore
from pipevault.pipe import Pipe, StageContext, StageSpec
from pipevault.pipe.net import Credentials, RemotePipe
from pipevault.pipe.net.errors import AuthRefused, RemoteFailed
from pipevault.server.daemon import Daemon
from pipevault.server.errors import ServerError

sys.path.insert(0, str(Path(__file__).parents[1] / "mover"))
from mover_helpers import make_tree, snapshot


def settings_at(home: Path, **extra: str) -> Settings:
    env = {"PIPEVAULT_HOME": str(home), "PIPEVAULT_CONFIG": "/nonexistent", "PIPEVAULT_VOLUME_SIZE": "64M",
           **extra}
    return config.load(env=env)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Daemon, Settings]]:
    server_settings = settings_at(tmp_path / "server-home")
    with Site.open(server_settings) as site, site.catalog.write() as conn:
        class_rows.define_class(conn, class_rows.ManagementClass("SECRET", encrypt=True), now=time.time())
    with running_daemon(tmp_path / "server", settings=server_settings) as daemon:
        yield daemon, server_settings


def node(daemon: Daemon, name: str = "n1", connections: int = 3) -> Server:
    return Server(daemon.address, Credentials(name, daemon.nodes.add(name)), connections)


def test_remote_backup_and_restore_equal_the_source(served: tuple[Daemon, Settings], tmp_path: Path) -> None:
    daemon, server_settings = served
    tree = make_tree(tmp_path / "src")
    client = settings_at(tmp_path / "client-home", PIPEVAULT_PASSPHRASE="client secret")
    n1 = node(daemon)
    first = run_remote_backup(client, n1, BackupOptions([str(tree)]))
    assert first.sent == first.examined > 30 and first.unchanged == 0
    with Site.open(server_settings, node="n1") as site, site.catalog.read() as conn:
        sessions = session_rows.list_sessions(conn, node="n1")
        assert [s.status for s in sessions] == ["completed"]
        assert not session_rows.list_sessions(conn, node=server_settings["node"])
    out = tmp_path / "out"
    restored = run_remote_restore(client, n1, RestoreOptions([str(tree)], to=str(out)))
    assert restored.restored == first.sent
    assert snapshot(out) == snapshot(tree)
    verified = run_remote_restore(client, n1, RestoreOptions([str(tree / "docs")], verify_only=True))
    assert verified.verified_only and 30 < verified.restored < first.sent
    one = run_remote_restore(client, n1, RestoreOptions([str(tree / "docs" / "note03.txt")],
                                                        to=str(tmp_path / "one")))
    assert one.restored == 1 and os.listdir(tmp_path / "one" / "docs") == ["note03.txt"]
    assert (tmp_path / "one" / "docs" / "note03.txt").read_bytes() == (tree / "docs" / "note03.txt").read_bytes()

    (tree / "docs" / "note07.txt").write_text("changed\n")
    (tree / "docs" / "note08.txt").unlink()
    second = run_remote_backup(client, n1, BackupOptions([str(tree)]))
    assert (second.sent, second.deleted) == (2, 1)  # the file and its directory (its times moved)
    with Site.open(server_settings, node="n1") as site, site.catalog.read() as conn:
        fs = str(tree)
        assert not [v for v in object_rows.query_versions(conn, "n1", fs, state="active") if v.ll == "note08.txt"]


def test_a_copy_restores_alone_from_the_server(served: tuple[Daemon, Settings], tmp_path: Path) -> None:
    """The server's plan names the file a copy repeats; the client reads it, restores only the copy."""
    daemon, _server_settings = served
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(3 << 20)
    (src / "original.bin").write_bytes(data)
    (src / "zcopy.bin").write_bytes(data + b"tail")
    client = settings_at(tmp_path / "client-home")
    n1 = node(daemon)
    run_remote_backup(client, n1, BackupOptions([str(src)]))
    out = tmp_path / "out"
    alone = run_remote_restore(client, n1, RestoreOptions([str(src / "zcopy.bin")], to=str(out)))
    assert alone.failed == [] and alone.restored == 1
    assert os.listdir(out) == ["zcopy.bin"] and (out / "zcopy.bin").read_bytes() == data + b"tail"


def test_encrypted_class_stays_encrypted_and_needs_the_client_key(served: tuple[Daemon, Settings],
                                                                   tmp_path: Path) -> None:
    daemon, server_settings = served
    src = tmp_path / "src"
    src.mkdir()
    secret = b"the plaintext that must not reach the server " * 2000
    (src / "secret.txt").write_bytes(secret)
    client = settings_at(tmp_path / "client-home", PIPEVAULT_PASSPHRASE="client secret")
    n1 = node(daemon)
    run_remote_backup(client, n1, BackupOptions([str(src)], class_name="SECRET"))
    volumes = list((Path(server_settings.home) / "pools").rglob("*"))
    assert volumes and not any(secret[:40] in p.read_bytes() for p in volumes if p.is_file())
    assert not (Path(server_settings.home) / "keys").exists()  # the server never had a key
    out = tmp_path / "out"
    run_remote_restore(client, n1, RestoreOptions([str(src)], to=str(out)))
    assert (out / "secret.txt").read_bytes() == secret
    keyless = settings_at(tmp_path / "other-home")
    with pytest.raises(KeyMissing):
        run_remote_restore(keyless, n1, RestoreOptions([str(src)], to=str(tmp_path / "out2")))
    # Another key for the same node: the session header's key check names it a wrong key.
    other = settings_at(tmp_path / "third-home", PIPEVAULT_PASSPHRASE="another secret")
    node_key(other.home, n1.creds.node, b"another secret", create=True)
    with pytest.raises(WrongPassphrase):
        run_remote_restore(other, n1, RestoreOptions([str(src)], to=str(tmp_path / "out3")))
    assert not (tmp_path / "out3" / "secret.txt").exists()


def test_a_node_reads_only_its_own_data(served: tuple[Daemon, Settings], tmp_path: Path) -> None:
    daemon, server_settings = served
    src = tmp_path / "src"
    src.mkdir()
    (src / "mine.txt").write_text("n1's data\n")
    client = settings_at(tmp_path / "client-home")
    n1, n2 = node(daemon, "n1"), node(daemon, "n2")
    run_remote_backup(client, n1, BackupOptions([str(src)]))
    with pytest.raises(NothingMatched):
        run_remote_restore(client, n2, RestoreOptions([str(src)], to=str(tmp_path / "stolen")))
    assert not (tmp_path / "stolen" / "mine.txt").exists()
    with Site.open(server_settings, node="n1") as site, site.catalog.read() as conn:
        ids = [v.version_id for v in object_rows.query_versions(conn, "n1", str(src), state="active")]
    for vid in ids:  # nor by naming one of n1's version ids
        with pytest.raises(NothingMatched):
            run_remote_restore(client, n2, RestoreOptions([str(src)], version_id=vid, to=str(tmp_path / "stolen")))
    assert not (tmp_path / "stolen").exists()
    wrong = Server(daemon.address, Credentials("n1", b"x" * 32), 2)
    with pytest.raises(AuthRefused):
        run_remote_backup(client, wrong, BackupOptions([str(src)]))


def test_remote_archive_and_retrieve(served: tuple[Daemon, Settings], tmp_path: Path) -> None:
    daemon, _ = served
    src = tmp_path / "src"
    src.mkdir()
    (src / "q3.txt").write_text("quarter 3\n")
    client = settings_at(tmp_path / "client-home")
    n1 = node(daemon)
    done = run_remote_backup(client, n1, BackupOptions([str(src)], archive=True, description="q3"))
    assert done.sent == 2
    (src / "q3.txt").write_text("overwritten\n")
    got = run_remote_restore(client, n1, RestoreOptions([str(src)], to=str(tmp_path / "out"), archive=True,
                                                        description="q*"))
    assert got.restored == 2 and (tmp_path / "out" / "q3.txt").read_text() == "quarter 3\n"
    with pytest.raises(NothingMatched):
        run_remote_restore(client, n1, RestoreOptions([str(src)], to=str(tmp_path / "o2"), archive=True,
                                                      description="q4"))


class Junk:
    """First stage of a rogue client: one buffer of kind CHUNK (plaintext), never accepted."""

    def run(self, ctx: StageContext) -> None:
        buf = ctx.alloc_buf()
        W.put_prefix(buf.data, W.CHUNK, 0, a=100)
        buf.length = W.PREFIX_LEN + 100
        ctx.send_buf(buf)


def test_a_malformed_stream_or_reused_session_is_refused(served: tuple[Daemon, Settings], tmp_path: Path) -> None:
    daemon, server_settings = served
    n1 = node(daemon)
    sid = str(uuid.uuid4())
    remote = RemotePipe.extend(daemon.address, n1.creds, direction="push", module="store",
                               params={"session": sid}, connections=2, buffer_size=64 << 10, max_buffers=8)
    pipe = Pipe([StageSpec("junk", Junk), remote.agent_stage()], buffer_size=64 << 10, max_buffers=8,
                name=remote.pipe_name)
    with pytest.raises(RemoteFailed, match="mover.remote_stream"):
        remote.run(pipe)
    with Site.open(server_settings, node="n1") as site:

        def statuses() -> list[str]:
            with site.catalog.read() as conn:
                return [s.status for s in session_rows.list_sessions(conn, node="n1")]

        assert wait_for(lambda: statuses() == ["failed"]), statuses()
    with pytest.raises(ServerError, match="already in use"):
        RemotePipe.extend(daemon.address, node(daemon, "n2").creds, direction="push", module="store",
                          params={"session": sid}, connections=1)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("after the refusal\n")
    assert run_remote_backup(settings_at(tmp_path / "client"), n1, BackupOptions([str(src)])).sent == 2
