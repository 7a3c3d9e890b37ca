"""Tests for lifecycle.protect: pseudonyms equal the hmac reference, seals follow AES-CTR-HMAC exactly, tampering
is caught, keys load fail-closed without leaking key material."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import hmac
import os
import random

import numpy as np
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lifecycle.protect import Keys, canonical_text, load_keys, pseudonymise, seal, unseal
from zones.errors import IntegrityError, MissingSecretError

KEY = bytes(range(32))
SEAL_KEY = bytes(range(100, 132))
AAD = b"table=people;column=pnr"
MIXED = ["", "åäö 🙂 Ünïcødé", None, "198001011234", "x" * 1024, "\\x41 not an escape", "0123456789abcdef", "a"]


def ref_hmac(key: bytes, text: str | None) -> str | None:
    return None if text is None else hmac.new(key.hex().encode(), text.encode(), hashlib.sha256).hexdigest()


def flip(sealed: pa.Array, row: int, byte: int) -> pa.Array:
    values = sealed.to_pylist()
    b = bytearray(values[row])
    b[byte] ^= 0x01
    values[row] = bytes(b)
    return pa.array(values, pa.binary())


# --- canonical text -------------------------------------------------------------------------------------------

def test_canonical_text_per_type() -> None:
    cases = [
        (pa.array([0, -5, None, 9_223_372_036_854_775_807], pa.int64()), ["0", "-5", None, "9223372036854775807"]),
        (pa.array([7], pa.uint8()), ["7"]),
        (pa.array(["a", "", None]), ["a", "", None]),
        (pa.array([dt.date(2024, 1, 2), dt.date(1, 1, 1)]), ["2024-01-02", "0001-01-01"]),
        (pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("s")), ["2024-01-02T03:04:05.000000+00:00"]),
        (pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 7)], pa.timestamp("us")), ["2024-01-02T03:04:05.000007+00:00"]),
        (pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)], pa.timestamp("ns", "Europe/Stockholm")),
         ["2024-01-02T03:04:05.000000+00:00"]),
        (pa.array([decimal.Decimal("1.50"), decimal.Decimal("-0.001")], pa.decimal128(10, 3)), ["1.500", "-0.001"]),
        (pa.array([True, False, None]), ["true", "false", None]),
        (pa.array(["b", "a", "b"]).dictionary_encode(), ["b", "a", "b"]),
    ]
    for arr, expected in cases:
        out = canonical_text(arr)
        assert pa.types.is_string(out.type) or pa.types.is_large_string(out.type), arr.type
        assert out.to_pylist() == expected, arr.type


def test_canonical_text_chunked_and_unsupported() -> None:
    out = canonical_text(pa.chunked_array([[1, 2], [None, 3]]))
    assert isinstance(out, pa.ChunkedArray)
    assert out.to_pylist() == ["1", "2", None, "3"]
    with pytest.raises(TypeError, match="double"):
        canonical_text(pa.array([1.5]))


# --- pseudonymise ---------------------------------------------------------------------------------------------

def test_pseudonymise_equals_python_hmac_on_strings() -> None:
    out = pseudonymise(pa.array(MIXED), KEY)
    assert isinstance(out, pa.Array)
    assert out.to_pylist() == [ref_hmac(KEY, v) for v in MIXED]
    assert out[3].as_py() == hmac.new(KEY.hex().encode(), b"198001011234", hashlib.sha256).hexdigest()


def test_pseudonymise_equals_python_hmac_on_ints_dates_timestamps() -> None:
    ints = [0, -1, 198001011234, None, 2**63 - 1]
    assert pseudonymise(pa.array(ints, pa.int64()), KEY).to_pylist() == [
        ref_hmac(KEY, None if v is None else str(v)) for v in ints]
    dates = [dt.date(1980, 1, 1), None, dt.date(2024, 2, 29)]
    assert pseudonymise(pa.array(dates), KEY).to_pylist() == [
        ref_hmac(KEY, None if d is None else d.isoformat()) for d in dates]
    ts = pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 6)], pa.timestamp("us"))
    assert pseudonymise(ts, KEY)[0].as_py() == ref_hmac(KEY, "2024-01-02T03:04:05.000006+00:00")


def test_pseudonymise_keeps_row_order_on_many_rows_and_chunks() -> None:
    rng = random.Random(5)
    values = [str(rng.randrange(10**11, 10**12)) for _ in range(60_000)]
    chunked = pa.chunked_array([values[:25_000], values[25_000:]])
    out = pseudonymise(chunked, KEY)
    assert isinstance(out, pa.ChunkedArray)
    flat = out.to_pylist()
    for i in [*rng.sample(range(len(values)), 500), 0, len(values) - 1]:
        assert flat[i] == ref_hmac(KEY, values[i])


def test_pseudonymise_key_handling() -> None:
    long_key = os.urandom(100)  # longer than the SHA-256 block: HMAC hashes it first
    assert pseudonymise(pa.array(["x"]), long_key)[0].as_py() == ref_hmac(long_key, "x")
    assert pseudonymise(pa.array(["x"]), KEY)[0].as_py() != pseudonymise(pa.array(["x"]), SEAL_KEY)[0].as_py()
    with pytest.raises(ValueError, match="32 bytes"):
        pseudonymise(pa.array(["x"]), b"short")
    assert len(pseudonymise(pa.array([], pa.string()), KEY)) == 0


# --- seal / unseal --------------------------------------------------------------------------------------------

def test_seal_round_trip_mixed_strings() -> None:
    sealed = seal(pa.array(MIXED), SEAL_KEY, aad=AAD)
    assert pa.types.is_binary(sealed.type)
    assert sealed.null_count == 1 and sealed[2].as_py() is None
    assert [None if v is None else len(v) for v in sealed.to_pylist()] == [
        None if v is None else len(v.encode()) + 33 for v in MIXED]
    out = unseal(sealed, SEAL_KEY, aad=AAD)
    assert pa.types.is_string(out.type)
    assert out.to_pylist() == MIXED


def test_seal_round_trip_ints_dates_and_chunks() -> None:
    ints = pa.chunked_array([[1, -2, None], [198001011234, 0]])
    assert unseal(seal(ints, SEAL_KEY, aad=AAD), SEAL_KEY, aad=AAD).to_pylist() == [
        "1", "-2", None, "198001011234", "0"]
    dates = pa.array([dt.date(2020, 5, 17), None, dt.date(1999, 12, 31)])
    assert unseal(seal(dates, SEAL_KEY, aad=AAD), SEAL_KEY, aad=AAD).to_pylist() == [
        "2020-05-17", None, "1999-12-31"]
    assert unseal(seal(pa.array([None, None], pa.string()), SEAL_KEY, aad=AAD), SEAL_KEY, aad=AAD).to_pylist() == [
        None, None]
    assert len(unseal(seal(pa.array([], pa.string()), SEAL_KEY, aad=AAD), SEAL_KEY, aad=AAD)) == 0


def test_seal_round_trip_many_variable_and_fixed_lengths() -> None:
    rng = random.Random(11)
    variable = ["".join(rng.choice("abcåä€🙂") for _ in range(rng.randrange(0, 70))) for _ in range(20_000)]
    fixed = [f"{rng.randrange(10**11, 10**12)}" for _ in range(20_000)]
    for values in (variable, fixed):
        assert unseal(seal(pa.array(values), SEAL_KEY, aad=AAD), SEAL_KEY, aad=AAD).to_pylist() == values


def test_unseal_subset_in_shuffled_order() -> None:
    values = [f"value-{i}-" + "z" * (i % 40) for i in range(500)]
    sealed = seal(pa.array(values), SEAL_KEY, aad=AAD)
    picks = random.Random(3).sample(range(500), 123)
    assert unseal(sealed.take(pa.array(picks)), SEAL_KEY, aad=AAD).to_pylist() == [values[i] for i in picks]
    assert unseal(sealed.slice(400, 7), SEAL_KEY, aad=AAD).to_pylist() == values[400:407]
    sliced_input = pa.array(values).slice(10, 30)
    assert unseal(seal(sliced_input, SEAL_KEY, aad=AAD), SEAL_KEY, aad=AAD).to_pylist() == values[10:40]


@pytest.mark.parametrize("native", ["1", "0"], ids=["kernel", "numpy"])
def test_seal_follows_aes_ctr_hmac_construction_exactly(native: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recompute every byte with cryptography + hmac: HKDF labels, IV layout, CTR, tag input, truncation (the
    keystream applied by the C kernel and by numpy)."""
    monkeypatch.setenv("DATAZONES_NATIVE_HMAC", native)
    values = ["", "a", "exactly sixteen!", "seventeen bytes!!", "åäö" * 50]
    sealed = seal(pa.array(values), SEAL_KEY, aad=AAD).to_pylist()
    enc_key = HKDF(hashes.SHA256(), 32, salt=None, info=b"datazones/seal/v1/aes-256-ctr").derive(SEAL_KEY)
    mac_key = HKDF(hashes.SHA256(), 32, salt=None, info=b"datazones/seal/v1/hmac-sha256").derive(SEAL_KEY)
    assert enc_key != mac_key
    prefixes = set()
    for i, (value, blob) in enumerate(zip(values, sealed, strict=True)):
        assert blob[0] == 0x01
        iv, ct, tag = blob[1:17], blob[17:-16], blob[-16:]
        prefixes.add(iv[:8])
        assert iv[8:12] == i.to_bytes(4, "big") and iv[12:] == b"\0\0\0\0"
        ctr = Cipher(algorithms.AES(enc_key), modes.CTR(iv)).encryptor()
        assert ct == ctr.update(value.encode()) + ctr.finalize()
        mac_input = b"\x01" + iv + len(AAD).to_bytes(8, "big") + AAD + ct
        assert tag == hmac.new(mac_key.hex().encode(), mac_input, hashlib.sha256).digest()[:16]
    assert len(prefixes) == 1  # one random prefix per call


