"""Builds the compiled part of pipevault (everything else is in pyproject.toml).

pipevault.format._accel computes the superblock checksum in C (CPython C API only); the
Python code in pipevault/format/_superblock.py is its specification and fallback.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("pipevault.format._accel", ["src/pipevault/format/_accel.c"],
                             extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror"])])
