"""Fixity: threaded hashing, package + bag verification (a tamper matrix), audits and PREMIS audit events."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lifecycle.eark import bag
from lifecycle.fixity import (
    FileProblem,
    append_audit_log,
    audit,
    hash_files,
    premis_fixity_event,
    q,
    verify_package,
)
from tests.test_eark import CSV, OBJID, build_package

AT = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One unbagged and one bagged package, built once; tests copy them."""
    root = tmp_path_factory.mktemp("pristine")
    build_package(root / "plain")
    build_package(root / "bagged")
    return root / "plain" / OBJID, bag(root / "bagged" / OBJID, info={})


def fresh(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def test_hash_files_matches_hashlib(tmp_path: Path) -> None:
    sizes = {"empty": 0, "small": 1000, "chunky": (4 << 20) * 2 + 17, "mid": (1 << 20) + 1}
    paths = []
    for name, size in sizes.items():
        p = tmp_path / name
        p.write_bytes(os.urandom(size))
        paths.append(p)
    for threads in (1, 2, 3):
        got = hash_files(paths, threads=threads, algorithms=("sha256", "sha512"), chunk_size=1 << 20)
        for p in paths:
            data = p.read_bytes()
            assert got[p] == {"sha256": hashlib.sha256(data).hexdigest(),
                              "sha512": hashlib.sha512(data).hexdigest()}, (threads, p.name)


@pytest.mark.parametrize("which", ["plain", "bagged"])
def test_untouched_package_verifies(pristine: tuple[Path, Path], tmp_path: Path, which: str) -> None:
    pkg = fresh(pristine[0] if which == "plain" else pristine[1], tmp_path)
    result = verify_package(pkg, at=AT)
    assert result.ok and result.problems == () and result.objid == OBJID
    assert result.files_checked == (8 if which == "plain" else 14) and result.bytes_checked > 0
    assert (result.bag is None) == (which == "plain") and result.checked_at == AT
    assert set(result.files) >= {"METS.xml", CSV}


def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-10])


def _mets_checksum(pkg: Path) -> None:
    mets = pkg / "METS.xml"
    text = mets.read_text(encoding="utf-8")
    i = text.index('xlink:href="representations/rep1/data/utbetalning.csv"')
    start = text.rindex('CHECKSUM="', 0, i) + len('CHECKSUM="')
    mets.write_text(text[:start] + "f" * 64 + text[start + 64:], encoding="utf-8")


def _mets_mime(pkg: Path) -> None:
    mets = pkg / "METS.xml"
    mets.write_text(mets.read_text(encoding="utf-8").replace('MIMETYPE="text/csv"', 'MIMETYPE="application/x-dz"'),
                    encoding="utf-8")


def _rep_mets(pkg: Path) -> None:  # the representation METS states a wrong CSV size (same file length)
    mets = pkg / "representations/rep1/METS.xml"
    text = mets.read_text(encoding="utf-8")
    new = re.sub(r'(MIMETYPE="text/csv" SIZE="\d*)(\d)"', lambda m: f'{m[1]}{(int(m[2]) + 1) % 10}"', text)
    assert new != text and len(new) == len(text)
    mets.write_text(new, encoding="utf-8")