def test_unknown_version_is_rejected_even_with_a_valid_tag() -> None:
    blob = seal(pa.array(["x"]), SEAL_KEY, aad=AAD)[0].as_py()
    mac_key = HKDF(hashes.SHA256(), 32, salt=None, info=b"datazones/seal/v1/hmac-sha256").derive(SEAL_KEY)
    body = b"\x02" + blob[1:-16]
    ct = body[17:]
    tag = hmac.new(mac_key.hex().encode(), body[:17] + len(AAD).to_bytes(8, "big") + AAD + ct,
                   hashlib.sha256).digest()[:16]
    with pytest.raises(IntegrityError, match="1 of 1"):
        unseal(pa.array([body + tag], pa.binary()), SEAL_KEY, aad=AAD)


def test_two_seals_of_same_value_differ() -> None:
    a = seal(pa.array(["198001011234"]), SEAL_KEY, aad=AAD)[0].as_py()
    b = seal(pa.array(["198001011234"]), SEAL_KEY, aad=AAD)[0].as_py()
    assert a != b and a[1:9] != b[1:9]
    assert b"198001011234" not in a


@pytest.mark.parametrize(("byte", "what"), [(0, "version"), (5, "iv"), (20, "ct"), (-1, "tag"), (-16, "tag start")])
def test_tampering_is_detected(byte: int, what: str) -> None:
    values = ["alpha", None, "198001011234", "gamma"]
    sealed = seal(pa.array(values), SEAL_KEY, aad=AAD)
    assert unseal(sealed, SEAL_KEY, aad=AAD).to_pylist() == values
    tampered = flip(sealed, 2, byte if byte >= 0 else len(sealed[2].as_py()) + byte)
    with pytest.raises(IntegrityError) as err:
        unseal(tampered, SEAL_KEY, aad=AAD)
    msg = str(err.value)
    assert "1 of 4 sealed values failed authentication" in msg and "first failing index 2" in msg, what
    assert "198001011234" not in msg


