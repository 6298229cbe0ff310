"""``pipevault volume label``: new empty volumes in disk and tape pools, usable by the next backup."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipevault import config
from pipevault.catalog import volumes as volume_rows
from pipevault.cli import main
from pipevault.mover import BackupOptions, Site, run_backup


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, object]]]:
    with pytest.raises(SystemExit) as done:
        main(["--json", *args])
    out = capsys.readouterr().out
    return int(done.value.code or 0), [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_label_disk_volumes_then_a_backup_fills_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Site.open(config.load()):
        pass  # the embedded defaults: pool "disk"
    code, out = run(capsys, "volume", "label", "disk", "--count", "2")
    assert code == 0 and len(out[0]["volumes"]) == 2  # type: ignore[arg-type]
    code, out2 = run(capsys, "volume", "label", "disk", "--name", "MYVOL01")
    assert code == 0 and out2[0]["volumes"] == ["MYVOL01"]
    code, dup = run(capsys, "volume", "label", "disk", "--name", "MYVOL01")
    assert code != 0 and dup[0]["code"]
    with Site.open(config.load()) as site:
        with site.catalog.read() as conn:
            vols = {v.name: v for v in volume_rows.list_volumes(conn, pool="disk")}
        assert {"MYVOL01", *out[0]["volumes"]} <= set(vols)  # type: ignore[arg-type]
        assert all(v.state == "scratch" for v in vols.values())
        src = tmp_path / "src"
        src.mkdir()
        (src / "a.txt").write_text("data\n")
        result = run_backup(site, BackupOptions([str(src)]))
        assert result.volumes[0] in vols  # a labelled scratch volume was used, not a new one


def test_label_a_tape_cartridge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "pool", "define", "tape", "--media-type", "tape")[0] == 0
    code, out = run(capsys, "volume", "label", "tape")
    assert code == 0
    volser = out[0]["volumes"][0]  # type: ignore[index]
    with Site.open(config.load()) as site, site.catalog.read() as conn:
        vol = volume_rows.get_volume(conn, volser)
    assert vol.pool == "tape" and vol.state == "scratch" and vol.media_type == "tape"


def test_labelling_cut_short_neither_blocks_nor_loses_a_cartridge(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A job killed while labelling leaves a cartridge the catalog lacks (inventory saved) or a
    cartridge file the inventory lacks: the next label adopts the first and steps over the second."""
    assert run(capsys, "pool", "define", "tape", "--media-type", "tape")[0] == 0
    with Site.open(config.load()) as site:
        lib = site.tapes.library("tape")
        with site.catalog.read() as conn:
            known = {v.name for v in volume_rows.list_volumes(conn, pool="tape")}
        # Killed after the library saved its inventory, before the catalog heard of it:
        lib.label_new("TAPE0900L9")
        # Killed after the cartridge file was written, before the inventory was saved:
        stray = (lib.directory / "slots") / "TAPE0901L9.tape"
        stray.write_bytes(((lib.directory / "slots") / "TAPE0900L9.tape").read_bytes())
        first = site.tapes.label("tape")
        second = site.tapes.label("tape")
        with site.catalog.read() as conn:
            now = {v.name: v for v in volume_rows.list_volumes(conn, pool="tape")}
    assert first == "TAPE0900L9" and now[first].state == "scratch"  # adopted, not labelled twice
    assert second not in known | {first, "TAPE0901L9"} and second in now
    assert "TAPE0901L9" in lib.strays() and stray.exists()  # kept: it might hold imported data
