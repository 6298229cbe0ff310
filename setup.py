"""Builds the compiled part of pipevault (everything else is in pyproject.toml).

pipevault.format._accel computes the superblock checksum, reads and writes one-piece
superblocks, packs whole untransformed chunks, frames small objects, checks and
decompresses compressed chunks, walks record headers and decodes and packs chunk records
and field lists in C (CPython C API, and libxxhash, libzstd and liblz4 from Debian's -dev
packages); the Python code in pipevault/format is its specification and fallback. The
extension is optional so that an install without a compiler still works (on the Python
code); the test suite fails when it is not built, so CI notices. pipevault.mover._fastio
creates a restore's small files in C.

With ``PIPEVAULT_MYPYC=1`` (what ``make setup`` runs in the virtual environment, where mypy
and every dependency's types are installed), the Python modules listed in pyproject.toml
under ``[tool.pipevault] compiled`` are compiled with mypyc as well, in place: the
per-object work of a backup and a restore (a backup of 20,000 small files: 3.8 -> 3.4 CPU
s, docs/benchmarks.md). An install without it (pip's isolated build) runs the same modules
interpreted.
"""

import os
import tomllib

from setuptools import Extension, setup

SOURCES = ["src/pipevault/format/_accel.c", "src/pipevault/format/_accel_fields.c",
           "src/pipevault/format/_accel_records.c", "src/pipevault/format/_accel_plain.c",
           "src/pipevault/format/_accel_codec.c", "src/pipevault/format/_accel_xxh.c",
           "src/pipevault/format/_accel_walk.c", "src/pipevault/format/_accel_frame.c"]

FLAGS = ["-O2", "-Wall", "-Wextra", "-Werror"]


def compiled_python() -> list[Extension]:
    """The mypyc extensions, when asked for (see the module's notes)."""
    if os.environ.get("PIPEVAULT_MYPYC") != "1":
        return []
    from mypyc.build import mypycify  # only in the virtual environment: a dev dependency

    with open("pyproject.toml", "rb") as f:
        modules = tomllib.load(f)["tool"]["pipevault"]["compiled"]
    return mypycify(modules, opt_level="3", group_name="pipevault", multi_file=True)


setup(ext_modules=[Extension("pipevault.format._accel", SOURCES,
                             # Debian libxxhash-dev, libzstd-dev, liblz4-dev (scripts/install-system-deps.sh)
                             libraries=["xxhash", "zstd", "lz4"],
                             depends=["src/pipevault/format/_accel.h", "src/pipevault/format/_accel_xxh.h"],
                             extra_compile_args=FLAGS, optional=True),
                   # A restore's small files written with the interpreter lock released
                   # (pipevault.mover.write_behind.write_batch; the Python code is its fallback).
                   Extension("pipevault.mover._fastio", ["src/pipevault/mover/_fastio.c"],
                             extra_compile_args=FLAGS, optional=True),
                   *compiled_python()])
