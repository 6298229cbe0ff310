"""The node registry: which client nodes may connect, each with its own secret.

Stored as JSON (``{"nodes": {name: {"secret": hex}}}``) in a file only the daemon's user
can read, because the secrets are needed in the clear to check HMAC answers. Reads go to
the file each time, so a node added while the daemon runs is accepted at once.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path

from pipevault.pipe.net.auth import valid_node_name
from pipevault.server.errors import ServerConfigError

SECRET_BYTES = 32


class NodeRegistry:
    """Nodes and secrets in ``path`` (created 0600 on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ServerConfigError(f"node registry {self.path} is unreadable: {exc}") from exc
        nodes = data.get("nodes") if isinstance(data, dict) else None
        if not isinstance(nodes, dict):
            raise ServerConfigError(f"node registry {self.path} has no 'nodes' object")
        return nodes

    def _write(self, nodes: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"nodes": nodes}, f, indent=1)
        os.replace(tmp, self.path)

    def add(self, node: str, secret: bytes | None = None) -> bytes:
        """Register ``node`` (replacing its secret if known); returns the secret.

        Raises:
            ServerConfigError: bad node name or an unwritable registry.
        """
        if not valid_node_name(node):
            raise ServerConfigError(f"bad node name {node!r}: use 1-64 letters, digits, '.', '-', '_'")
        secret = secret if secret is not None else secrets.token_bytes(SECRET_BYTES)
        with self._lock:
            nodes = self._read()
            nodes[node] = {"secret": secret.hex()}
            self._write(nodes)
        return secret

    def remove(self, node: str) -> bool:
        """Forget ``node``; True if it was registered."""
        with self._lock:
            nodes = self._read()
            if nodes.pop(node, None) is None:
                return False
            self._write(nodes)
            return True

    def secret_of(self, node: str) -> bytes | None:
        """The node's secret, or None when it is not registered."""
        entry = self._read().get(node)
        if not isinstance(entry, dict):
            return None
        try:
            return bytes.fromhex(str(entry.get("secret", "")))
        except ValueError:
            return None

    def names(self) -> list[str]:
        """Registered node names, sorted."""
        return sorted(self._read())
