"""Vectorised pseudonymisation and sealing of Arrow columns.

**Pseudonyms** are lowercase hex HMAC-SHA-256(key, canonical text of the value). The hash is *keyed* because the
space of valid personnummer is small enough to enumerate: an unkeyed hash would be reversed by hashing every
candidate. The key lives outside the data and the config (environment or secret backend); its id goes to the
catalog, so a key rotation (which breaks linkability) is visible. Pseudonymised data is still personal data.

**Seals** keep the authentic original next to its pseudonym, so the cold zone can restore the record: archival law
counts losing the original as disposal. Each value is sealed with AES-256-CTR then HMAC-SHA-256 (encrypt-then-MAC,
the construction Google Tink calls AES-CTR-HMAC-AEAD). Encryption and MAC keys are derived from the seal key with
HKDF-SHA256 under distinct info labels. Every value carries its own 16-byte IV = 8 random bytes per call || 4-byte
big-endian value index || 4-byte block counter starting at 0, so no counter block repeats under one key while a
call seals < 2**32 values. Layout: 0x01 || iv(16) || ct || tag(16), with
tag = HMAC-SHA-256(mac_key, 0x01 || iv || len(aad) as 8 bytes BE || aad || ct)[:16]. Sealed values are
self-contained: any subset, in any order, unseals.

Nothing loops over rows in Python: canonical text uses Arrow casts; HMAC is composed in DuckDB (threaded, reading
the Arrow buffers) as sha256(opad || unhex(sha256(ipad || msg))) over BLOBs (DuckDB hashes BLOB bytes as-is); the
CTR keystream for all values comes from ONE AES-ECB call over counter blocks built with numpy and is XORed onto the
concatenated plaintext bytes (offsets arithmetic, a strided view when all values have one length); per-value
framing (join, slice, compare) uses Arrow kernels.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from zones.errors import IntegrityError, MissingSecretError

__all__ = ["Keys", "canonical_text", "load_keys", "pseudonymise", "seal", "unseal"]

ArrowArray: TypeAlias = "pa.Array | pa.ChunkedArray"
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

VERSION = 0x01
OVERHEAD = 33  # version(1) + iv(16) + tag(16)
ENC_INFO = b"datazones/seal/v1/aes-256-ctr"
MAC_INFO = b"datazones/seal/v1/hmac-sha256"
_BATCH_ROWS = 16_384  # DuckDB morsel size: small batches let every thread work on one Arrow table
_HMAC_SQL = "sha256($opad || unhex(sha256({msg})))"


def canonical_text(arr: ArrowArray) -> ArrowArray:
    """Canonical text of each value (nulls stay null); see the module docs for the per-type forms."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return canonical_text(pc.cast(arr, t.value_type))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr
    if pa.types.is_timestamp(t):  # naive timestamps are taken as UTC; sub-microsecond data raises
        utc = pc.cast(arr, pa.timestamp("us", tz="UTC"))
        return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%S+00:00")
    if (pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t) or pa.types.is_date(t)
            or pa.types.is_string_view(t) or pa.types.is_null(t)):
        return pc.cast(arr, pa.string())
    raise TypeError(f"canonical_text: no canonical text for Arrow type {t} (supported: integers, strings, "
                    "dates, timestamps, decimals, booleans); convert the column first")


def _pads(key: bytes) -> dict[str, bytes]:
    """HMAC inner/outer pads of `key` (RFC 2104: keys longer than the block are hashed first)."""
    k = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    return {"ipad": bytes(b ^ 0x36 for b in k), "opad": bytes(b ^ 0x5C for b in k)}


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _duck(expr: str, table: pa.Table, params: dict[str, bytes]) -> pa.ChunkedArray:
    """Evaluate one DuckDB expression over `table` (row order preserved) on all cores."""
    con = duckdb.connect(config={"threads": _threads(), "preserve_insertion_order": True})
    try:
        con.register("t", pa.Table.from_batches(table.to_batches(max_chunksize=_BATCH_ROWS), schema=table.schema))
        return con.sql(f"SELECT {expr} AS r FROM t", params=params).to_arrow_table().column(0)
    finally:
        con.close()