def test_wrong_key_wrong_aad_and_malformed_are_rejected() -> None:
    sealed = seal(pa.array(["a", "b", "c"]), SEAL_KEY, aad=AAD)
    with pytest.raises(IntegrityError, match=r"3 of 3 .* first failing index 0"):
        unseal(sealed, os.urandom(32), aad=AAD)
    with pytest.raises(IntegrityError, match="3 of 3"):
        unseal(sealed, SEAL_KEY, aad=AAD + b"x")
    with pytest.raises(IntegrityError, match="3 of 3"):
        unseal(sealed, SEAL_KEY, aad=b"")
    short = pa.array([sealed[0].as_py(), sealed[1].as_py()[:32], sealed[2].as_py()], pa.binary())
    with pytest.raises(IntegrityError, match=r"1 of 3 sealed values are malformed.*index 1"):
        unseal(short, SEAL_KEY, aad=AAD)
    with pytest.raises(TypeError):
        unseal(pa.array(["not binary"]), SEAL_KEY, aad=AAD)
    with pytest.raises(ValueError, match="32 bytes"):
        seal(pa.array(["a"]), b"k" * 16, aad=AAD)


def test_seal_keystream_covers_many_blocks() -> None:
    """Ciphertext of a long value is not a repeated block: every 16-byte block has its own counter."""
    sealed = seal(pa.array(["\0" * 4096]), SEAL_KEY, aad=AAD)[0].as_py()
    blocks = np.frombuffer(sealed[17:-16], np.uint8).reshape(-1, 16)
    assert len({bytes(b) for b in blocks}) == 256


