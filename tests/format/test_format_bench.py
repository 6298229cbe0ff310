"""``pipevault bench format``: what each case's baseline runs, and that both sides did the work.

The figures themselves are not asserted (speed lives in docs/benchmarks.md); what is asserted
is the comparison's shape: the compressed cases' baselines carry the content hash the format
stores, the codec-only figure stays reported beside it, and the bench refuses to time a
format path whose read-back differs from what was written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import xxhash

from pipevault.errors import InternalError
from pipevault.format import bench


def test_compressed_cases_report_the_hashed_baseline_and_the_codec_alone(tmp_path: Path) -> None:
    results = {r.case: r for r in bench.run(quick=True, workdir=tmp_path, cases=("lz4", "none"))}
    assert set(results) == {"pack-none", "unpack-none", "pack-lz4", "unpack-lz4"}
    for case in ("pack-lz4", "unpack-lz4"):
        r = results[case]
        assert "xxh3-128" in r.baseline_name
        # Reported, not compared: that the two runs time the same data is asserted below
        # (the hashed baseline hashes exactly the stored bytes), not by their speeds, which a
        # busy machine can invert.
        assert r.notes["codec_only"] > 0 and r.notes["ratio_codec_only"] > 0
    # "none" has no codec: its baseline is copy + hash, and there is no codec-only figure.
    assert "ratio_codec_only" not in results["unpack-none"].notes
    assert results["unpack-none"].baseline_name == "copy + xxh3-128"


def test_hashed_baseline_hashes_exactly_the_stored_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    real = xxhash.xxh3_128_digest

    def spy(data: bytes) -> bytes:
        seen.append(bytes(data))
        return real(data)
    monkeypatch.setattr(xxhash, "xxh3_128_digest", spy)
    chunk = bench.corpus(bench.MIB)[0]
    pack, unpack = bench._bare("lz4")
    stored = pack(chunk)
    assert unpack(stored) == len(chunk)
    assert seen == [stored, stored]  # once when stored, once before decompressing
    seen.clear()
    plain_pack, _ = bench._bare("lz4", hashed=False)
    assert plain_pack(chunk) == stored and seen == []


def test_bench_refuses_a_format_path_that_reads_back_wrong(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "read_back", lambda blocks: [])
    with pytest.raises(InternalError, match="differs"):
        list(bench.run(quick=True, workdir=tmp_path, cases=("none",)))
