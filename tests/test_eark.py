"""E-ARK SIP packages: build from Arrow through pyarrow's CSV writer, bag, reference validator, determinism, receipt."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import bagit
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from lifecycle import eark
from lifecycle.eark import ColumnDoc, PackageInfo, PackageSpec, PackageWriter, bag, validate_reference
from lifecycle.fixity import q, verify_package
from lifecycle.receipt import render_receipt
from zones.errors import ConfigError, IntegrityError, TerminalError

OBJID = "datazones-utbetalning-2014-0001"
CSV = "representations/rep1/data/utbetalning.csv"
COLUMNS = (ColumnDoc("utbetalning_id", "int64", False, "Löpnummer / payment id", "none"),
           ColumnDoc("mottagare_id", "int64", False, "Mottagare (syntetiskt id) / recipient", "direct"),
           ColumnDoc("belopp", "decimal128(12, 2)", False, "Belopp i kronor / amount in SEK", "none"),
           ColumnDoc("utbetald", "date32[day]", False, "Utbetalningsdag / payment date", "none"),
           ColumnDoc("kommentar", "string", True, 'Fritext med "citat", komma / free text', "unclassified"))


def table(n: int = 7) -> pa.Table:
    """Synthetic rows: sequence ids, amounts, dates; text with quotes, commas, newlines and non-ASCII."""
    return pa.table({
        "utbetalning_id": pa.array(range(1, n + 1), pa.int64()),
        "mottagare_id": pa.array([1000 + i % 5 for i in range(n)], pa.int64()),
        "belopp": pa.array([f"{(i * 3701) % 100000}.{i % 100:02d}" for i in range(n)]).cast(pa.decimal128(12, 2)),
        "utbetald": pa.array([date(2014, 1 + i % 12, 1 + i % 28) for i in range(n)], pa.date32()),
        "kommentar": pa.array([None if i % 3 else f'rad {i}, "åäö"\nny rad' for i in range(n)], pa.string()),
    })


def make_spec(rows: int = 7, **changes: object) -> PackageSpec:
    spec = PackageSpec(
        objid=OBJID, dataset="utbetalning", title="Utbetalningar 2014", description="Utbetalda förmåner 2014",
        owner="Avdelningen för utbetalning", steward="Dataförvaltning", domain="Socialförsäkring",
        period_label="2014", period_start=date(2014, 1, 1), period_end=date(2014, 12, 31), rows=rows,
        agency_name="Exempelmyndigheten", agency_id="202100-0000", cold_action="preserve", basis="RA-FS 2018:10",
        dispose_after=None, secrecy_until=date(2084, 12, 31), columns=COLUMNS, content_sha256="0123abcd" * 8,
        created=datetime(2025, 1, 31, 2, 0, tzinfo=UTC), operator="svc-archive")
    return replace(spec, **changes)  # type: ignore[arg-type]


def build_package(staging: Path, t: pa.Table | None = None, spec: PackageSpec | None = None) -> PackageInfo:
    t = table() if t is None else t
    w = PackageWriter(staging, spec or make_spec(rows=t.num_rows))
    with w.data_file("utbetalning.csv") as fh:
        writer = pacsv.CSVWriter(fh, t.schema, write_options=pacsv.WriteOptions(eol="\r\n"))
        fh.rows = 0
        for batch in t.to_batches(max_chunksize=3):
            writer.write_batch(batch)
            fh.rows += batch.num_rows
        writer.close()
    return w.finish()


def _validator_or_skip(pkg: Path) -> eark.ValidatorResult:
    result = validate_reference(pkg)
    if not result.available:
        pytest.fail(f"the E-ARK reference validator (../shared/tools/eark-validate) must run here: {result.reason}")
    return result


def test_build_writes_the_layout_and_hashes_while_writing(tmp_path: Path) -> None:
    info = build_package(tmp_path)
    root = tmp_path / OBJID
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert on_disk == set(info.files) == {
        "METS.xml", "documentation/datazones-utbetalning-2014-0001.html", "metadata/descriptive/dc.xml",
        "metadata/preservation/premis.xml", "representations/rep1/METS.xml", CSV,
        "representations/rep1/metadata/preservation/premis.xml", "schemas/utbetalning.tableschema.json"}
    for rel, (size, sha) in info.files.items():
        data = (root / rel).read_bytes()
        assert (size, sha) == (len(data), hashlib.sha256(data).hexdigest()), rel
    size, sha, rows = info.data_files["utbetalning.csv"]
    assert (size, sha, rows) == (*info.files[CSV], 7)
    assert info.mets_sha256 == info.files["METS.xml"][1]
    back = pacsv.read_csv(root / CSV)  # RFC 4180 round trip: quotes, commas, newlines, UTF-8
    assert back.num_rows == 7 and back.column("kommentar")[0].as_py() == 'rad 0, "åäö"\nny rad'
    assert (root / CSV).read_bytes().startswith(b'"utbetalning_id","mottagare_id","belopp","utbetald","kommentar"\r\n')


def test_root_mets_lists_every_file_with_the_required_attributes(tmp_path: Path) -> None:
    info = build_package(tmp_path)
    mets = ET.parse(tmp_path / OBJID / "METS.xml").getroot()
    assert (mets.get("OBJID"), mets.get("TYPE"), mets.get("PROFILE")) == (
        OBJID, "Datasets", "https://earksip.dilcis.eu/profile/E-ARK-SIP.xml")
    listed = {}
    for f in mets.iter(q("mets:file")):
        href = f.find(q("mets:FLocat")).get(q("xlink:href"))  # type: ignore[union-attr]
        listed[href] = f
        assert {"ID", "MIMETYPE", "SIZE", "CREATED", "CHECKSUM", "CHECKSUMTYPE"} <= set(f.keys())
    for m in mets.iter(q("mets:mdRef")):
        listed[m.get(q("xlink:href"))] = m
    assert set(listed) == set(info.files) - {"METS.xml"}
    for rel, e in listed.items():
        assert (int(e.get("SIZE", "-1")), e.get("CHECKSUM")) == info.files[rel]
        assert e.get("CHECKSUMTYPE") == "SHA-256" and e.get("CREATED") == "2025-01-31T02:00:00Z"
    assert len(mets.findall(q("mets:structMap"))) == 1


def test_descriptive_schema_and_premis_content(tmp_path: Path) -> None:
    info = build_package(tmp_path, spec=make_spec(cold_action="dispose", basis="RA-MS 2099:1 (exempel)",
                                                  dispose_after=date(2030, 12, 31)))
    root = tmp_path / OBJID
    dc = (root / "metadata/descriptive/dc.xml").read_text(encoding="utf-8")
    for text in ("datazones.rows: 7", "datazones.contentSha256: " + "0123abcd" * 8, "datazones.steward:",
                 "datazones.secrecyUntil: 2084-12-31", "RA-MS 2099:1 (exempel)", "2014-01-01/2014-12-31",
                 "Gallras tidigast 2030-12-31"):
        assert text in dc
    schema = json.loads((root / "schemas/utbetalning.tableschema.json").read_text(encoding="utf-8"))
    assert [f["name"] for f in schema["fields"]] == [c.name for c in COLUMNS]
    assert schema["fields"][1]["personalData"] == "direct" and schema["fields"][0]["type"] == "integer"
    assert schema["fields"][4]["constraints"] == {"required": False}
    assert schema["dialect"]["lineTerminator"] == "\r\n" and schema["dialect"]["header"] is True
    premis = ET.parse(root / "metadata/preservation/premis.xml").getroot()
    events = [e.findtext(q("premis:eventType")) for e in premis.iter(q("premis:event"))]
    assert events == ["creation", "message digest calculation", "validation", "transfer"]
    digests = {o.findtext(f"{q('premis:objectIdentifier')}/{q('premis:objectIdentifierValue')}"):
               o.findtext(f".//{q('premis:messageDigest')}") for o in premis.iter(q("premis:object"))}
    assert digests[CSV] == info.files[CSV][1]
    assert {a.findtext(q("premis:agentType")) for a in premis.iter(q("premis:agent"))} == {
        "software", "organization", "person"}
    html = (root / f"documentation/{OBJID}.html").read_text(encoding="utf-8")
    assert "Så läser du filen / How to read the file" in html and "RFC 4180" in html


def test_output_is_deterministic(tmp_path: Path) -> None:
    a, b = build_package(tmp_path / "a"), build_package(tmp_path / "b")
    assert a.files == b.files and a.mets_sha256 == b.mets_sha256
    for rel in a.files:
        assert (a.path / rel).read_bytes() == (b.path / rel).read_bytes(), rel


@pytest.mark.parametrize("changes, needle", [
    ({"objid": "../escape"}, "objid and dataset"),
    ({"cold_action": "dispose"}, "cited basis"),
    ({"dispose_after": date(2030, 1, 1)}, "'preserve' cannot have dispose_after"),
    ({"secrecy_until": date(2085, 1, 1)}, "70 years"),
    ({"created": datetime(2025, 1, 31)}, "timezone-aware"),
    ({"content_sha256": "xyz"}, "content_sha256"),
    ({"columns": (ColumnDoc("a", "int64", False, "", "maybe"),)}, "personal_data"),
])
def test_spec_is_checked(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(TerminalError, match=needle):
        make_spec(**changes)


def test_header_and_row_count_are_reconciled(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="CSV header"):
        build_package(tmp_path / "h", table().rename_columns(["id", "b", "c", "d", "e"]), make_spec())
    with pytest.raises(IntegrityError, match="7 rows written to the data files, the source has 8"):
        build_package(tmp_path / "r", table(), make_spec(rows=8))


def test_failed_write_leaves_no_data_file(tmp_path: Path) -> None:
    w = PackageWriter(tmp_path, make_spec())
    with pytest.raises(RuntimeError), w.data_file("utbetalning.csv") as fh:
        fh.write(b"partial")
        raise RuntimeError("source went away")
    assert not list((tmp_path / OBJID).rglob("*.csv"))
    with pytest.raises(TerminalError, match="closed data file"):
        w.finish()
    with pytest.raises(TerminalError, match="already exists"):
        PackageWriter(tmp_path, make_spec())
    PackageWriter(tmp_path, make_spec(), overwrite=True)


def test_bag_moves_the_package_into_a_valid_bag(tmp_path: Path) -> None:
    info = build_package(tmp_path)
    out = bag(info.path, info={"Source-Organization": "Exempelmyndigheten"})
    assert out == tmp_path / f"{OBJID}.bag" and not info.path.exists()
    assert sorted(p.name for p in out.iterdir()) == ["bag-info.txt", "bagit.txt", "data", "manifest-sha256.txt",
                                                      "manifest-sha512.txt", "tagmanifest-sha256.txt",
                                                      "tagmanifest-sha512.txt"]
    inner = out / "data" / OBJID
    assert {p.relative_to(inner).as_posix(): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in inner.rglob("*") if p.is_file()} == info.files
    b = bagit.Bag(str(out))
    assert b.validate(fast=False) and b.info["Bagging-Date"] == "2025-01-31"
    assert b.info["External-Identifier"] == OBJID
    assert verify_package(out).ok
    with pytest.raises(TerminalError, match="already bagged"):
        bag(inner, info={})
    with pytest.raises(TerminalError, match="already bagged"):
        bag(info.path, info={})  # its <objid>.bag exists
    assert verify_package(out).ok


@pytest.mark.parametrize("where", [OBJID, f"tmpab12cd/{OBJID}", f"data/{OBJID}"])
def test_bag_unwinds_a_crashed_attempt(tmp_path: Path, where: str) -> None:
    info = build_package(tmp_path)
    partial = tmp_path / f".{OBJID}.bag.partial"
    (partial / where).parent.mkdir(parents=True)
    os.rename(info.path, partial / where)  # killed while bagit was moving the payload or writing manifests
    (partial / "manifest-sha256.txt").write_text("half written")
    out = bag(info.path, info={})
    result = verify_package(out)
    assert result.ok and not partial.exists() and set(result.files) == set(info.files)


@pytest.mark.slow
def test_reference_validator_accepts_package_and_bagged_package(tmp_path: Path) -> None:
    info = build_package(tmp_path)
    result = _validator_or_skip(info.path)
    print(result.summary)
    assert result.valid, result.output
    assert result.errors == [] and result.accepted == ["SIP14"]
    assert result.summary.startswith(f"VALID {info.path}: structure=WellFormed errors=0 accepted-known-defects=1")
    inner = bag(info.path, info={}) / "data" / OBJID
    assert validate_reference(inner).valid


@pytest.mark.slow
def test_reference_validator_reports_a_broken_package(tmp_path: Path) -> None:
    info = build_package(tmp_path)
    mets = info.path / "METS.xml"
    mets.write_text(mets.read_text(encoding="utf-8").replace(' PROFILE="', ' X="'), encoding="utf-8")
    result = _validator_or_skip(info.path)
    assert not result.valid and any("SIP2" in e for e in result.errors)
    strict = validate_reference(build_package(tmp_path / "s").path, accept=())
    assert not strict.valid and any("SIP14" in e for e in strict.errors)


def test_validator_discovery(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATAZONES_EARK_VALIDATOR", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="DATAZONES_EARK_VALIDATOR"):
        validate_reference(tmp_path)
    monkeypatch.delenv("DATAZONES_EARK_VALIDATOR")
    monkeypatch.setattr(eark, "_find_validator", lambda: None)
    result = validate_reference(tmp_path)
    assert not result.available and not result.valid and "DATAZONES_EARK_VALIDATOR" in result.reason


def _validator(valid: bool) -> eark.ValidatorResult:
    return eark.ValidatorResult(True, valid, [] if valid else ["schematron SIP2 at /mets: PROFILE"], ["SIP14"],
                                f"{'VALID' if valid else 'INVALID'} pkg: structure=WellFormed errors={int(not valid)}")


def test_receipt_renders_metadata_in_swedish_and_english(tmp_path: Path) -> None:
    info = build_package(tmp_path)
    out = bag(info.path, info={})
    verified = verify_package(out)
    rec = {"warm_rows": 7, "package_rows": 7, "warm_content_sha256": "0123abcd" * 8,
           "package_content_sha256": "0123abcd" * 8}
    receipt = render_receipt(out, verified, _validator(True), rec, {"state": "preserve"})
    data = json.loads(receipt.to_json())
    assert data["verdict"]["accepted"] and data["package"]["objid"] == OBJID and data["package"]["rows"] == 7
    assert data["secrecy_until"] == "2084-12-31" and data["bag"]["ok"] is True
    assert {f["path"]: f["sha256"] for f in data["files"]} == {k: v[1] for k, v in info.files.items()}
    assert [e["type"] for e in data["premis_events"]] == ["creation", "message digest calculation", "validation",
                                                          "transfer"]
    html, text = receipt.to_html(), receipt.to_text()
    for label in ("Leveranskvitto / Transfer receipt", "Paket-ID / Package ID", "Bevarande / Preservation",
                  "Sekretess till / Secret until", "Fixitet / Fixity", OBJID, info.files[CSV][1], "GODKÄND / ACCEPTED"):
        assert label in html and label in text
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "åäö" not in html + text + receipt.to_json()  # no CSV contents


def test_receipt_refuses_when_a_check_fails(tmp_path: Path) -> None:
    info = build_package(tmp_path)
    (info.path / CSV).write_bytes(b"tampered")
    bad = render_receipt(info.path, verify_package(info.path), _validator(False), {"warm_rows": 7, "package_rows": 6},
                         {"state": "dispose_scheduled", "holds": ["hold-17"]})
    d = bad.data
    assert not d["verdict"]["accepted"] and len(d["verdict"]["reasons"]) == 3
    assert {"size"} == {p["problem"] for p in d["fixity"]["problems"]}
    assert "EJ GODKÄND / NOT ACCEPTED" in bad.to_text() and "hold-17" in bad.to_html()
    shutil.rmtree(info.path)