# --- keys -----------------------------------------------------------------------------------------------------

HEX_P = "ab" * 32
HEX_S = "cd" * 40


def test_load_keys_hex_base64_and_ids() -> None:
    keys = load_keys({"DATAZONES_PSEUDONYM_KEY": HEX_P,
                      "DATAZONES_SEAL_KEY": "base64:" + base64.b64encode(bytes.fromhex(HEX_S)).decode()},
                     need_seal=True)
    assert keys.pseudonym_key == bytes.fromhex(HEX_P)
    assert keys.seal_key == bytes.fromhex(HEX_S)
    assert keys.pseudonym_key_id == "k-" + hashlib.sha256(b"datazones-key-id:" + bytes.fromhex(HEX_P)).hexdigest()[:12]
    assert keys.seal_key_id is not None and keys.seal_key_id.startswith("k-") and len(keys.seal_key_id) == 14
    named = load_keys({"DATAZONES_PSEUDONYM_KEY": HEX_P, "DATAZONES_PSEUDONYM_KEY_ID": "pnr-2025-01"}, need_seal=False)
    assert named.pseudonym_key_id == "pnr-2025-01"
    assert named.seal_key is None and named.seal_key_id is None


@pytest.mark.parametrize(("env", "need_seal", "var", "problem"), [
    ({}, False, "DATAZONES_PSEUDONYM_KEY", "not set"),
    ({"DATAZONES_PSEUDONYM_KEY": "ab" * 31}, False, "DATAZONES_PSEUDONYM_KEY", "too short (31 bytes, need >= 32)"),
    ({"DATAZONES_PSEUDONYM_KEY": "zz" * 32}, False, "DATAZONES_PSEUDONYM_KEY", "malformed"),
    ({"DATAZONES_PSEUDONYM_KEY": "a" * 65}, False, "DATAZONES_PSEUDONYM_KEY", "malformed"),
    ({"DATAZONES_PSEUDONYM_KEY": "base64:" + base64.b64encode(b"k" * 16).decode()}, False,
     "DATAZONES_PSEUDONYM_KEY", "too short (16 bytes"),
    ({"DATAZONES_PSEUDONYM_KEY": "base64:!!notbase64!!"}, False, "DATAZONES_PSEUDONYM_KEY", "not valid base64"),
    ({"DATAZONES_PSEUDONYM_KEY": HEX_P}, True, "DATAZONES_SEAL_KEY", "not set"),
    ({"DATAZONES_PSEUDONYM_KEY": HEX_P, "DATAZONES_SEAL_KEY": "12" * 20}, False, "DATAZONES_SEAL_KEY", "too short"),
    ({"DATAZONES_PSEUDONYM_KEY": HEX_P, "DATAZONES_SEAL_KEY": "secret-in-plain"}, True, "DATAZONES_SEAL_KEY",
     "malformed"),
])
def test_load_keys_errors_explain_the_fix(env: dict[str, str], need_seal: bool, var: str, problem: str) -> None:
    with pytest.raises(MissingSecretError) as err:
        load_keys(env, need_seal=need_seal)
    msg = str(err.value)
    assert msg.startswith(var) and problem in msg
    assert "64+ hex" in msg and "base64:" in msg
    assert 'python -c "import secrets; print(secrets.token_hex(32))"' in msg
    assert "environment or a secret backend" in msg and "never from a file in the repository" in msg
    for value in env.values():
        assert value.removeprefix("base64:") not in msg


