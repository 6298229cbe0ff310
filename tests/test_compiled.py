"""The modules pyproject.toml lists under [tool.pipevault] compiled are the compiled ones
(``make setup`` builds them; ``PIPEVAULT_MYPYC=0`` asks for them interpreted)."""

from __future__ import annotations

import importlib
import os
import tomllib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INTERPRETED = os.environ.get("PIPEVAULT_MYPYC") == "0"  # read before clean_env strips it


def _listed() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        paths = tomllib.load(f)["tool"]["pipevault"]["compiled"]
    return [p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in paths]


@pytest.mark.skipif(INTERPRETED, reason="PIPEVAULT_MYPYC=0: the listed modules run interpreted")
@pytest.mark.parametrize("name", _listed())
def test_listed_module_is_compiled(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None and module.__file__.endswith(EXTENSION_SUFFIXES[0]), \
        f"{name} runs interpreted ({module.__file__}): run `make setup`"