def _as_binary(arr: pa.Array) -> pa.Array:
    if pa.types.is_string(arr.type):
        return arr.view(pa.binary())
    if pa.types.is_large_string(arr.type):
        return arr.view(pa.large_binary())
    if pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        return arr
    return arr.cast(pa.large_binary())


def _single(arr: ArrowArray) -> pa.Array:
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def pseudonymise(arr: ArrowArray, key: bytes) -> ArrowArray:
    """Lowercase hex HMAC-SHA-256(key, canonical_text(value) as UTF-8); nulls stay null.

    Returns an Array for an Array and a ChunkedArray for a ChunkedArray.
    """
    if len(key) < 32:
        raise ValueError("pseudonymise: key must be at least 32 bytes")
    text = canonical_text(arr)
    chunks = [_as_binary(c) for c in (text.chunks if isinstance(text, pa.ChunkedArray) else [text])]
    typ = chunks[0].type if chunks else pa.binary()
    table = pa.Table.from_batches([pa.record_batch([c], names=["v"]) for c in chunks], pa.schema([("v", typ)]))
    out = _duck(_HMAC_SQL.format(msg="$ipad || v"), table, _pads(key))
    return out.combine_chunks() if isinstance(arr, pa.Array) else out


def _values(arr: pa.Array) -> tuple[I64, U8]:
    """(int64 offsets starting at 0, data bytes) of a null-free binary-like array."""
    arr = _as_binary(arr)
    if len(arr) == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.uint8)
    bufs = arr.buffers()
    odt = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    off = np.frombuffer(bufs[1], odt)[arr.offset: arr.offset + len(arr) + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None and bufs[2].size else np.zeros(0, np.uint8)
    return off - off[0], data[off[0]: off[-1]]


def _binary(off: I64, data: U8, typ: pa.DataType) -> pa.Array:
    odt = np.int64 if pa.types.is_large_binary(typ) or pa.types.is_large_string(typ) else np.int32
    return pa.Array.from_buffers(typ, len(off) - 1, [None, pa.py_buffer(off.astype(odt)), pa.py_buffer(data)])


def _fixed(rows: U8, typ: pa.DataType) -> pa.Array:
    """An (n, w) byte matrix as a binary array of n values of w bytes."""
    n, w = rows.shape
    return _binary(np.arange(n + 1, dtype=np.int64) * w, np.ascontiguousarray(rows).ravel(), typ)


def _ctr_xor(enc_key: bytes, iv: U8, off: I64, data: U8) -> U8:
    """AES-256-CTR of every value (value i starts at counter block iv[i]) in one ECB call over all blocks."""
    lens = np.diff(off)
    n, nb = len(lens), (lens + 15) // 16
    total = int(nb.sum())
    ctr0 = np.ascontiguousarray(iv[:, 12:]).view(">u4").ravel()
    if n and int((ctr0.astype(np.int64) + nb).max()) > 2**32:
        raise IntegrityError("a sealed value would wrap its 32-bit block counter")
    blocks = np.empty((total, 16), np.uint8)
    uniform = n > 0 and bool((lens == lens[0]).all())
    if uniform:  # fixed-width values (ids, dates, timestamps): broadcasting, no repeat and no mask
        k = int(nb[0])
        per_value = blocks.reshape(n, k, 16)
        per_value[:, :, :12] = iv[:, None, :12]
        ctr = ctr0.astype(np.uint32)[:, None] + np.arange(k, dtype=np.uint32)
        per_value[:, :, 12:] = ctr.astype(">u4").view(np.uint8).reshape(n, k, 4)
    else:
        first = np.cumsum(nb) - nb
        blocks[:, :12] = np.repeat(iv[:, :12], nb, axis=0)
        ctr = np.repeat(ctr0.astype(np.int64) - first, nb) + np.arange(total, dtype=np.int64)
        blocks[:, 12:] = ctr.astype(">u4").view(np.uint8).reshape(-1, 4)
    ecb = Cipher(algorithms.AES(enc_key), modes.ECB()).encryptor()  # noqa: S305 - ECB only makes the CTR keystream
    ks = np.empty(total * 16 + 15, np.uint8)
    ecb.update_into(blocks.reshape(-1).data, ks.data)
    ks = ks[: total * 16]
    if uniform:
        ks = ks.reshape(n, -1)[:, : lens[0]].ravel()
    else:  # keep the first lens[i] of the 16 * nb[i] keystream bytes of value i
        keep = np.repeat(np.tile(np.array([True, False]), n), np.column_stack([lens, nb * 16 - lens]).ravel())
        ks = ks[keep]
    return data ^ ks


def _tags(mac_key: bytes, aad: bytes, head: pa.Array, ct: pa.Array) -> pa.Array:
    """HMAC-SHA-256(mac_key, head || len(aad) as 8 bytes BE || aad || ct)[:16] per value (head = 0x01 || iv)."""
    msg = pc.binary_join_element_wise(head, pa.scalar(len(aad).to_bytes(8, "big") + aad, head.type), ct,
                                      pa.scalar(b"", head.type))
    expr = f"unhex(left({_HMAC_SQL.format(msg='$ipad || v')}, 32))"
    return _single(_duck(expr, pa.table({"v": msg}), _pads(mac_key))).cast(head.type)


def _derive(key: bytes) -> tuple[bytes, bytes]:
    if len(key) < 32:
        raise ValueError("seal key must be at least 32 bytes")
    enc, mac = (HKDF(hashes.SHA256(), 32, salt=None, info=i).derive(key) for i in (ENC_INFO, MAC_INFO))
    return enc, mac


def _null_safe(arr: pa.Array, core: Callable[[pa.Array, I64], pa.Array]) -> pa.Array:
    """Run `core` on the non-null values (with their original positions) and put the nulls back."""
    if not arr.null_count:
        return core(arr, np.arange(len(arr), dtype=np.int64))
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    out = core(arr.filter(pa.array(valid)), np.flatnonzero(valid))
    return out.take(pa.array(np.cumsum(valid) - 1, mask=~valid))


def seal(arr: ArrowArray, key: bytes, *, aad: bytes) -> pa.BinaryArray:
    """AES-256-CTR + HMAC-SHA-256 seal of canonical_text(value), one self-contained blob per value."""
    enc_key, mac_key = _derive(key)

    def core(text: pa.Array, _: I64) -> pa.Array:
        off, data = _values(text)
        n = len(text)
        assert n < 2**32, "one seal call must hold fewer than 2**32 values (IV uniqueness)"
        typ = pa.large_binary() if int(off[-1]) + OVERHEAD * n >= 2**31 else pa.binary()
        head = np.zeros((n, 17), np.uint8)  # version || iv = random prefix || value index || block counter 0
        head[:, 0] = VERSION
        head[:, 1:9] = np.frombuffer(os.urandom(8), np.uint8)
        head[:, 9:13] = np.arange(n, dtype=">u4").view(np.uint8).reshape(n, 4)
        ct = _binary(off, _ctr_xor(enc_key, head[:, 1:], off, data), typ)
        head_arr = _fixed(head, typ)
        return pc.binary_join_element_wise(head_arr, ct, _tags(mac_key, aad, head_arr, ct), pa.scalar(b"", typ))

    return _null_safe(_single(canonical_text(arr)), core)


def unseal(sealed: ArrowArray, key: bytes, *, aad: bytes) -> pa.StringArray:
    """Verify every tag, then decrypt: canonical text of the originals (nulls stay null).

    Raises IntegrityError (count and first failing index, never a value) if any value is malformed or fails
    authentication: tampering, a wrong key or a wrong aad.
    """
    enc_key, mac_key = _derive(key)
    arr = _single(sealed)
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        raise TypeError(f"unseal expects a binary array, got {arr.type}")

    def core(s: pa.Array, pos: I64) -> pa.Array:
        short = pc.binary_length(s).to_numpy(zero_copy_only=False) < OVERHEAD
        if short.any():
            raise IntegrityError(f"{int(short.sum())} of {len(arr)} sealed values are malformed (shorter than "
                                 f"{OVERHEAD} bytes); first at index {int(pos[np.argmax(short)])}")
        head, ct, tag = pc.binary_slice(s, 0, 17), pc.binary_slice(s, 17, -16), pc.binary_slice(s, -16)
        rows = _values(head)[1].reshape(-1, 17)
        ok = pc.equal(_tags(mac_key, aad, head, ct), tag).to_numpy(zero_copy_only=False)
        bad = (rows[:, 0] != VERSION) | ~ok
        if bad.any():
            raise IntegrityError(f"{int(bad.sum())} of {len(arr)} sealed values failed authentication (tampered, "
                                 f"wrong key or wrong aad); first failing index {int(pos[np.argmax(bad)])}")
        off, data = _values(ct)
        typ = pa.large_string() if pa.types.is_large_binary(s.type) else pa.string()
        return _binary(off, _ctr_xor(enc_key, rows[:, 1:], off, data), typ)

    return _null_safe(arr, core)


@dataclass(frozen=True)
class Keys:
    """Key material for pseudonymisation and sealing. The repr shows key ids only, never key bytes."""

    pseudonym_key: bytes = field(repr=False)
    pseudonym_key_id: str
    seal_key: bytes | None = field(repr=False)
    seal_key_id: str | None

    def __repr__(self) -> str:
        return f"Keys(pseudonym_key_id={self.pseudonym_key_id!r}, seal_key_id={self.seal_key_id!r})"


_HEX = re.compile(r"(?:[0-9a-fA-F]{2}){32,}")
_HOWTO = ("expected 64+ hex characters (32+ bytes) or 'base64:' followed by base64 of 32+ bytes. Make one with "
          "`python -c \"import secrets; print(secrets.token_hex(32))\"` and provide it through the environment or "
          "a secret backend (Vault, a Kubernetes/Airflow secret), never from a file in the repository.")


def _parse_key(env: Mapping[str, str], var: str) -> bytes | None:
    raw = env.get(var, "").strip()
    if not raw:
        return None
    if raw.startswith("base64:"):
        try:
            key = base64.b64decode(raw[7:], validate=True)
        except (binascii.Error, ValueError):
            raise MissingSecretError(f"{var} is not valid base64; {_HOWTO}") from None
    elif _HEX.fullmatch(raw):
        key = bytes.fromhex(raw)
    else:
        raise MissingSecretError(f"{var} is malformed (not hex of even length >= 64, not base64:); {_HOWTO}")
    if len(key) < 32:
        raise MissingSecretError(f"{var} is too short ({len(key)} bytes, need >= 32); {_HOWTO}")
    return key


def _key_id(env: Mapping[str, str], var: str, key: bytes) -> str:
    given = env.get(var, "").strip()
    return given or "k-" + hashlib.sha256(b"datazones-key-id:" + key).hexdigest()[:12]


def load_keys(env: Mapping[str, str] = os.environ, *, need_seal: bool) -> Keys:
    """Read DATAZONES_PSEUDONYM_KEY (required) and DATAZONES_SEAL_KEY (required if need_seal); fail closed."""
    pkey = _parse_key(env, "DATAZONES_PSEUDONYM_KEY")
    if pkey is None:
        raise MissingSecretError(f"DATAZONES_PSEUDONYM_KEY is not set; {_HOWTO}")
    skey = _parse_key(env, "DATAZONES_SEAL_KEY")
    if skey is None and need_seal:
        raise MissingSecretError(f"DATAZONES_SEAL_KEY is not set (sealing originals needs it); {_HOWTO}")
    return Keys(pseudonym_key=pkey, pseudonym_key_id=_key_id(env, "DATAZONES_PSEUDONYM_KEY_ID", pkey),
                seal_key=skey, seal_key_id=None if skey is None else _key_id(env, "DATAZONES_SEAL_KEY_ID", skey))