def test_keys_repr_hides_key_material() -> None:
    keys = load_keys({"DATAZONES_PSEUDONYM_KEY": HEX_P, "DATAZONES_SEAL_KEY": HEX_S}, need_seal=True)
    for text in (repr(keys), str(keys), f"{keys}", repr([keys])):
        assert HEX_P not in text and HEX_S not in text and "abab" not in text and "cdcd" not in text
        assert str(bytes.fromhex(HEX_P)) not in text
        assert keys.pseudonym_key_id in text
    assert isinstance(keys, Keys)
    with pytest.raises(AttributeError):
        keys.seal_key = b"x" * 32  # type: ignore[misc]


def _legacy_siv(values: list[str], pseud: pa.Array) -> list[bytes]:
    """v2 SIV values as datazones wrote them before the key was bound to the column: one key for all columns."""
    enc_key = HKDF(hashes.SHA256(), 32, salt=None, info=b"datazones/seal/v2/siv-aes-256-ctr").derive(SEAL_KEY)
    out = []
    for value, p in zip(values, pseud.to_pylist(), strict=True):
        iv = bytearray(bytes.fromhex(p)[:16])
        iv[12] &= 0x7F
        ctr = Cipher(algorithms.AES(enc_key), modes.CTR(bytes(iv))).encryptor()
        out.append(b"\x02" + ctr.update(value.encode()) + ctr.finalize())
    return out


def test_siv_seal_round_trip_subset_and_tamper() -> None:
    from lifecycle.protect import Keys, open_sealed, seal_siv, unseal_siv

    keys = Keys(KEY, "p", SEAL_KEY, "s")
    vals = pa.array(["198112189876", None, "åäö", "", "x" * 300, "198112189876"])
    pseud = pseudonymise(vals, KEY)
    sealed = seal_siv(vals, pseud, SEAL_KEY, aad=AAD)
    assert sealed[0].as_py() == sealed[5].as_py() and sealed[0].as_py()[0] == 3  # deterministic, version 3
    assert b"198112189876" not in sealed[0].as_py()
    assert unseal_siv(sealed, pseud, keys, aad=AAD).to_pylist() == vals.to_pylist()
    order = pa.array([4, 2, 0])
    assert unseal_siv(sealed.take(order), pseud.take(order), keys, aad=AAD).to_pylist() == vals.take(order).to_pylist()
    assert open_sealed(sealed, keys, aad=AAD, pseudonyms=pseud).to_pylist() == vals.to_pylist()
    flipped = bytearray(sealed[4].as_py())
    flipped[7] ^= 1
    bad = pa.array([*sealed.to_pylist()[:4], bytes(flipped), sealed[5].as_py()], pa.binary())
    with pytest.raises(IntegrityError, match="first failing index 4"):
        unseal_siv(bad, pseud, keys, aad=AAD)
    swapped = pa.array([pseud[2].as_py(), *pseud.to_pylist()[1:]], pa.string())
    with pytest.raises(IntegrityError, match="1 of 6"):  # a ciphertext moved to another pseudonym is refused
        unseal_siv(sealed, swapped, keys, aad=AAD)
    with pytest.raises(IntegrityError):
        unseal_siv(sealed, pseud, Keys(KEY, "p", bytes(32), "s"), aad=AAD)  # wrong seal key
    with pytest.raises(IntegrityError, match="another column's value"):  # pseudonym + seal pasted elsewhere
        open_sealed(sealed, keys, aad=b"datazones:utbetalning:payee_pnr", pseudonyms=pseud)
    lost = pa.array([None, *pseud.to_pylist()[1:]], pa.string())
    with pytest.raises(IntegrityError, match="1 of 6"):  # a sealed value whose pseudonym is missing
        unseal_siv(sealed, lost, keys, aad=AAD)


