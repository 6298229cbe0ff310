"""The layering of DESIGN.md holds: checked by import-linter's layers contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_layers_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], capture_output=True, text=True, check=False,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_lower_layer_importing_a_higher_one_is_caught(tmp_path: Path) -> None:
    """The contract really fails on a violation: a copy of the tree with format importing pipe."""
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    subprocess.run(["cp", "-r", str(root / "src"), str(src)], check=True)
    (src / "pipevault" / "format" / "_violation.py").write_text("import pipevault.pipe\n")
    (tmp_path / "pyproject.toml").write_text((root / "pyproject.toml").read_text())
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], capture_output=True, text=True, check=False,
                            cwd=tmp_path, env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    assert result.returncode != 0
    assert "pipevault.format" in result.stdout and "pipevault.pipe" in result.stdout