# (name, tamper on the package folder, expected package-level problems, expected bag-level problems)
MATRIX: list[tuple[str, Callable[[Path], None], set[tuple[str, str]], set[tuple[str, str]]]] = [
    ("flip a byte in the CSV", lambda p: _flip(p / CSV), {(CSV, "modified")}, {(f"data/{OBJID}/{CSV}", "bag")}),
    ("truncate the CSV", lambda p: _truncate(p / CSV), {(CSV, "size")}, {(f"data/{OBJID}/{CSV}", "bag")}),
    ("delete a file", lambda p: (p / f"documentation/{OBJID}.html").unlink(),
     {(f"documentation/{OBJID}.html", "missing")}, {(f"data/{OBJID}/documentation/{OBJID}.html", "bag")}),
    ("add a file", lambda p: (p / "documentation/notes.pdf").write_bytes(b"%PDF-1.7"),
     {("documentation/notes.pdf", "extra")}, {(f"data/{OBJID}/documentation/notes.pdf", "bag")}),
    ("change a checksum in METS.xml", _mets_checksum, {(CSV, "modified")}, {(f"data/{OBJID}/METS.xml", "bag")}),
    ("change a MIMETYPE in METS.xml", _mets_mime, {(CSV, "mime")}, {(f"data/{OBJID}/METS.xml", "bag")}),
    ("edit the representation METS", _rep_mets, {(CSV, "size")},
     {(f"data/{OBJID}/representations/rep1/METS.xml", "bag"), ("representations/rep1/METS.xml", "modified")}),
    ("edit the descriptive metadata", lambda p: _flip(p / "metadata/descriptive/dc.xml"),
     {("metadata/descriptive/dc.xml", "modified")}, {(f"data/{OBJID}/metadata/descriptive/dc.xml", "bag")}),
    ("delete METS.xml", lambda p: (p / "METS.xml").unlink(), {("METS.xml", "missing")},
     {(f"data/{OBJID}/METS.xml", "bag")}),
    ("break METS.xml", lambda p: (p / "METS.xml").write_text("<mets"), {("METS.xml", "modified")},
     {(f"data/{OBJID}/METS.xml", "bag")}),
]


def _kinds(problems: tuple[FileProblem, ...]) -> set[tuple[str, str]]:
    return {(p.path, p.problem) for p in problems}


@pytest.mark.parametrize("name, tamper, expected, _bag", MATRIX, ids=[m[0] for m in MATRIX])
def test_tamper_plain_package(pristine: tuple[Path, Path], tmp_path: Path, name: str,
                              tamper: Callable[[Path], None], expected: set[tuple[str, str]], _bag: object) -> None:
    pkg = fresh(pristine[0], tmp_path)
    tamper(pkg)
    result = verify_package(pkg)
    assert not result.ok
    assert expected <= _kinds(result.problems), result.problems


@pytest.mark.parametrize("name, tamper, expected, bag_expected", MATRIX, ids=[m[0] for m in MATRIX])
def test_tamper_bagged_package(pristine: tuple[Path, Path], tmp_path: Path, name: str,
                               tamper: Callable[[Path], None], expected: set[tuple[str, str]],
                               bag_expected: set[tuple[str, str]]) -> None:
    out = fresh(pristine[1], tmp_path)
    tamper(out / "data" / OBJID)
    for target in (out, out / "data" / OBJID):  # the bag, or the package folder inside it
        result = verify_package(target)
        assert not result.ok and result.bag == out
        kinds = _kinds(result.problems)
        assert bag_expected | expected <= kinds, result.problems


def test_tamper_bag_manifest(pristine: tuple[Path, Path], tmp_path: Path) -> None:
    out = fresh(pristine[1], tmp_path)
    manifest = out / "manifest-sha256.txt"
    manifest.write_text(re.sub(r"^[0-9a-f]{64}", "0" * 64, manifest.read_text(), count=1))
    result = verify_package(out)
    kinds = _kinds(result.problems)
    assert not result.ok and ("manifest-sha256.txt", "bag") in kinds  # tagmanifest mismatch
    assert {p.problem for p in result.problems} == {"bag"}  # the package itself is intact
    assert any(p.path.startswith(f"data/{OBJID}/") and p.expected == "sha256:" + "0" * 64 for p in result.problems)


def test_tamper_bag_info_oxum(pristine: tuple[Path, Path], tmp_path: Path) -> None:
    out = fresh(pristine[1], tmp_path)
    info = out / "bag-info.txt"
    info.write_text(re.sub(r"Payload-Oxum: \d+", "Payload-Oxum: 1", info.read_text()))
    assert ("bag-info.txt", "bag") in _kinds(verify_package(out).problems)


def test_ledger_mets_hash_is_checked(pristine: tuple[Path, Path], tmp_path: Path) -> None:
    pkg = fresh(pristine[0], tmp_path)
    good = hashlib.sha256((pkg / "METS.xml").read_bytes()).hexdigest()
    assert verify_package(pkg, expected_mets_sha256=good).ok
    result = verify_package(pkg, expected_mets_sha256="a" * 64)
    assert _kinds(result.problems) == {("METS.xml", "modified")}


