"""The error root: stable unique codes, exit-code ranges, JSON form, generated docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipevault.cli.errors_cmd import exit_codes_markdown
from pipevault.errors import (
    ConfigError,
    PipevaultError,
    error_classes,
    error_from_dict,
)


def test_every_error_has_a_code_exit_code_and_hint() -> None:
    classes = error_classes()
    assert len(classes) >= 5
    for code, cls in classes.items():
        assert cls.code == code
        assert issubclass(cls, PipevaultError)
        assert 2 <= cls.exit_code <= 127 or cls.exit_code == 130
        assert cls.hint and cls.__doc__, cls


def test_duplicate_code_is_refused() -> None:
    with pytest.raises(TypeError, match="used by"):
        type("Dup", (PipevaultError,), {"code": "config.invalid", "__qualname__": "Dup"})


def test_subclass_without_own_code_is_refused() -> None:
    with pytest.raises(TypeError, match="must declare"):
        type("NoCode", (ConfigError,), {})


def test_exit_code_out_of_range_is_refused() -> None:
    with pytest.raises(TypeError, match="outside"):
        type("Bad", (PipevaultError,), {"code": "test.bad_exit", "exit_code": 200})


def test_json_round_trip_keeps_class_message_and_details() -> None:
    err = ConfigError("buffer_size too big", volume=Path("/x"), n=3)
    data = err.to_dict()
    assert data["code"] == "config.invalid" and data["exit_code"] == 3
    assert data["details"] == {"volume": "/x", "n": 3}
    back = error_from_dict(data)
    assert type(back) is ConfigError
    assert back.message == "buffer_size too big"
    assert "Fix the value" in str(back)


def test_docs_exit_codes_is_current() -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "exit-codes.md"
    assert doc.read_text() == exit_codes_markdown(), "run: make docs"
