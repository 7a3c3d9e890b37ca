"""Vectorised pseudonymisation and sealing of Arrow columns.

**Pseudonyms** are lowercase hex HMAC-SHA-256(K, canonical text of the value), K = the key's hex text. The hash is
*keyed* because the space of valid personnummer is small enough to enumerate: an unkeyed hash would be reversed by
hashing every candidate. The key lives outside the data and the config (environment or secret backend); its id goes
to the catalog, so a key rotation (which breaks linkability) is visible. Pseudonymised data is still personal data.

**Seals** keep the authentic original next to its pseudonym, so the cold zone can restore the record: archival law
counts losing the original as disposal. Each value is sealed with AES-256-CTR then HMAC-SHA-256 (encrypt-then-MAC,
the construction Google Tink calls AES-CTR-HMAC-AEAD). Encryption and MAC keys are derived from the seal key with
HKDF-SHA256 under distinct info labels. Every value carries its own 16-byte IV = 8 random bytes per call || 4-byte
big-endian value index || 4-byte block counter starting at 0, so no counter block repeats under one key while a call
seals < 2**32 values. Layout: 0x01 || iv(16) || ct || tag(16), with tag = HMAC-SHA-256(mac_key, 0x01 || iv ||
len(aad) as 8 bytes BE || aad || ct)[:16]. Sealed values are self-contained: any subset, in any order, unseals.

Nothing loops over rows in Python: canonical text uses Arrow casts; HMAC-SHA-256 runs over the Arrow buffers in C
(:mod:`lifecycle.fasthmac`; SHA-NI when present) or, if that kernel was not built, in Rust (polars-hash), keyed with the
secret's lowercase hex text (the plugin takes text keys; 64 ASCII bytes, one SHA-256 block, 256 bits of entropy —
``hmac.new(key.hex().encode(), msg, sha256)`` reproduces every value); the CTR keystream for all values comes from ONE
AES-ECB call over counter blocks built with numpy, XORed onto the concatenated plaintext bytes (offsets arithmetic,
a strided view when all values have one length); per-value framing (join, slice, compare) uses Arrow kernels."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lifecycle import fasthmac
from zones.errors import IntegrityError, MissingSecretError

__all__ = ["Keys", "canonical_text", "load_keys", "open_sealed", "pseudonymise", "seal", "seal_siv",
           "unseal", "unseal_siv"]

ArrowArray: TypeAlias = "pa.Array | pa.ChunkedArray"
U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

VERSION = 0x01
OVERHEAD = 33  # version(1) + iv(16) + tag(16)
ENC_INFO = b"datazones/seal/v1/aes-256-ctr"
MAC_INFO = b"datazones/seal/v1/hmac-sha256"


def canonical_text(arr: ArrowArray) -> ArrowArray:
    """Canonical text per value, nulls stay null: integers in decimal, strings as-is, dates YYYY-MM-DD, timestamps
    2024-01-02T03:04:05.000000+00:00 (UTC; naive ones are taken as UTC; sub-microsecond data raises), decimals as
    their plain string (scale kept: 1.500), booleans true/false."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return canonical_text(pc.cast(arr, t.value_type))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr
    if pa.types.is_timestamp(t):
        utc = pc.cast(arr, pa.timestamp("us", tz="UTC"))
        return _format_timestamps(utc)
    if (pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t) or pa.types.is_date(t)
            or pa.types.is_string_view(t) or pa.types.is_null(t)):
        return pc.cast(arr, pa.string())
    raise TypeError(f"canonical_text: no canonical text for Arrow type {t} (supported: integers, strings, "
                    "dates, timestamps, decimals, booleans); convert the column first")


