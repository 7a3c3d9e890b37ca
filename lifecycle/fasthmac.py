"""HMAC-SHA-256 of every value of an Arrow array, hex-encoded, in the C kernel ``lifecycle/hmac_sha256.c`` (which
also decodes pseudonym prefixes and applies CTR keystreams for :mod:`lifecycle.protect`).

The kernel computes the key's ipad/opad states once per call, so each value costs two SHA-256 compressions, run
two values at a time with the CPU's SHA extensions when present. Measured here (bench table, 400k account
numbers): ~0.13 us per value against ~0.40 us for polars-hash. :func:`hmac_hex` returns None when the kernel was
not built (no C compiler at install time) or ``DATAZONES_NATIVE_HMAC=0``; callers then use polars-hash, which
gives the same bytes (``tests/test_protect.py`` compares all three with Python's ``hmac``).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

LIBRARY = Path(__file__).with_name("_hmac_sha256.so")
_lib: ctypes.CDLL | None = None
_loaded = False


def _load() -> ctypes.CDLL | None:
    global _lib, _loaded
    if not _loaded:
        _loaded = True
        if LIBRARY.exists():
            lib = ctypes.CDLL(str(LIBRARY))
            lib.dz_hmac_sha256_hex.restype = ctypes.c_int
            lib.dz_hmac_sha256_hex.argtypes = [ctypes.c_char_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                                               ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
            lib.dz_has_sha_ni.restype = ctypes.c_int
            lib.dz_hex_prefix.restype = ctypes.c_int
            lib.dz_hex_prefix.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                          ctypes.c_void_p]
            lib.dz_xor_keystream.restype = ctypes.c_int
            lib.dz_xor_keystream.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                                             ctypes.c_int64, ctypes.c_int, ctypes.c_void_p]
            _lib = lib
    return _lib


def available() -> bool:
    return os.environ.get("DATAZONES_NATIVE_HMAC", "1") != "0" and _load() is not None


def uses_sha_ni() -> bool:
    lib = _load()
    return bool(lib is not None and lib.dz_has_sha_ni())


def hmac_hex(values: pa.Array, key: bytes, *, portable: bool = False) -> pa.Array | None:
    """Lowercase hex HMAC-SHA-256(key, value) per value of a string/binary array (nulls stay null), or None when
    the kernel is unavailable. ``portable`` forces the plain-C compression (tests compare it with SHA-NI)."""
    if not available():
        return None
    lib = _load()
    assert lib is not None
    typ = values.type
    if not (pa.types.is_string(typ) or pa.types.is_binary(typ) or pa.types.is_large_string(typ)
            or pa.types.is_large_binary(typ)):
        raise TypeError(f"hmac_hex: a string or binary array is needed, not {typ}")
    n = len(values)
    bufs = values.buffers()
    wide = pa.types.is_large_string(typ) or pa.types.is_large_binary(typ)
    offsets = np.frombuffer(bufs[1], np.int64 if wide else np.int32)[values.offset: values.offset + n + 1]
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None and bufs[2].size else np.zeros(1, np.uint8)
    out = np.empty(max(n, 1) * 64, np.uint8)
    rc = lib.dz_hmac_sha256_hex(key, len(key), offsets.ctypes.data, data.ctypes.data, n, out.ctypes.data,
                                1 if portable else 0)
    if rc != 0:
        raise ValueError(f"hmac_hex: malformed array offsets (kernel error {rc})")
    validity = None
    if values.null_count:  # is_valid() is a fresh bitmap from bit 0; the array's own one only without an offset
        validity = bufs[0] if values.offset == 0 else values.is_valid().buffers()[1]
    return pa.Array.from_buffers(pa.string(), n, [validity, pa.py_buffer(np.arange(n + 1, dtype=np.int32) * 64),
                                                  pa.py_buffer(out[: n * 64])], null_count=values.null_count)


def hex_prefix(digits: np.ndarray, nbytes: int) -> np.ndarray | None:
    """Decode the first ``nbytes`` bytes of each row of an (n, 64) uint8 matrix of lowercase hex digits, or None
    when the kernel is unavailable. Raises on a non-hex digit."""
    if not available():
        return None
    lib = _load()
    assert lib is not None
    digits = np.ascontiguousarray(digits, dtype=np.uint8)
    n, width = digits.shape
    if 2 * nbytes > width:
        raise ValueError("hex_prefix: rows are shorter than the prefix")
    out = np.empty((n, nbytes), np.uint8)
    if n and lib.dz_hex_prefix(digits.ctypes.data, n, width, nbytes, out.ctypes.data):
        raise ValueError("hex_prefix: not lowercase hex")
    return out


def xor_keystream(off: np.ndarray, data: np.ndarray, keystream: np.ndarray, prefix: int | None = None
                  ) -> np.ndarray | None:
    """Value i (``data[off[i]:off[i + 1]]``, offsets from 0) XOR the start of keystream row i, each value after one
    ``prefix`` byte when given; None when the kernel is unavailable. Raises if a value outruns its row."""
    if not available():
        return None
    lib = _load()
    assert lib is not None
    off = np.ascontiguousarray(off, dtype=np.int64)
    data = np.ascontiguousarray(data, dtype=np.uint8)
    ks = np.ascontiguousarray(keystream, dtype=np.uint8)
    n = len(off) - 1
    if ks.ndim != 2 or ks.shape[0] != n:
        raise ValueError("xor_keystream: one keystream row per value is needed")
    out = np.empty(int(off[-1] - off[0]) + (n if prefix is not None else 0), np.uint8)
    if n > 0 and lib.dz_xor_keystream(off.ctypes.data, data.ctypes.data, n, ks.ctypes.data, ks.shape[1],
                                      -1 if prefix is None else prefix, out.ctypes.data):
        raise ValueError("xor_keystream: a value is longer than its keystream row")
    return out
