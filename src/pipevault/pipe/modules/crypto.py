"""AES-256-GCM encryptor and decryptor stages.

Each buffer becomes one self-delimiting record in a new pool buffer::

    u32 LE  length of what follows (12 + n + 16)
    12 B    nonce: 4 random bytes fixed per stage instance + 8-byte counter (never repeats
            under one key unless 2^32 instances collide, the NIST SP 800-38D construction)
    n B     ciphertext, written straight into the pool buffer by ``update_into``
    16 B    tag

The record's length prefix is authenticated as associated data, so a record cannot be cut
or grown unnoticed. The encryptor may run as several instances. The decryptor takes the
records however the stream is cut (one instance), decrypts each straight into a pool buffer,
and refuses the stream on a wrong key, an altered record or a truncated end.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pipevault.pipe._context import StageContext
from pipevault.pipe.errors import CorruptInput, IntegrityError, PipeSpecError

_LEN = struct.Struct("<I")
NONCE, TAG = 12, 16
OVERHEAD = _LEN.size + NONCE + TAG


def _check_key(key: bytes) -> bytes:
    if len(key) != 32:
        raise PipeSpecError(f"AES-256-GCM needs a 32-byte key, got {len(key)} bytes")
    return bytes(key)


class AesGcmEncrypt:
    """Encrypts each buffer into one record (see the module docstring). Allocating stage."""

    def __init__(self, key: bytes) -> None:
        self.key = _check_key(key)

    def run(self, ctx: StageContext) -> int:
        prefix = os.urandom(4)
        counter = 0
        total = 0
        while (buf := ctx.receive_buf()) is not None:
            src = buf.view
            n = len(src)
            out = ctx.alloc_buf()
            dst = out.data
            if n + OVERHEAD + 15 > len(dst):
                raise CorruptInput(f"stage {ctx.stage_name}: a {n}-byte buffer leaves no room for "
                                   "the record framing; use a first stage that respects fill_limit")
            nonce = prefix + counter.to_bytes(8, "little")
            counter += 1
            header = _LEN.pack(NONCE + n + TAG)
            enc = Cipher(algorithms.AES(self.key), modes.GCM(nonce)).encryptor()
            enc.authenticate_additional_data(header)
            dst[: _LEN.size] = header
            dst[_LEN.size: _LEN.size + NONCE] = nonce
            body = _LEN.size + NONCE
            # update_into needs 15 spare bytes past the output; the check above ensured them.
            written = enc.update_into(src, dst[body: body + n + 15])
            enc.finalize()
            dst[body + written: body + written + TAG] = enc.tag
            ctx.free_buf(buf)
            out.length = body + written + TAG
            total += out.length
            ctx.send_buf(out)
        return total


class AesGcmDecrypt:
    """Decrypts a stream of records cut anywhere. One instance; allocating.

    Raises:
        IntegrityError: a record does not authenticate (wrong key or altered data).
        CorruptInput: a record header is impossible, or the stream ends inside a record.
    """

    def __init__(self, key: bytes) -> None:
        self.key = _check_key(key)

    def run(self, ctx: StageContext) -> int:
        carry = bytearray()
        total = 0
        index = 0
        while (buf := ctx.receive_buf()) is not None:
            view = buf.view
            pos = 0
            try:
                if carry:
                    need = self._record_size(ctx, carry, view)
                    take = min(need - len(carry), len(view))
                    carry += view[:take]
                    pos = take
                    if len(carry) == need:
                        total += self._decrypt(ctx, memoryview(carry), index)
                        index += 1
                        carry.clear()
                while pos < len(view):
                    rest = view[pos:]
                    if len(rest) < _LEN.size:
                        carry += rest
                        break
                    size = _LEN.size + self._body_len(ctx, rest)
                    if len(rest) < size:
                        carry += rest
                        break
                    total += self._decrypt(ctx, rest[:size], index)
                    index += 1
                    pos += size
            finally:
                ctx.free_buf(buf)
        if carry:
            raise CorruptInput(f"stage {ctx.stage_name}: the encrypted stream is truncated inside "
                               f"record {index}")
        return total

    def _body_len(self, ctx: StageContext, head: memoryview | bytearray) -> int:
        (n,) = _LEN.unpack_from(head)
        if ctx.pool.buffer_size < n <= (16 << 20) + NONCE + TAG:
            raise CorruptInput(f"stage {ctx.stage_name}: record of {n} bytes does not fit a "
                               f"{ctx.pool.buffer_size}-byte buffer",
                               hint="Decrypt with a buffer size at least as large as the one used "
                                    "to encrypt (--buffer-size).")
        if not NONCE + TAG <= n <= ctx.pool.buffer_size:
            raise CorruptInput(f"stage {ctx.stage_name}: impossible record length {n}: the data is "
                               "not an AES-GCM record stream")
        return int(n)

    def _record_size(self, ctx: StageContext, carry: bytearray, view: memoryview) -> int:
        if len(carry) < _LEN.size:
            head = bytes(carry) + bytes(view[: _LEN.size - len(carry)])
            if len(head) < _LEN.size:
                return len(carry) + len(view) + 1  # still short; keep gathering
            return _LEN.size + self._body_len(ctx, bytearray(head))
        return _LEN.size + self._body_len(ctx, carry)

    def _decrypt(self, ctx: StageContext, record: memoryview, index: int) -> int:
        header = record[: _LEN.size]
        nonce = bytes(record[_LEN.size: _LEN.size + NONCE])
        body = record[_LEN.size + NONCE: len(record) - TAG]
        tag = bytes(record[len(record) - TAG:])
        dec = Cipher(algorithms.AES(self.key), modes.GCM(nonce, tag)).decryptor()
        dec.authenticate_additional_data(bytes(header))
        out = ctx.alloc_buf()
        n = dec.update_into(body, out.data[: len(body) + 15])
        try:
            dec.finalize()
        except InvalidTag as exc:
            ctx.free_buf(out)
            raise IntegrityError(f"stage {ctx.stage_name}: record {index} does not authenticate: "
                                 "wrong key or altered data") from exc
        out.length = n
        ctx.send_buf(out)
        return n