def _format_timestamps(utc: ArrowArray) -> ArrowArray:
    """2024-01-02T03:04:05.000000+00:00, formatted in Rust by polars (6x faster than pyarrow's strftime)."""
    import polars as pl

    if isinstance(utc, pa.ChunkedArray):
        return pa.chunked_array([_format_timestamps(c) for c in utc.chunks], pa.string())
    s = pl.from_arrow(utc)
    assert isinstance(s, pl.Series)
    return s.dt.to_string("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_arrow().cast(pa.string())


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
    """Lowercase hex HMAC-SHA-256(K, canonical_text(value) as UTF-8), K = the key's lowercase hex text.

    Nulls stay null. Returns an Array for an Array and a ChunkedArray for a ChunkedArray.
    """
    if len(key) < 32:
        raise ValueError("pseudonymise: key must be at least 32 bytes")
    text = canonical_text(arr)
    if isinstance(text, pa.ChunkedArray):
        return pa.chunked_array([_hmac_hex(c, key) for c in text.chunks], pa.string())
    return _hmac_hex(text, key)



def _hmac_hex(values: pa.Array, key: bytes) -> pa.Array:
    """HMAC-SHA-256 of every value (string or binary): the C kernel (:mod:`lifecycle.fasthmac`), else polars-hash.

    The HMAC key K is the secret's lowercase hex (64 ASCII bytes = one SHA-256 block, 256 bits of entropy; the
    polars-hash plugin takes text keys): ``hmac.new(key.hex().encode(), msg, sha256)`` reproduces it.
    """
    native = fasthmac.hmac_hex(values, key.hex().encode())
    if native is not None:
        return native
    import polars as pl
    import polars_hash  # noqa: F401  (registers the .chash namespace)

    if len(values) == 0:
        return pa.array([], pa.string())
    col = pl.from_arrow(values)
    assert isinstance(col, pl.Series)
    expr = pl.col("v").chash.hmac_sha256(key=key.hex())  # type: ignore[attr-defined]
    out = col.to_frame("v").select(expr).to_series().to_arrow()
    return out.cast(pa.string())


_HEX_DIGITS = b"0123456789abcdef"
# Two ASCII hex digits read as one little-endian uint16 -> the byte they encode: one gather per output byte.
_LUT16 = np.zeros(65536, np.uint8)
for _h, _a in enumerate(_HEX_DIGITS):
    for _l, _b in enumerate(_HEX_DIGITS):
        _LUT16[_a | (_b << 8)] = (_h << 4) | _l


def _hex_prefix(hexes: pa.Array, nbytes: int) -> U8:
    """The first ``nbytes`` bytes encoded by each (null-free, lowercase) hex string, as an (n, nbytes) matrix."""
    off, data = _values(hexes)
    if len(off) > 1 and int(off[-1]) == 64 * (len(off) - 1) and bool((np.diff(off) == 64).all()):
        native = fasthmac.hex_prefix(data.reshape(-1, 64), nbytes)
        if native is not None:
            return native
        pairs = data.reshape(-1, 64).view("<u2")  # full digests: a strided view, no index matrix
        return _LUT16[pairs[:, :nbytes]]
    idx = off[:-1, None] + 2 * np.arange(nbytes)[None, :]
    return _LUT16[data[idx].astype(np.uint16) | (data[idx + 1].astype(np.uint16) << 8)]


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


def _ecb(enc_key: bytes, blocks: U8) -> U8:
    """AES-256 of every 16-byte counter block in one call (ECB only makes the CTR keystream)."""
    ecb = Cipher(algorithms.AES(enc_key), modes.ECB()).encryptor()  # noqa: S305
    out = np.empty(blocks.size + 15, np.uint8)
    ecb.update_into(np.ascontiguousarray(blocks).reshape(-1).data, out.data)
    return out[: blocks.size]


def _ctr_xor(enc_key: bytes, iv: U8, off: I64, data: U8, *, prefix: int | None = None) -> U8:
    """AES-256-CTR of every value (value i starts at counter block iv[i]) in one ECB call over all blocks; with
    ``prefix``, each value's ciphertext comes after one ``prefix`` byte (value i then starts at off[i] + i)."""
    lens = np.diff(off)
    n, nb = len(lens), (lens + 15) // 16
    total = int(nb.sum())
    ctr0 = np.ascontiguousarray(iv[:, 12:]).view(">u4").ravel()
    if n and int((ctr0.astype(np.int64) + nb).max()) > 2**32:
        raise IntegrityError("a sealed value would wrap its 32-bit block counter")
    if total == 0:  # no values, or only empty ones
        return _prefixed(data.copy(), off, prefix)
    k = int(nb.max())
    if n * k <= 2 * total:  # short or similar-length values (ids, dates, names): a dense (n, k) grid
        if k == 1:  # one block per value: its counter block is its IV
            blocks = np.ascontiguousarray(iv)
        else:
            per_value = np.empty((n, k, 16), np.uint8)
            per_value[:, :, :12] = iv[:, None, :12]
            ctr = ctr0.astype(np.uint32)[:, None] + np.arange(k, dtype=np.uint32)  # < 2**32 (checked above
            per_value[:, :, 12:] = ctr.astype(">u4").view(np.uint8).reshape(n, k, 4)  # for the used blocks)
            blocks = per_value.reshape(-1, 16)
        grid = _ecb(enc_key, blocks).reshape(n, k * 16)
        native = fasthmac.xor_keystream(off, data, grid, prefix)  # the C kernel: no boolean gather, no scatter
        if native is not None:
            return native
        if bool((lens == lens[0]).all()):
            ks = grid[:, : lens[0]].ravel()
        else:  # keep the first lens[i] keystream bytes of row i (row-major boolean gather)
            ks = grid[np.arange(k * 16) < lens[:, None]]
        return _prefixed(data ^ ks, off, prefix)
    first = np.cumsum(nb) - nb  # long, uneven values (free text): exactly the blocks each value needs
    blocks = np.empty((total, 16), np.uint8)
    blocks[:, :12] = np.repeat(iv[:, :12], nb, axis=0)
    ctr = np.repeat(ctr0.astype(np.int64) - first, nb) + np.arange(total, dtype=np.int64)
    blocks[:, 12:] = ctr.astype(">u4").view(np.uint8).reshape(-1, 4)
    ks = _ecb(enc_key, blocks)
    keep = np.repeat(np.tile(np.array([True, False]), n), np.column_stack([lens, nb * 16 - lens]).ravel())
    ks = ks[keep]
    return _prefixed(data ^ ks, off, prefix)


def _prefixed(ct: U8, off: I64, prefix: int | None) -> U8:
    """``ct`` (values at ``off``) with one ``prefix`` byte in front of every value; ``ct`` itself without one."""
    if prefix is None:
        return ct
    out_off = off + np.arange(len(off), dtype=np.int64)
    head = np.zeros(len(ct) + len(off) - 1, bool)
    head[out_off[:-1]] = True
    out = np.empty(len(head), np.uint8)
    out[head] = prefix
    out[~head] = ct
    return out


def _tags(mac_key: bytes, aad: bytes, head: pa.Array, ct: pa.Array) -> pa.Array:
    """HMAC-SHA-256(K_mac, head || len(aad) as 8 bytes BE || aad || ct)[:16] per value (head = 0x01 || iv)."""
    msg = pc.binary_join_element_wise(head, pa.scalar(len(aad).to_bytes(8, "big") + aad, head.type), ct,
                                      pa.scalar(b"", head.type))
    return _fixed(_hex_prefix(_hmac_hex(msg, mac_key), 16), head.type)


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
        if n >= 2**32:  # the 4-byte value index in the IV must not wrap
            raise ValueError("seal: one call must hold fewer than 2**32 values; split the column")
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


SIV_LEGACY = 0x02  # v2: one key for every column (read only; written up to 0.1.0.dev)
SIV_VERSION = 0x03  # v3: the key is bound to the dataset and column (the aad)
SIV_INFO = b"datazones/seal/v2/siv-aes-256-ctr"
SIV_INFO_V3 = b"datazones/seal/v3/siv-aes-256-ctr"


def _siv_key(seal_key: bytes, version: int, aad: bytes) -> bytes:
    info = SIV_INFO if version == SIV_LEGACY else SIV_INFO_V3 + b"\0" + aad
    return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(seal_key)


def seal_siv(arr: ArrowArray, pseudonyms: ArrowArray, key: bytes, *, aad: bytes) -> pa.BinaryArray:
    """Seal a column that is also pseudonymised, SIV-style: the pseudonym is the synthetic IV *and* the tag.

    ``0x03 || AES-256-CTR(K, iv = pseudonym[:16] with the counter's top bit cleared, canonical_text(value))``,
    K = HKDF(seal key, SIV_INFO_V3 || 0 || aad) with aad naming the dataset and column (:func:`~lifecycle.transform.
    seal_aad`), so a value moved to another column or dataset opens to garbage and fails its proof. This is the SIV
    construction (Rogaway–Shrimpton deterministic authenticated encryption) with HMAC-SHA-256 under the pseudonym
    key as its PRF; the IV is not stored again because the pseudonym column holds it. Deterministic, so equal
    originals give equal ciphertexts — which the pseudonym reveals anyway. Costs one bulk AES pass and no extra
    HMAC; opening needs both keys (:func:`unseal_siv`).
    """
    enc_key = _siv_key(key, SIV_VERSION, aad)
    text = _single(canonical_text(arr))
    ivs = _single(pseudonyms).cast(pa.string())
    if len(text) != len(ivs):
        raise ValueError("seal_siv: values and pseudonyms differ in length")

    def core(t: pa.Array, pos: I64) -> pa.Array:
        off, data = _values(t)
        iv = _siv_iv(ivs if len(pos) == len(ivs) else ivs.take(pa.array(pos)))
        out = _ctr_xor(enc_key, iv, off, data, prefix=SIV_VERSION)  # each value gains its version byte in front
        return _binary(off + np.arange(len(off), dtype=np.int64), out, pa.binary())

    return _null_safe(text, core)


def _siv_iv(pseudonyms: pa.Array) -> U8:
    rows = _hex_prefix(pseudonyms.cast(pa.string()), 16)
    rows[:, 12] &= 0x7F  # the 32-bit block counter starts below 2**31: no value can wrap it
    return rows


def unseal_siv(sealed: ArrowArray, pseudonyms: ArrowArray, keys: Keys, *, aad: bytes) -> pa.StringArray:
    """Open :func:`seal_siv` values (v3 with ``aad``; v2 ones too) and prove them: HMAC(pseudonym key, original)
    must equal the pseudonym, under the current pseudonym key or a retired one (values promoted before a key
    rotation are still authentic)."""
    if keys.seal_key is None:
        raise MissingSecretError("unsealing needs DATAZONES_SEAL_KEY (the archive function's key)")
    seal_key = keys.seal_key
    arr, ivs = _single(sealed), _single(pseudonyms).cast(pa.string())

    def core(s: pa.Array, pos: I64) -> pa.Array:
        off, data = _values(s)
        lens = np.diff(off)
        if (lens < 1).any():
            raise IntegrityError(f"{int((lens < 1).sum())} sealed values are empty (malformed)")
        version = data[off[:-1]]
        keep = np.ones(len(data), bool)
        keep[off[:-1]] = False  # drop each value's version byte
        ct_off, ct = off - np.arange(len(off), dtype=np.int64), data[keep]
        iv_vals = ivs.take(pa.array(pos))
        iv = _siv_iv(iv_vals)
        plain = np.empty_like(ct)
        for v in (SIV_VERSION, SIV_LEGACY):  # one keystream pass per version present (v2 only in old tables)
            rows = version == v
            if rows.all():
                plain = _ctr_xor(_siv_key(seal_key, v, aad), iv, ct_off, ct)
            elif rows.any():
                sel = np.flatnonzero(rows)
                idx = np.flatnonzero(np.repeat(rows, np.diff(ct_off)))  # the bytes of those values
                sub_off = np.concatenate([[0], np.cumsum(np.diff(ct_off)[sel])]).astype(np.int64)
                plain[idx] = _ctr_xor(_siv_key(seal_key, v, aad), iv[sel], sub_off, ct[idx])
        text = _binary(ct_off, plain, pa.string())
        ok = (version == SIV_VERSION) | (version == SIV_LEGACY)
        proven = np.zeros(len(ok), bool)
        for pkey in (keys.pseudonym_key, *keys.retired_pseudonym_keys):
            todo = ok & ~proven
            if not todo.any():
                break
            sel = pa.array(np.flatnonzero(todo))
            match = pc.fill_null(pc.equal(pseudonymise(text.take(sel), pkey), iv_vals.take(sel)), False)
            proven[np.flatnonzero(todo)[match.to_numpy(zero_copy_only=False)]] = True
        if not proven.all():
            bad = ~proven
            raise IntegrityError(f"{int(bad.sum())} of {len(arr)} sealed values failed authentication (tampered, "
                                 f"wrong key, another column's value, or a pseudonym that does not belong to "
                                 f"them); first failing index {int(pos[np.argmax(bad)])}")
        return text

    return _null_safe(arr, core)


def open_sealed(sealed: ArrowArray, keys: Keys, *, aad: bytes, pseudonyms: ArrowArray | None = None
                ) -> pa.StringArray:
    """Open a sealed column whatever its format: v1 (:func:`seal`) or SIV (:func:`seal_siv`, needs pseudonyms)."""
    if keys.seal_key is None:
        raise MissingSecretError("unsealing needs DATAZONES_SEAL_KEY (the archive function's key)")
    arr = _single(sealed)
    first = pc.binary_slice(arr, 0, 1, 1)
    siv = pc.fill_null(pc.is_in(first, pa.array([bytes([SIV_VERSION]), bytes([SIV_LEGACY])], pa.binary())),
                       False)
    n_siv = int(pc.sum(siv).as_py() or 0)
    if n_siv == 0:
        return unseal(arr, keys.seal_key, aad=aad)
    if pseudonyms is None:
        raise IntegrityError("these sealed values are SIV-sealed: opening them needs their pseudonym column")
    if n_siv == len(arr) - arr.null_count:
        return unseal_siv(arr, pseudonyms, keys, aad=aad)
    v1 = pc.invert(siv)
    out_v2 = unseal_siv(arr.filter(siv), _single(pseudonyms).filter(siv), keys, aad=aad)
    out_v1 = unseal(arr.filter(v1), keys.seal_key, aad=aad)
    idx = np.cumsum(siv.to_numpy(zero_copy_only=False)) - 1
    idx1 = np.cumsum(v1.to_numpy(zero_copy_only=False)) - 1
    merged = pa.concat_arrays([out_v2.cast(pa.string()), out_v1.cast(pa.string())])
    take = np.where(siv.to_numpy(zero_copy_only=False), idx, len(out_v2) + idx1)
    return merged.take(pa.array(take))


@dataclass(frozen=True)
class Keys:
    """Key material for pseudonymisation and sealing. The repr shows key ids only, never key bytes."""

    pseudonym_key: bytes = field(repr=False)
    pseudonym_key_id: str
    seal_key: bytes | None = field(repr=False)
    seal_key_id: str | None
    # Pseudonym keys in use before a rotation: only to prove sealed originals promoted under them (archiving)
    retired_pseudonym_keys: tuple[bytes, ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        return f"Keys(pseudonym_key_id={self.pseudonym_key_id!r}, seal_key_id={self.seal_key_id!r})"


_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
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
        raise MissingSecretError(f"{var} is malformed (neither an even number of hex digits nor base64:); {_HOWTO}")
    if len(key) < 32:
        raise MissingSecretError(f"{var} is too short ({len(key)} bytes, need >= 32); {_HOWTO}")
    return key


def _key_id(env: Mapping[str, str], var: str, key: bytes) -> str:
    given = env.get(var, "").strip()
    return given or "k-" + hashlib.sha256(b"datazones-key-id:" + key).hexdigest()[:12]


RETIRED = "DATAZONES_PSEUDONYM_KEYS_RETIRED"


def load_keys(env: Mapping[str, str] = os.environ, *, need_seal: bool) -> Keys:
    """Read DATAZONES_PSEUDONYM_KEY (required) and DATAZONES_SEAL_KEY (required if need_seal); fail closed.
    DATAZONES_PSEUDONYM_KEYS_RETIRED (optional, comma- or space-separated, each like the key) lists the pseudonym
    keys used before a rotation: archiving proves the sealed originals promoted under them."""
    pkey = _parse_key(env, "DATAZONES_PSEUDONYM_KEY")
    if pkey is None:
        raise MissingSecretError(f"DATAZONES_PSEUDONYM_KEY is not set; {_HOWTO}")
    skey = _parse_key(env, "DATAZONES_SEAL_KEY")
    if skey is None and need_seal:
        raise MissingSecretError(f"DATAZONES_SEAL_KEY is not set (sealing originals needs it); {_HOWTO}")
    if skey is not None and skey == pkey:
        raise MissingSecretError(f"DATAZONES_SEAL_KEY equals DATAZONES_PSEUDONYM_KEY: the seal key (the archive "
                                 f"function's alone) must be a separate key; {_HOWTO}")
    retired = tuple(k for part in re.split(r"[\s,]+", env.get(RETIRED, "").strip()) if part
                    if (k := _parse_key({RETIRED: part}, RETIRED)) is not None)
    return Keys(pseudonym_key=pkey, pseudonym_key_id=_key_id(env, "DATAZONES_PSEUDONYM_KEY_ID", pkey),
                seal_key=skey, seal_key_id=None if skey is None else _key_id(env, "DATAZONES_SEAL_KEY_ID", skey),
                retired_pseudonym_keys=retired)
