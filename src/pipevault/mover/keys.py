"""Per-node encryption keys, protected by a passphrase through scrypt.

A node's 32-byte master key is random. It is stored only wrapped: AES-256-GCM under a key
derived from the passphrase with scrypt (memory-hard: 2^15 x 8 x 128 B = 32 MiB and about a
tenth of a second per try), in ``$PIPEVAULT_HOME/keys/<node>.key`` (JSON, mode 0600). The node
name is bound as associated data, so a key file copied to another node's name does not open.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from pipevault.mover.errors import KeyMissing, MoverError, WrongPassphrase

SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1


def _kek(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def key_path(home: Path, node: str) -> Path:
    """Where the wrapped key of ``node`` is kept."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in node)
    return home / "keys" / f"{safe}.key"


def create_key(home: Path, node: str, passphrase: bytes) -> bytes:
    """Make a new master key for ``node``, store it wrapped, and return it.

    Raises:
        MoverError: a key exists already for the node (it is never replaced silently).
    """
    path = key_path(home, node)
    if path.exists():
        raise MoverError(f"node {node} already has a key in {path}",
                         hint="Use the existing key; delete the file only if no data needs it.")
    if not passphrase:
        raise KeyMissing("an empty passphrase cannot protect a key")
    master = secrets.token_bytes(32)
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    wrapped = AESGCM(_kek(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)).encrypt(nonce, master, node.encode())
    doc = {"format": 1, "node": node, "kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
           "salt": salt.hex(), "nonce": nonce.hex(), "wrapped": wrapped.hex()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    return master


def unlock_key(home: Path, node: str, passphrase: bytes) -> bytes:
    """The master key of ``node``.

    Raises:
        KeyMissing: the node has no key yet.
        WrongPassphrase: the passphrase does not unwrap it.
    """
    path = key_path(home, node)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise KeyMissing(f"node {node} has no encryption key ({path} does not exist)") from exc
    except (OSError, ValueError) as exc:
        raise MoverError(f"the key file {path} is unreadable: {exc}") from exc
    kek = _kek(passphrase, bytes.fromhex(doc["salt"]), doc["n"], doc["r"], doc["p"])
    try:
        return AESGCM(kek).decrypt(bytes.fromhex(doc["nonce"]), bytes.fromhex(doc["wrapped"]), node.encode())
    except InvalidTag as exc:
        raise WrongPassphrase(f"the passphrase does not unlock the key of node {node}") from exc


def node_key(home: Path, node: str, passphrase: bytes | None, *, create: bool) -> bytes:
    """Unlock the node's key, creating it first when ``create`` and none exists.

    Raises:
        KeyMissing: no passphrase was given.
        WrongPassphrase: see :func:`unlock_key`.
    """
    if passphrase is None:
        raise KeyMissing(f"node {node} needs its passphrase to encrypt or decrypt")
    if create and not key_path(home, node).exists():
        return create_key(home, node, passphrase)
    return unlock_key(home, node, passphrase)
