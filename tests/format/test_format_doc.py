"""docs/format.md stays true: its worked example is what the writer produces today."""

from __future__ import annotations

from pathlib import Path

from format_helpers import worked_example

from pipevault.format._records import CHUNK_FOOTER_LEN, CHUNK_HEADER_LEN, RESUME_LEN, TAG_LEN
from pipevault.format._superblock import HEADER_LEN

DOC = Path(__file__).resolve().parents[2] / "docs" / "format.md"


def test_worked_example_is_current() -> None:
    assert worked_example() in DOC.read_text(), "regenerate with: python tests/format/format_helpers.py"


def test_documented_sizes_match_the_code() -> None:
    text = DOC.read_text()
    assert HEADER_LEN == 64 and "header(64)" in text
    assert f"fixed {CHUNK_HEADER_LEN} bytes" in text and f"CHUNK_FOOTER (0x07), {CHUNK_FOOTER_LEN} bytes" in text
    assert f"tag header {TAG_LEN} bytes" in text and f"RESUME (0x0A), {RESUME_LEN} bytes" in text
