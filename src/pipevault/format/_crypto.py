"""Keys of an encrypted session: derivation, key check value, dedup hashing (docs/format.md §5.5)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pipevault.format._records import DedupAlgo
from pipevault.format.errors import KeyRequiredError, LimitError, WrongKeyError

KEY_LEN = 32


def _hkdf(master: bytes, salt: bytes, info: bytes, length: int = KEY_LEN) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(master)


@dataclass(frozen=True)
class SessionKeys:
    """The keys one session uses, derived from the 32-byte master key.

    ``chunk_key`` encrypts chunks (AES-256-GCM), ``key_check`` is written in the session
    header to tell a wrong key from tampering, ``dedup_key`` keys the dedup hash.
    """

    chunk_key: bytes
    key_check: bytes
    dedup_key: bytes

    @classmethod
    def derive(cls, master: bytes, session_id: uuid.UUID) -> SessionKeys:
        """Derive the session's keys. Raises LimitError when ``master`` is not 32 bytes."""
        if len(master) != KEY_LEN:
            raise LimitError(f"encryption key must be {KEY_LEN} bytes, got {len(master)}")
        sid = session_id.bytes
        return cls(chunk_key=_hkdf(master, sid, b"pipevault/v1/chunk"),
                   key_check=_hkdf(master, sid, b"pipevault/v1/key-check", 16),
                   dedup_key=_hkdf(master, b"", b"pipevault/v1/dedup"))

    @classmethod
    def for_reading(cls, master: bytes | None, session_id: uuid.UUID, key_check: bytes) -> SessionKeys | None:
        """The keys to read a session whose header carries ``key_check`` (empty: not encrypted).

        Raises:
            KeyRequiredError: the session is encrypted and ``master`` is None.
            WrongKeyError: ``master`` is not the key the session was written with.
        """
        if not key_check:
            return None
        if master is None:
            raise KeyRequiredError(f"session {session_id} is encrypted; no key was given",
                                   session=str(session_id))
        keys = cls.derive(master, session_id)
        if not hmac.compare_digest(keys.key_check, key_check):
            raise WrongKeyError(f"the key given is not the key of session {session_id}",
                                session=str(session_id))
        return keys


UNKEYED_DEDUP_HASH = hashlib.sha256
"""The dedup hash of a session without keys (compiled framing calls it too)."""


def dedup_hash(plain: memoryview, keys: SessionKeys | None) -> tuple[DedupAlgo, bytes]:
    """The hash that identifies duplicate chunks: keyed when the session has keys.

    Unkeyed SHA-256 is used only without encryption, so an encrypted session never writes
    a hash that lets someone without the key confirm a guessed plaintext.
    """
    if keys is None:
        return _SHA256, UNKEYED_DEDUP_HASH(plain).digest()
    return _HMAC_SHA256, hmac.digest(keys.dedup_key, plain, "sha256")


# Module constants: an enum member looked up on its class costs ~0.2 us (Python 3.11), per chunk here.
_SHA256, _HMAC_SHA256 = DedupAlgo.SHA256, DedupAlgo.HMAC_SHA256