def test_siv_values_sealed_before_the_column_binding_still_open() -> None:
    """v2 values (one SIV key for every column, written before v3) open next to v3 values in one column."""
    from lifecycle.protect import Keys, open_sealed, seal_siv

    keys = Keys(KEY, "p", SEAL_KEY, "s")
    values = ["198112189876", "x" * 40, "åäö", "19811218-9876"]
    pseud = pseudonymise(pa.array(values), KEY)
    old, new = _legacy_siv(values, pseud), seal_siv(pa.array(values), pseud, SEAL_KEY, aad=AAD).to_pylist()
    mixed = pa.array([old[0], new[1], old[2], new[3]], pa.binary())
    assert open_sealed(mixed, keys, aad=AAD, pseudonyms=pseud).to_pylist() == values
    assert open_sealed(pa.array(old, pa.binary()), keys, aad=AAD, pseudonyms=pseud).to_pylist() == values


def test_originals_promoted_before_a_pseudonym_key_rotation_are_proven_with_the_retired_key() -> None:
    """After a rotation the archive still proves (and so restores) what was sealed under the old pseudonym key,
    given that key as retired (DATAZONES_PSEUDONYM_KEYS_RETIRED); without it, the proof fails closed."""
    from lifecycle.protect import Keys, load_keys, open_sealed, seal_siv

    old_key, new_key = KEY, bytes(range(32, 64))
    values = ["198112189876", "19811218-9876", "x"]
    before, after = pseudonymise(pa.array(values), old_key), pseudonymise(pa.array(values), new_key)
    sealed = pa.concat_arrays([seal_siv(pa.array(values), before, SEAL_KEY, aad=AAD),
                               seal_siv(pa.array(values), after, SEAL_KEY, aad=AAD)])
    pseud = pa.concat_arrays([before, after])
    env = {"DATAZONES_PSEUDONYM_KEY": new_key.hex(), "DATAZONES_SEAL_KEY": SEAL_KEY.hex(),
           "DATAZONES_PSEUDONYM_KEYS_RETIRED": f" {bytes(range(100, 132)).hex()}, {old_key.hex()} "}
    keys = load_keys(env, need_seal=True)
    assert len(keys.retired_pseudonym_keys) == 2 and old_key.hex() not in repr(keys)
    assert open_sealed(sealed, keys, aad=AAD, pseudonyms=pseud).to_pylist() == values * 2
    with pytest.raises(IntegrityError, match="3 of 6"):
        open_sealed(sealed, Keys(new_key, "n", SEAL_KEY, "s"), aad=AAD, pseudonyms=pseud)
    with pytest.raises(MissingSecretError, match="DATAZONES_PSEUDONYM_KEYS_RETIRED"):
        load_keys({**env, "DATAZONES_PSEUDONYM_KEYS_RETIRED": "abc"}, need_seal=True)


def test_mixed_v1_and_siv_columns_open() -> None:
    from lifecycle.protect import Keys, open_sealed, seal_siv

    keys = Keys(KEY, "p", SEAL_KEY, "s")
    vals = pa.array(["a", "bb", None, "dddd"])
    pseud = pseudonymise(vals, KEY)
    v1, v3 = seal(vals, SEAL_KEY, aad=AAD), seal_siv(vals, pseud, SEAL_KEY, aad=AAD)
    mixed = pa.array([v3[0].as_py(), v1[1].as_py(), None, v3[3].as_py()], pa.binary())
    assert open_sealed(mixed, keys, aad=AAD, pseudonyms=pseud).to_pylist() == vals.to_pylist()
    with pytest.raises(IntegrityError, match="needs their pseudonym column"):
        open_sealed(mixed, keys, aad=AAD)


