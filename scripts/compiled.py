"""The mypyc-compiled modules of a source tree: which are built, whether they are stale.

    python scripts/compiled.py stale    # prints why the build is stale; exit 1 if it is
    python scripts/compiled.py remove   # deletes them (the modules then run interpreted)

A compiled module is a shared object beside the module's source (which it shadows on
import), plus the group's runtime library ``src/pipevault__mypyc*.so``, built by
``make setup`` (see setup.py). It is stale when any source is newer than that library:
compiled code trusts the types of everything it imports, not only of its own module.
"""

from __future__ import annotations

import sys
import tomllib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def listed() -> list[Path]:
    """The sources pyproject.toml asks to compile."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return [ROOT / p for p in tomllib.load(f)["tool"]["pipevault"]["compiled"]]


def built() -> list[Path]:
    """Every shared object mypyc made: the group library and each module's."""
    suffix = EXTENSION_SUFFIXES[0]
    group = sorted((ROOT / "src").glob("pipevault__mypyc*.so"))
    modules = [so for src in (ROOT / "src" / "pipevault").rglob("*.py")
               if (so := src.with_name(src.stem + suffix)).exists()]
    return group + modules


def stale() -> list[str]:
    """Why the built modules no longer match the sources (empty: current, or none built)."""
    found = built()
    if not found:
        return []
    group = [p for p in found if p.name.startswith("pipevault__mypyc")]
    if not group:
        return [f"{found[0]} has no group library beside it"]
    since = group[0].stat().st_mtime
    reasons = [f"{p.relative_to(ROOT)} is newer than the compiled modules"
               for p in [ROOT / "pyproject.toml", *(ROOT / "src" / "pipevault").rglob("*.py")]
               if p.stat().st_mtime > since]
    wanted = {p.with_suffix("") for p in listed()}
    have = {p.with_name(p.name.split(".")[0]) for p in found if p not in group}
    reasons += [f"{p.relative_to(ROOT)}.py is listed but not compiled" for p in sorted(wanted - have)]
    reasons += [f"{p.relative_to(ROOT)}.py is compiled but no longer listed" for p in sorted(have - wanted)]
    return reasons


def remove() -> None:
    for p in built():
        p.unlink()


if __name__ == "__main__":
    if sys.argv[1:] == ["remove"]:
        remove()
    elif sys.argv[1:] == ["stale"]:
        why = stale()
        print("\n".join(why))
        sys.exit(1 if why else 0)
    else:
        sys.exit(__doc__)
