"""Configuration: each option declared once, resolved from flag, environment, TOML or default.

An :class:`Option` names everything about a setting in one place: its TOML key
(``pipe.buffer_size``), its environment variable (``PIPEVAULT_BUFFER_SIZE``), its command-line
flag (``--buffer-size``), its parser, default and help. :func:`load` resolves every option with
the precedence flag > environment > TOML file > default, and records where each value came
from so ``pipevault config show`` can say why a value is what it is.

Nothing else in pipevault reads ``os.environ`` for settings.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipevault.errors import ConfigError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str | int) -> int:
    """Parse a byte size: ``1048576``, ``1M``, ``1MiB``, ``64k``. Units are powers of 1024.

    Raises:
        ConfigError: the text is not a size.
    """
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"{text!r} is not a size", hint="Write a size like 1048576, 1M or 64KiB.")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_size(n: float) -> str:
    """Format a byte count with binary units: ``1.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _default_home() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "pipevault")


def _default_node() -> str:
    return socket.gethostname() or "localhost"


def _default_config_file() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "pipevault", "config.toml")


@dataclass(frozen=True)
class Option:
    """One setting, declared once.

    Attributes:
        key: dotted TOML key (``section.name``); the last part names the option.
        parse: turns a string (from a flag or the environment) or a TOML value into the value;
            raises ``ValueError`` or ``ConfigError`` on bad input.
        default: the value when nothing sets it, or a zero-argument callable computing it.
        help: one line for ``--help`` and the docs.
        check: optional validation of the parsed value; returns an error text or None.
    """

    key: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None

    @property
    def name(self) -> str:
        """The option's short name, the last part of its key."""
        return self.key.rsplit(".", 1)[-1]

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return "PIPEVAULT_" + self.name.upper()

    @property
    def flag(self) -> str:
        """The command-line flag that sets it."""
        return "--" + self.name.replace("_", "-")

    def default_value(self) -> Any:
        """The default, computed when it is a callable."""
        return self.default() if callable(self.default) else self.default


def _size_between(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be between {format_size(lo)} and {format_size(hi)}"
    return check


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be positive"


OPTIONS: tuple[Option, ...] = (
    Option("general.home", str, _default_home,
           "Directory holding the embedded catalog, disk pools and state."),
    Option("general.config", str, _default_config_file, "TOML configuration file."),
    Option("pipe.buffer_size", parse_size, 1 << 20,
           "Size of each pipe buffer (64KiB to 16MiB).", _size_between(64 << 10, 16 << 20)),
    Option("pipe.max_buffers", int, 64, "Buffers in each pipe's shared-memory pool.",
           lambda v: None if v >= 2 else "must be at least 2"),
    Option("pipe.instances", int, 2, "Default instances of a parallel stage (compression).",
           _positive),
    Option("catalog.catalog_url", str, "",
           "Catalog database URL (postgresql://...); empty means the SQLite catalog in home."),
    Option("general.node", str, _default_node, "This machine's node name in the catalog."),
    Option("pool.volume_size", parse_size, 4 << 30,
           "Largest size of one disk volume file in the embedded disk pool.",
           _size_between(1 << 20, 1 << 50)),
    Option("security.passphrase", str, "",
           "Passphrase of this node's encryption key (prefer PIPEVAULT_PASSPHRASE or a file)."),
    Option("security.passphrase_file", str, "",
           "File holding the passphrase of this node's encryption key (PIPEVAULT_PASSPHRASE_FILE)."),
)

_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Settings:
    """Resolved option values with the source of each (flag, env, file or default)."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def home(self) -> Path:
        """The state directory (``PIPEVAULT_HOME``)."""
        return Path(self.values["home"])


def option(name: str) -> Option:
    """The declaration of the option called ``name``.

    Raises:
        KeyError: no option has that name.
    """
    return _BY_NAME[name]


def _toml_lookup(doc: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = doc
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def load(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Resolve every option: flag > environment > TOML file > default.

    Args:
        flags: values given on the command line by option name; None values are ignored.
        env: the environment to read (defaults to ``os.environ``).

    Raises:
        ConfigError: a value does not parse or fails its check, or the TOML file is invalid.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env
    raw: dict[str, tuple[Any, str]] = {}
    for opt in OPTIONS:
        if opt.name in flags:
            raw[opt.name] = (flags[opt.name], "flag " + opt.flag)
        elif opt.env in env:
            raw[opt.name] = (env[opt.env], "environment " + opt.env)
    cfg_path = Path(raw["config"][0] if "config" in raw else option("config").default_value())
    doc: Mapping[str, Any] = {}
    if cfg_path.is_file():
        try:
            doc = tomllib.loads(cfg_path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"configuration file {cfg_path} is not valid TOML: {exc}") from exc
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS:
        if opt.name in raw:
            value, source = raw[opt.name]
        else:
            found, value = _toml_lookup(doc, opt.key)
            source = f"file {cfg_path} [{opt.key}]" if found else "default"
            if not found:
                value = opt.default_value()
        try:
            parsed = opt.parse(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{opt.name} from {source}: {value!r} is invalid ({exc})") from exc
        problem = opt.check(parsed) if opt.check else None
        if problem:
            raise ConfigError(f"{opt.name} from {source}: {value!r} {problem}")
        values[opt.name] = parsed
        sources[opt.name] = source
    return Settings(values, sources)
