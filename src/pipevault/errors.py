"""The one error root of pipevault, its exit codes, and the registry of stable codes.

Every failure pipevault reports is a :class:`PipevaultError`. A subclass carries, as class
attributes, everything a user or a script needs:

- ``code``: a stable dotted identifier (``"pipe.double_free"``) used in ``--json`` output and
  across the wire; it never changes meaning once released.
- ``exit_code``: the process exit status the CLI returns for it, from the ranges below.
- ``hint``: what to do about it, appended to the message.

Exit-code ranges (published in ``docs/exit-codes.md``, generated from these classes)::

    0        success
    1        completed with warnings (some items skipped; the job itself finished)
    2        generic error / usage error
    3-9      foundation: configuration, environment, kernel features
    10-19    pipe: the DataPipe engine
    20-29    format: the stream and media format
    30-39    media: volumes, devices, pools
    40-49    catalog
    50-59    mover: backup, archive, restore, retrieve jobs
    60-69    server, network agents, authentication
    70-79    hsm
    80-89    client API
    90-99    streams (multiplexed backup)
    130      interrupted (Ctrl-C, SIGTERM)

Tree of the foundation classes (packages add their own subclasses in their ``errors`` module)::

    PipevaultError
      UsageError                 bad command-line or API arguments
      ConfigError                bad configuration value or file
      KernelFeatureMissing       the running kernel lacks a required feature
      Interrupted                a stop was requested by signal or by the user
      InternalError              a bug in pipevault

Errors are classified by what the caller should do: ``transient`` errors may succeed when
retried (a dropped connection), the rest will not (a corrupt volume, a wrong key).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, ClassVar

EXIT_OK = 0
EXIT_WARNINGS = 1
EXIT_GENERIC = 2
EXIT_INTERRUPTED = 130

_REGISTRY: dict[str, type[PipevaultError]] = {}


class PipevaultError(Exception):
    """Root of every error pipevault raises on purpose.

    Args:
        message: what went wrong, in the user's terms (the object, volume or stage involved).
        hint: overrides the class's advice on what to do, when the caller knows better.
        details: machine-readable context, copied into ``to_dict()`` for ``--json`` output.
    """

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = EXIT_GENERIC
    hint: ClassVar[str] = "See the message above; rerun with --json for details."
    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, hint: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self._hint = hint
        self.details = details

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            raise TypeError(f"{cls.__qualname__} must declare its own stable 'code'")
        other = _REGISTRY.get(cls.code)
        if other is not None and other.__qualname__ != cls.__qualname__:
            raise TypeError(f"error code {cls.code!r} used by {other.__qualname__} and {cls.__qualname__}")
        if not (2 <= cls.exit_code <= 127 or cls.exit_code == EXIT_INTERRUPTED):
            raise TypeError(f"{cls.__qualname__}.exit_code {cls.exit_code} is outside 2-127 and 130")
        _REGISTRY[cls.code] = cls

    @property
    def advice(self) -> str:
        """What the user should do next: the per-instance hint or the class's."""
        return self._hint if self._hint is not None else type(self).hint

    def __str__(self) -> str:
        return f"{self.message} ({self.advice})" if self.advice else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (process modules, the daemon): keep class and details.
        return (error_from_dict, (self.to_dict(),))

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-ready mapping: code, message, hint, exit code, details."""
        return {
            "code": self.code,
            "error": type(self).__name__,
            "message": self.message,
            "hint": self.advice,
            "exit_code": self.exit_code,
            "details": {k: _jsonable(v) for k, v in self.details.items()},
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


class UsageError(PipevaultError):
    """Arguments to a command or API call are wrong."""

    code = "usage"
    exit_code = EXIT_GENERIC
    hint = "Check the command's --help."


class ConfigError(PipevaultError):
    """A configuration value, variable or file is invalid."""

    code = "config.invalid"
    exit_code = 3
    hint = "Fix the value named in the message (flag, PIPEVAULT_* variable or TOML key)."


class KernelFeatureMissing(PipevaultError):
    """The running kernel or file system lacks a feature this operation needs."""

    code = "kernel.feature_missing"
    exit_code = 4
    hint = "Run on Linux 6.14 or newer as root, with the feature named in the message enabled."


class Interrupted(PipevaultError):
    """The work was stopped by a signal or a stop request before it finished."""

    code = "interrupted"
    exit_code = EXIT_INTERRUPTED
    hint = "Nothing partial was kept; run the command again to redo the work."


class InternalError(PipevaultError):
    """A bug in pipevault: an invariant did not hold."""

    code = "internal"
    exit_code = 5
    hint = "Please report this with the full output of the failing command."


def error_classes() -> dict[str, type[PipevaultError]]:
    """Every registered error class by code, after importing every pipevault module.

    Importing all modules makes the registry complete for documentation and for rebuilding
    errors received from a peer by their code.
    """
    import pipevault

    for info in pkgutil.walk_packages(pipevault.__path__, "pipevault."):
        if info.name.endswith("__main__") or ".cli" in info.name or ".web" in info.name:
            # The presentation layer defines no errors; importing it would pull in the CLI.
            continue
        importlib.import_module(info.name)
    return dict(sorted(_REGISTRY.items()))


def error_from_dict(data: dict[str, Any]) -> PipevaultError:
    """Rebuild an error received as ``to_dict()`` output (from a peer or a child process)."""
    cls = _REGISTRY.get(str(data.get("code")), PipevaultError)
    err = cls.__new__(cls)
    PipevaultError.__init__(err, str(data.get("message", "")), hint=data.get("hint"),
                            **dict(data.get("details") or {}))
    return err