def _rewrite_tagmanifests(bag_dir: Path) -> None:
    """What a careful forger does after editing a tag file: recompute every tagmanifest."""
    for tm in bag_dir.glob("tagmanifest-*.txt"):
        alg = tm.name.removeprefix("tagmanifest-").removesuffix(".txt")
        lines = []
        for line in tm.read_text().splitlines():
            _, name = line.split(maxsplit=1)
            lines.append(f"{hashlib.new(alg, (bag_dir / name).read_bytes()).hexdigest()}  {name}")
        tm.write_text("\n".join(lines) + "\n")


def test_a_tag_file_edited_with_its_tagmanifests_redone_is_caught_by_the_ledger_record(
        pristine: tuple[Path, Path], tmp_path: Path) -> None:
    """BagIt alone cannot see it: the forger rewrites the tagmanifests. The SHA-256s of the bag's own files,
    recorded when the package was made, can."""
    out = fresh(pristine[1], tmp_path)
    made = verify_package(out)
    assert made.ok and {"bagit.txt", "bag-info.txt", "manifest-sha256.txt", "tagmanifest-sha256.txt"} <= set(
        made.tag_files)
    assert verify_package(out, expected_tag_files=made.tag_files).ok
    info = out / "bag-info.txt"
    info.write_text(info.read_text().replace("Bagging-Date:", "External-Identifier: forged\nBagging-Date:"))
    _rewrite_tagmanifests(out)
    assert verify_package(out).ok  # BagIt's own checks pass
    result = verify_package(out, expected_tag_files=made.tag_files)
    assert not result.ok
    assert {(p.path, p.problem) for p in result.problems} == {
        ("bag-info.txt", "modified"), *((t, "modified") for t in made.tag_files if t.startswith("tagmanifest-"))}
    (out / "tagmanifest-md5.txt").write_text("")  # a tag file that was not there
    assert ("tagmanifest-md5.txt", "extra") in _kinds(verify_package(out, expected_tag_files=made.tag_files).problems)


def test_audit_keeps_order_and_reports_each(pristine: tuple[Path, Path], tmp_path: Path) -> None:
    pkgs = [fresh(pristine[1], tmp_path / str(i)) for i in range(3)]
    _flip(pkgs[1] / "data" / OBJID / CSV)
    for threads in (1, 2):
        results = audit([*pkgs, tmp_path / "missing.bag"], threads=threads, at=AT)
        assert [r.ok for r in results] == [True, False, True, False]
        assert ("METS.xml", "missing") in _kinds(results[3].problems)


def test_premis_fixity_events_and_audit_log(pristine: tuple[Path, Path], tmp_path: Path) -> None:
    out = fresh(pristine[1], tmp_path)
    ok = verify_package(out, at=AT)
    event = ET.fromstring(premis_fixity_event(ok, operator="arkivarie"))
    assert event.findtext(q("premis:eventType")) == "fixity check"
    assert event.findtext(f".//{q('premis:eventOutcome')}") == "success"
    assert event.findtext(q("premis:eventDateTime")) == "2026-03-01T03:00:00Z"
    log = append_audit_log(ok)
    assert log == tmp_path / f"{OBJID}.audit.premis.xml"
    assert append_audit_log(ok) == log  # same audit again (a rerun): recorded once
    _flip(out / "data" / OBJID / CSV)
    bad = verify_package(out, at=datetime(2026, 4, 1, tzinfo=UTC))
    append_audit_log(bad)
    events = list(ET.parse(log).getroot().iter(q("premis:event")))
    assert [e.findtext(f".//{q('premis:eventOutcome')}") for e in events] == ["success", "failure"]
    notes = [n.text or "" for n in events[1].iter(q("premis:eventOutcomeDetailNote"))]
    assert any(n.startswith(f"modified {CSV}") for n in notes)
    assert not log.is_relative_to(out) and verify_package(fresh(pristine[1], tmp_path / "again")).ok
