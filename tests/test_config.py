"""Options resolve flag > environment > TOML file > default, and bad values are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipevault import config
from pipevault.errors import ConfigError


@pytest.mark.parametrize(("text", "value"), [("1048576", 1 << 20), ("1M", 1 << 20),
                                             ("64KiB", 64 << 10), ("2g", 2 << 30), (7, 7)])
def test_parse_size(text: str | int, value: int) -> None:
    assert config.parse_size(text) == value


def test_parse_size_refuses_garbage() -> None:
    with pytest.raises(ConfigError, match="not a size"):
        config.parse_size("lots")


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[pipe]\nbuffer_size = "256K"\nmax_buffers = 16\ninstances = 3\n')
    env = {"PIPEVAULT_CONFIG": str(cfg), "PIPEVAULT_MAX_BUFFERS": "32"}
    s = config.load({"instances": 4}, env=env)
    assert s["buffer_size"] == 256 << 10 and s.sources["buffer_size"].startswith("file")
    assert s["max_buffers"] == 32 and s.sources["max_buffers"] == "environment PIPEVAULT_MAX_BUFFERS"
    assert s["instances"] == 4 and s.sources["instances"] == "flag --instances"
    assert s["catalog_url"] == "" and s.sources["catalog_url"] == "default"


def test_out_of_range_value_names_its_source() -> None:
    with pytest.raises(ConfigError, match="PIPEVAULT_BUFFER_SIZE.*between"):
        config.load(env={"PIPEVAULT_BUFFER_SIZE": "32M", "PIPEVAULT_CONFIG": "/nonexistent"})


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[pipe\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(env={"PIPEVAULT_CONFIG": str(cfg)})