@pytest.mark.parametrize("values", [
    ["198112189876", "19811218-9876", "1", "x" * 16],  # one block each: the counter block is the IV
    ["a" * n for n in (17, 20, 31, 32, 33, 5, 48)],  # up to 3 blocks, uneven: the dense grid with a row mask
    ["q" * 4000, "r", "s" * 33, "", "t" * 1000],  # very uneven (free text): exactly the blocks each value needs
], ids=["single-block", "dense-grid", "uneven"])
@pytest.mark.parametrize("native", ["1", "0"], ids=["kernel", "numpy"])
def test_siv_seal_follows_aes_ctr_exactly_on_every_keystream_path(values: list[str], native: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Recompute every SIV byte with cryptography: 0x03 || AES-256-CTR(K, pseudonym[:16], top counter bit cleared),
    K = HKDF(seal key, v3 label || 0 || aad), with the keystream applied (and the version bytes placed) by the C
    kernel and by numpy."""
    from lifecycle.protect import _hex_prefix, seal_siv, unseal_siv

    monkeypatch.setenv("DATAZONES_NATIVE_HMAC", native)

    pseud = pseudonymise(pa.array(values), KEY)
    assert (_hex_prefix(pseud, 32) == np.array([list(bytes.fromhex(p)) for p in pseud.to_pylist()])).all()
    sealed = seal_siv(pa.array(values), pseud, SEAL_KEY, aad=AAD).to_pylist()
    info = b"datazones/seal/v3/siv-aes-256-ctr\0" + AAD
    enc_key = HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(SEAL_KEY)
    for value, p, blob in zip(values, pseud.to_pylist(), sealed, strict=True):
        iv = bytearray(bytes.fromhex(p)[:16])
        iv[12] &= 0x7F
        ctr = Cipher(algorithms.AES(enc_key), modes.CTR(bytes(iv))).encryptor()
        assert blob == b"\x03" + ctr.update(value.encode()) + ctr.finalize()
    keys = Keys(KEY, "k", SEAL_KEY, "s")
    assert unseal_siv(pa.array(sealed, pa.binary()), pseud, keys, aad=AAD).to_pylist() == values
    legacy = _legacy_siv(values, pseud)
    assert unseal_siv(pa.array(legacy, pa.binary()), pseud, keys, aad=AAD).to_pylist() == values


def _py_hmac_hex(key: bytes, values: list[bytes | None]) -> list[str | None]:
    return [None if v is None else hmac.new(key, v, hashlib.sha256).hexdigest() for v in values]


def test_native_hmac_kernel_equals_python_hmac_on_both_paths_and_polars_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C kernel (SHA-NI and portable C, paired and single values, every padding boundary, long keys, nulls,
    sliced arrays) gives Python's hmac bytes, and so does the polars-hash fallback."""
    import shutil

    from lifecycle import fasthmac
    from lifecycle.protect import _hmac_hex

    if not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        pytest.skip("no C compiler here: the install could not build the kernel (the polars-hash path is tested)")
    assert fasthmac.available(), "a C compiler is here but the install did not build the kernel (hatch_build.py)"
    rng = random.Random(7)
    lengths = [*range(0, 130), 183, 184, 1000, 55, 56, 55, 0, 64, 55]  # pairs straddle the one-block limit
    values: list[bytes | None] = [bytes(rng.getrandbits(8) for _ in range(n)) for n in lengths]
    values[5] = values[77] = None
    arr = pa.array(values, pa.binary())
    for key in (os.urandom(32).hex().encode(), b"k", os.urandom(64), os.urandom(65), os.urandom(300)):
        want = _py_hmac_hex(key, values)
        for portable in (False, True):
            got = fasthmac.hmac_hex(arr, key, portable=portable)
            assert got is not None and got.to_pylist() == want, (len(key), portable)
            sliced = fasthmac.hmac_hex(arr.slice(3, 100), key, portable=portable)
            assert sliced is not None and sliced.to_pylist() == want[3:103]
    text = pa.array(["199001011234", None, "ÅÄÖ-konto", ""] * 3, pa.large_string())
    key = os.urandom(32)
    want = _py_hmac_hex(key.hex().encode(), [None if v is None else v.encode() for v in text.to_pylist()])
    assert _hmac_hex(text, key).to_pylist() == want
    monkeypatch.setenv("DATAZONES_NATIVE_HMAC", "0")  # the polars-hash fallback: same bytes
    assert not fasthmac.available()
    assert _hmac_hex(text, key).to_pylist() == want


def test_native_hex_prefix_equals_bytes_fromhex_and_refuses_non_hex() -> None:
    from lifecycle import fasthmac

    if not fasthmac.available():
        pytest.skip("the C kernel is not built (checked by the test above)")

    rows = [os.urandom(32).hex() for _ in range(50)]
    digits = np.frombuffer("".join(rows).encode(), np.uint8).reshape(-1, 64)
    got = fasthmac.hex_prefix(digits, 16)
    assert got is not None and [bytes(r) for r in got] == [bytes.fromhex(r[:32]) for r in rows]
    bad = digits.copy()
    bad[7, 3] = ord("G")
    with pytest.raises(ValueError, match="hex"):
        fasthmac.hex_prefix(bad, 16)


def test_native_keystream_xor_places_values_and_prefixes_and_refuses_overlong_values() -> None:
    from lifecycle import fasthmac

    if not fasthmac.available():
        pytest.skip("the C kernel is not built (checked by the HMAC kernel test)")
    rng = np.random.default_rng(3)
    lens = [0, 1, 15, 16, 3, 32, 0, 7]
    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    data = rng.integers(0, 256, int(off[-1]), dtype=np.uint8)
    ks = rng.integers(0, 256, (len(lens), 32), dtype=np.uint8)
    want = [bytes(data[off[i]:off[i + 1]] ^ ks[i, :lens[i]]) for i in range(len(lens))]
    plain = fasthmac.xor_keystream(off, data, ks)
    assert plain is not None and [bytes(plain[off[i]:off[i + 1]]) for i in range(len(lens))] == want
    boxed = fasthmac.xor_keystream(off, data, ks, 0x02)
    assert boxed is not None and len(boxed) == len(data) + len(lens)
    assert [bytes(boxed[off[i] + i:off[i + 1] + i + 1]) for i in range(len(lens))] == [b"\x02" + w for w in want]
    with pytest.raises(ValueError, match="longer than its keystream row"):
        fasthmac.xor_keystream(off, data, ks[:, :16])


@pytest.mark.parametrize("native", ["1", "0"])
def test_hex_prefix_decodes_full_digests_and_uneven_strings_with_and_without_the_kernel(
        native: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both decoders of _hex_prefix (the kernel's, numpy's two-digit table) on both input shapes."""
    from lifecycle.protect import _hex_prefix

    monkeypatch.setenv("DATAZONES_NATIVE_HMAC", native)
    digests = [os.urandom(32).hex() for _ in range(40)]
    uneven = [os.urandom(16 + i % 5).hex() for i in range(40)]
    for rows in (digests, uneven):
        got = _hex_prefix(pa.array(rows, pa.string()), 16)
        assert [bytes(r) for r in got] == [bytes.fromhex(r[:32]) for r in rows]


def test_a_seal_key_equal_to_the_pseudonym_key_is_refused() -> None:
    """Key separation: whoever holds the analysts' pseudonym key must not be able to open sealed originals."""
    same = bytes(range(32)).hex()
    with pytest.raises(MissingSecretError, match="must be a separate key") as err:
        load_keys({"DATAZONES_PSEUDONYM_KEY": same, "DATAZONES_SEAL_KEY": same}, need_seal=True)
    assert same not in str(err.value)
    assert load_keys({"DATAZONES_PSEUDONYM_KEY": same}, need_seal=False).seal_key is None
