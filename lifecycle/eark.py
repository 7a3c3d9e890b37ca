"""Cold-zone information packages: E-ARK SIP 2.1.0 / CSIP 2.1.0 (= Riksarkivet FGS Paketstruktur 2.0), in a BagIt bag.

Package layout (``staging_dir/<objid>/``, written in this order; the root ``METS.xml`` last marks it complete)::

    representations/rep1/data/<dataset>.csv                 the records, streamed in by the caller (UTF-8, RFC 4180)
    schemas/<dataset>.tableschema.json                      Frictionless Table Schema + CSV dialect + personalData
    documentation/<objid>.html                              what the records are, how to read them (sv + en)
    metadata/descriptive/dc.xml                             Dublin Core (dmdSec)
    representations/rep1/metadata/preservation/premis.xml   PREMIS objects of the representation's files
    representations/rep1/METS.xml                           representation METS (same rules as the root METS)
    metadata/preservation/premis.xml                        PREMIS 3: objects, events, agents (digiprovMD)
    METS.xml                                                root METS

Every file but the root ``METS.xml`` is listed in the root METS with SIZE, CREATED and a SHA-256 CHECKSUM: data,
schema, documentation and representation files in the ``fileSec``; the two metadata files as ``mdRef``s.
Checksums are lower-case hex (the validator does not check them; ``lifecycle.fixity`` compares case-insensitively).

Transfer layout (:func:`bag`): ``<objid>.bag/{bagit.txt, bag-info.txt, manifest-sha256.txt, manifest-sha512.txt,
tagmanifest-*.txt}`` with the unchanged package at ``<objid>.bag/data/<objid>/`` (moved in, never copied).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import bagit

from lifecycle.fixity import HashingFile, datazones_version, el, fsync_dir, locate, premis_event, to_xml
from lifecycle.receipt import documentation_html, dublin_core, table_schema
from zones.errors import ConfigError, IntegrityError, TerminalError

__all__ = ["ColumnDoc", "HashingFile", "PackageInfo", "PackageSpec", "PackageWriter", "ValidatorResult", "bag",
           "validate_reference"]
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,120}$")
PERSONAL_DATA = ("direct", "quasi", "special", "none", "unclassified")
SIP_PROFILE = "https://earksip.dilcis.eu/profile/E-ARK-SIP.xml"
CONTENT_TYPE = "Tabular data: CSV (RFC 4180) with a Frictionless Table Schema"
REP = "representations/rep1"
# extension: (MIMETYPE, format name, PRONOM key)
FORMATS = {".csv": ("text/csv", "Comma Separated Values (RFC 4180)", "x-fmt/18"),
           ".json": ("application/json", "JSON Data Interchange Format", "fmt/817"),
           ".html": ("text/html", "Hypertext Markup Language 5", "fmt/471"),
           ".xml": ("text/xml", "Extensible Markup Language 1.0", "fmt/101")}


@dataclass(frozen=True)
class ColumnDoc:
    name: str
    type: str  # Arrow or Table Schema type name: int64, string, date32[day], decimal128(12, 2), number, ...
    nullable: bool
    description: str
    personal_data: str  # direct | quasi | special | none | unclassified
    # the contract's checks at promotion (values, min, max, regex, format, ...) and their severity: what a reader
    # may expect of the column; not Table Schema constraints, since warn-severity and released rows may break them
    checks: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class PackageSpec:
    objid: str
    dataset: str
    title: str
    description: str
    owner: str
    steward: str
    domain: str
    period_label: str
    period_start: date
    period_end: date
    rows: int
    agency_name: str
    agency_id: str | None
    cold_action: Literal["preserve", "dispose"]
    basis: str | None
    dispose_after: date | None
    secrecy_until: date  # OSL 28 kap. 1 §: at most 70 years
    columns: tuple[ColumnDoc, ...]
    content_sha256: str  # order-independent content hash of the rows, computed by the caller
    created: datetime  # UTC, the run's logical time; every CREATED/CREATEDATE/eventDateTime
    software: str = "datazones"
    software_version: str = field(default_factory=datazones_version)
    operator: str = "datazones"
    primary_key: tuple[str, ...] = ()  # the record's key (Table Schema primaryKey; unique and never empty)

    def __post_init__(self) -> None:
        names, limit = [c.name for c in self.columns], _add_years(self.period_end, 70)
        bad_pd = [c.name for c in self.columns if c.personal_data not in PERSONAL_DATA]
        failed = [msg for ok, msg in (
            (SAFE_NAME.match(self.objid) and SAFE_NAME.match(self.dataset),
             f"objid and dataset must match {SAFE_NAME.pattern} (they name folders and files)"),
            (self.period_start <= self.period_end, f"period_start {self.period_start} is after {self.period_end}"),
            (self.rows >= 0, f"rows must be >= 0, got {self.rows}"),
            (self.created.utcoffset() is not None, "created must be timezone-aware (the run's logical time)"),
            (re.fullmatch(r"[0-9a-f]{64}", self.content_sha256), "content_sha256 must be 64 lower-case hex digits"),
            (self.cold_action in ("preserve", "dispose"), f"cold_action {self.cold_action!r}: preserve or dispose"),
            (self.cold_action != "dispose" or (self.basis and self.dispose_after),
             "disposal (gallring) needs a cited basis (RA-FS/RA-MS/law) and dispose_after"),
            (self.cold_action != "preserve" or self.dispose_after is None,
             "'preserve' cannot have dispose_after; use 'dispose' with a cited basis"),
            (self.secrecy_until <= limit, f"secrecy_until {self.secrecy_until} exceeds OSL 28:1's 70 years ({limit})"),
            (names and len(set(names)) == len(names), "columns must be non-empty with unique names"),
            (not bad_pd, f"columns {bad_pd}: personal_data must be one of {PERSONAL_DATA}")) if not ok]
        if failed:
            raise TerminalError(f"package spec {self.objid!r}: " + "; ".join(failed))

    @property
    def when(self) -> str:
        return self.created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PackageInfo:
    objid: str
    path: Path
    files: dict[str, tuple[int, str]]  # relpath -> (size, sha256) for every file, METS.xml included
    mets_sha256: str
    data_files: dict[str, tuple[int, str, int | None]]  # name -> (size, sha256, rows)


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _id(*parts: str) -> str:
    return "ID-" + str(uuid.uuid5(uuid.NAMESPACE_URL, "datazones:" + "/".join(parts)))


class PackageWriter:
    """Writes one SIP: ``data_file()`` for each data file (streamed by the caller), then ``finish()``."""

    def __init__(self, staging_dir: Path, spec: PackageSpec, *, overwrite: bool = False, fsync: bool = True) -> None:
        self.spec, self.root, self._fsync = spec, Path(staging_dir) / spec.objid, fsync
        if self.root.exists():
            if not overwrite:
                raise TerminalError(f"{self.root} already exists: a previous run left it; pass overwrite=True "
                                    "to rebuild it (it is staging, not the archive)")
            shutil.rmtree(self.root)
        (self.root / REP / "data").mkdir(parents=True)
        self._data: dict[str, HashingFile] = {}
        self._files: dict[str, tuple[int, str]] = {}
        self._finished = False

    def data_file(self, name: str, *, rows: int | None = None) -> HashingFile:
        """A new data file in ``representations/rep1/data/``. Set ``rows`` (here or on the returned file, e.g.
        ``fh.rows = n`` after streaming ``n`` records) so that ``finish()`` reconciles it with ``spec.rows``."""
        ext = os.path.splitext(name)[1]
        if not SAFE_NAME.match(name) or ext not in (".csv", ".xml", ".json"):
            raise TerminalError(f"data file name {name!r}: must match {SAFE_NAME.pattern} and end .csv/.xml/.json")
        if name in self._data or self._finished:
            raise TerminalError(f"data file {name!r} already written or package finished")
        fh = HashingFile(self.root / REP / "data" / name, self._closed, rows=rows, fsync=self._fsync)
        self._data[name] = fh
        return fh

    def _closed(self, fh: HashingFile) -> None:
        if fh.aborted:
            self._data.pop(fh.path.name, None)
        else:
            self._files[f"{REP}/data/{fh.path.name}"] = (fh.size, fh.sha256)

    def _put(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        with open(tmp, "wb") as fh:
            fh.write(data)
            if self._fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        self._files[rel] = (len(data), _sha256(data))

    def finish(self) -> PackageInfo:
        s = self.spec
        if self._finished or not self._data or any(not f.closed for f in self._data.values()):
            raise TerminalError(f"{s.objid}: finish() needs >= 1 closed data file and may run once")
        self._finished = True
        counts = [f.rows for f in self._data.values()]
        written = sum(c for c in counts if c is not None)
        if None not in counts and written != s.rows:
            raise IntegrityError(f"{s.objid}: {written} rows written to the data files, the source has {s.rows}")
        eol = "CRLF" if self._check_headers() == "\r\n" else "LF"
        check = (f"{written} rows written = {s.rows} rows in the source" if None not in counts else
                 f"{s.rows} rows (source count; rows written not reported, not reconciled)") + \
            f"; CSV header equals the Table Schema fields; UTF-8 header without BOM; line terminator {eol}"
        data = {f"{REP}/data/{n}": self._files[f"{REP}/data/{n}"] for n in sorted(self._data)}
        schema, doc = f"schemas/{s.dataset}.tableschema.json", f"documentation/{s.objid}.html"
        self._put(schema, table_schema(s, "\r\n" if eol == "CRLF" else "\n"))
        self._put(doc, documentation_html(s, data))
        self._put("metadata/descriptive/dc.xml", dublin_core(s))
        rep_premis = f"{REP}/metadata/preservation/premis.xml"
        self._put(rep_premis, _premis(s, data, with_events=False, check=check))
        rep_meta = {"metadata/preservation/premis.xml": self._files[rep_premis]}
        rep_files = {"Data": {k.removeprefix(REP + "/"): v for k, v in data.items()}}
        self._put(f"{REP}/METS.xml", _mets(s, f"{s.objid}/rep1", rep_files, rep_meta, rep=True))
        self._put("metadata/preservation/premis.xml",
                  _premis(s, {**data, schema: self._files[schema], doc: self._files[doc]}, with_events=True,
                          check=check))
        groups = {"Documentation": {doc: self._files[doc]}, "Schemas": {schema: self._files[schema]},
                  "Representations/rep1": {k: v for k, v in self._files.items() if k.startswith(REP + "/")}}
        meta = {k: self._files[k] for k in ("metadata/descriptive/dc.xml", "metadata/preservation/premis.xml")}
        self._put("METS.xml", _mets(s, s.objid, groups, meta, rep=False))
        if self._fsync:
            for d in sorted({(self.root / k).parent for k in self._files}, key=str):
                fsync_dir(d)
        return PackageInfo(s.objid, self.root, dict(sorted(self._files.items())), self._files["METS.xml"][1],
                           {n: (f.size, f.sha256, f.rows) for n, f in sorted(self._data.items())})

    def _check_headers(self) -> str:
        """The CSV header must equal the documented columns; returns the line terminator written."""
        eol = "\r\n"
        for name, fh in sorted(self._data.items()):
            if not name.endswith(".csv"):
                continue
            head = bytes(fh.head)
            line = head[: head.find(b"\n") + 1] if b"\n" in head else head
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise IntegrityError(f"{self.spec.objid}/{name}: header line is not UTF-8 ({e})") from e
            eol = "\r\n" if line.endswith(b"\r\n") else "\n"
            header = next(csv.reader(io.StringIO(text)), [])
            expected = [c.name for c in self.spec.columns]
            if header != expected:
                raise IntegrityError(f"{self.spec.objid}/{name}: CSV header {header} != documented columns "
                                     f"{expected} (a UTF-8 BOM or a header longer than 64 KiB also fails this)")
        return eol


def _premis(s: PackageSpec, files: dict[str, tuple[int, str]], *, with_events: bool, check: str) -> bytes:
    root = el(None, "premis:premis", {"version": "3.0"})

    def ident(parent: ET.Element, kind: str, value: str) -> None:
        i = el(parent, f"premis:{kind}Identifier")
        el(i, f"premis:{kind}IdentifierType", text="local")
        el(i, f"premis:{kind}IdentifierValue", text=value)

    ident(el(root, "premis:object", {"xsi:type": "premis:intellectualEntity"}), "object", s.objid)  # the package
    ident(el(root, "premis:object", {"xsi:type": "premis:representation"}), "object", f"{s.objid}/rep1")
    for rel, (size, sha) in files.items():
        mime, name, pronom = FORMATS[os.path.splitext(rel)[1]]
        obj = el(root, "premis:object", {"xsi:type": "premis:file"})
        ident(obj, "object", rel)
        ch = el(obj, "premis:objectCharacteristics")
        el(ch, "premis:compositionLevel", text="0")
        fx = el(ch, "premis:fixity")
        el(fx, "premis:messageDigestAlgorithm", text="SHA-256")
        el(fx, "premis:messageDigest", text=sha)
        el(fx, "premis:messageDigestOriginator", text=f"{s.software} {s.software_version}")
        el(ch, "premis:size", text=str(size))
        for registry, key in (("PRONOM", pronom), ("IANA Media Types", mime)):
            fmt = el(ch, "premis:format")
            if registry == "PRONOM":
                el(el(fmt, "premis:formatDesignation"), "premis:formatName", text=name)
            reg = el(fmt, "premis:formatRegistry")
            el(reg, "premis:formatRegistryName", text=registry)
            el(reg, "premis:formatRegistryKey", text=key)
        el(obj, "premis:originalName", text=os.path.basename(rel))
        relation = el(obj, "premis:relationship")
        el(relation, "premis:relationshipType", text="structural")
        el(relation, "premis:relationshipSubType", text="is included in")
        ident(relation, "relatedObject", f"{s.objid}/rep1" if rel.startswith(REP + "/") else s.objid)
    if not with_events:
        return to_xml(root)
    agents = [("software", s.software, f"software:{s.software}-{s.software_version}", "executing program"),
              ("organization", s.agency_name, f"organization:{s.agency_id or s.agency_name}", "implementer"),
              *([("person", s.operator, f"person:{s.operator}", "authorizer")] if s.operator != s.software else [])]
    data_files = [k for k in files if k.startswith(REP + "/data/")]
    for etype, detail, objs in (
        ("creation", f"Extract of {s.rows} rows of dataset {s.dataset} ({s.period_label}) written from the warm "
                     f"zone by {s.software} {s.software_version}; content SHA-256 {s.content_sha256}", data_files),
        ("message digest calculation", "SHA-256 computed from the bytes as they were written", list(files)),
        ("validation", check, data_files),
        ("transfer", f"Submission Information Package {s.objid} (E-ARK SIP 2.1.0) created for transfer from the "
                     f"warm zone to the cold zone (archive) of {s.agency_name}", list(files))):
        premis_event(root, key=f"{s.objid}:{etype}", event_type=etype, when=s.when, detail=detail,
                     outcome="success", agents=[(a[2], a[3]) for a in agents], objects=objs)
    for kind, name, aid, _role in agents:
        ag = el(root, "premis:agent")
        ident(ag, "agent", aid)
        el(ag, "premis:agentName", text=name)
        el(ag, "premis:agentType", text=kind)
        if kind == "software":
            el(ag, "premis:agentVersion", text=s.software_version)
    return to_xml(root)


def _mets(s: PackageSpec, objid: str, groups: dict[str, dict[str, tuple[int, str]]],
          meta: dict[str, tuple[int, str]], *, rep: bool) -> bytes:
    other = {"csip:CONTENTINFORMATIONTYPE": "OTHER", "csip:OTHERCONTENTINFORMATIONTYPE": CONTENT_TYPE}
    root = el(None, "mets:mets", {"OBJID": objid, "LABEL": s.title, "TYPE": "Datasets", **other,
                                   "PROFILE": SIP_PROFILE})
    hdr = el(root, "mets:metsHdr", {"CREATEDATE": s.when, "LASTMODDATE": s.when, "RECORDSTATUS": "NEW",
                                     "csip:OAISPACKAGETYPE": "SIP"})
    creator = el(hdr, "mets:agent", {"ROLE": "CREATOR", "TYPE": "OTHER", "OTHERTYPE": "SOFTWARE"})
    el(creator, "mets:name", text=s.software)
    el(creator, "mets:note", {"csip:NOTETYPE": "SOFTWARE VERSION"}, s.software_version)
    archivist = el(hdr, "mets:agent", {"ROLE": "ARCHIVIST", "TYPE": "ORGANIZATION"})
    el(archivist, "mets:name", text=s.agency_name)
    if s.agency_id:
        el(archivist, "mets:note", {"csip:NOTETYPE": "IDENTIFICATIONCODE"}, s.agency_id)
    by_software = s.operator == s.software  # no person named (`--by`): the software submitted it
    el(el(hdr, "mets:agent", {"ROLE": "OTHER", "OTHERROLE": "SUBMITTER", **(
        {"TYPE": "OTHER", "OTHERTYPE": "SOFTWARE"} if by_software else {"TYPE": "INDIVIDUAL"})}),
        "mets:name", text=s.operator)
    sec_ids: dict[str, str] = {}
    amd = None
    for rel, (size, sha) in meta.items():
        descriptive = "/descriptive/" in rel
        sec_ids[rel] = _id(objid, "md", rel)
        attrs = {"ID": sec_ids[rel], "CREATED": s.when, "STATUS": "CURRENT"}
        if descriptive:
            sec = el(root, "mets:dmdSec", attrs)
        else:
            amd = amd if amd is not None else el(root, "mets:amdSec")
            sec = el(amd, "mets:digiprovMD", attrs)
        el(sec, "mets:mdRef", {"LOCTYPE": "URL", "xlink:type": "simple", "xlink:href": rel,
                                "MDTYPE": "DC" if descriptive else "PREMIS", "MIMETYPE": "text/xml",
                                "SIZE": str(size), "CREATED": s.when, "CHECKSUM": sha, "CHECKSUMTYPE": "SHA-256"})
    file_sec = el(root, "mets:fileSec", {"ID": _id(objid, "fileSec")})
    file_ids: dict[str, list[str]] = {}
    for use, files in groups.items():
        grp = el(file_sec, "mets:fileGrp", {"ID": _id(objid, "grp", use), "USE": use, **other})
        for rel, (size, sha) in sorted(files.items()):
            mime, name, pronom = FORMATS[os.path.splitext(rel)[1]]
            fid = _id(objid, "file", rel)
            file_ids.setdefault(use, []).append(fid)
            f = el(grp, "mets:file", {"ID": fid, "MIMETYPE": mime, "SIZE": str(size), "CREATED": s.when,
                                       "CHECKSUM": sha, "CHECKSUMTYPE": "SHA-256", "sip:FILEFORMATNAME": name,
                                       "sip:FORMATREGISTRY": "PRONOM", "sip:FORMATREGISTRYKEY": pronom})
            el(f, "mets:FLocat", {"LOCTYPE": "URL", "xlink:type": "simple", "xlink:href": rel})
    smap = el(root, "mets:structMap", {"ID": _id(objid, "structMap"), "TYPE": "PHYSICAL", "LABEL": "CSIP"})
    top = el(smap, "mets:div", {"ID": _id(objid, "div"), "LABEL": "rep1" if rep else objid})
    md = {"ID": _id(objid, "div", "Metadata"), "LABEL": "Metadata"}
    adm = [v for k, v in sec_ids.items() if "/descriptive/" not in k]
    dmd = [v for k, v in sec_ids.items() if "/descriptive/" in k]
    el(top, "mets:div", {**md, **({"ADMID": " ".join(adm)} if adm else {}),
                          **({"DMDID": " ".join(dmd)} if dmd else {})})
    for use in groups:
        label = "Representations" if use.startswith("Representations") else use
        div = el(top, "mets:div", {"ID": _id(objid, "div", label), "LABEL": label})
        if label != "Representations":
            for fid in file_ids[use]:
                el(div, "mets:fptr", {"FILEID": fid})
            continue
        el(div, "mets:fptr", {"FILEID": _id(objid, "file", f"{REP}/METS.xml")})
        sub = el(div, "mets:div", {"ID": _id(objid, "div", use), "LABEL": use})
        el(sub, "mets:mptr", {"LOCTYPE": "URL", "xlink:type": "simple", "xlink:href": f"{REP}/METS.xml",
                               "xlink:title": _id(objid, "grp", use)})
    return to_xml(root)


def bag(package_dir: Path, *, info: dict[str, str], processes: int = 1) -> Path:
    """Move the package into a new BagIt bag ``<objid>.bag/`` (sha256 + sha512 manifests); returns the bag path.

    The package ends up unchanged at ``<objid>.bag/data/<objid>/``: it is renamed (never copied) into a
    ``.<objid>.bag.partial`` folder that ``bagit.make_bag`` converts in place, which is renamed to ``<objid>.bag``
    when complete. A partial bag left by a crash is unwound on the next call. ``processes`` is bagit's
    ``multiprocessing`` pool (bagit has no thread option; the pool splits by file, so one big CSV gains nothing,
    and daemonic Celery workers may not fork): keep 1 unless the package holds many large files.
    """
    pkg = Path(package_dir).resolve()
    objid = pkg.name
    final, partial = pkg.parent / f"{objid}.bag", pkg.parent / f".{objid}.bag.partial"
    if final.exists() or locate(pkg)[1] is not None:
        raise TerminalError(f"{pkg} is already bagged; verify the bag (lifecycle.fixity) instead of bagging again")
    if partial.exists():  # a crash: put the package back (bagit moves it via a tmpXXXX folder), then start over
        for leftover in sorted(partial.glob(f"**/{objid}")):
            if (leftover / "METS.xml").is_file() and not pkg.exists():
                os.rename(leftover, pkg)
        shutil.rmtree(partial)
    if not (pkg / "METS.xml").is_file():
        raise TerminalError(f"{pkg} is not a finished package (no METS.xml); rebuild it with PackageWriter")
    with open(pkg / "METS.xml", "rb") as fh:
        found = re.search(rb'CREATEDATE="(\d{4}-\d\d-\d\d)', fh.read(8192))
    when = found.group(1).decode() if found else ""
    bag_info = {"Bagging-Date": when or date.today().isoformat(), "External-Identifier": objid,
                "Bag-Software-Agent": f"datazones {datazones_version()} (bagit.py {bagit.VERSION})", **info}
    partial.mkdir()
    os.rename(pkg, partial / objid)
    bagit.make_bag(str(partial), bag_info, processes=processes, checksums=["sha256", "sha512"])
    os.rename(partial, final)
    fsync_dir(final.parent)
    return final


@dataclass(frozen=True)
class ValidatorResult:
    available: bool
    valid: bool
    errors: list[str]
    accepted: list[str]  # rule ids reported but accepted as known validator defects
    summary: str  # the validator's verdict line, e.g. "VALID pkg: structure=WellFormed errors=0 ..."
    output: str = ""
    reason: str = ""  # why it is unavailable or did not finish


def _find_validator() -> Path | None:
    env = os.environ.get("DATAZONES_EARK_VALIDATOR")
    if env:
        if not os.access(env, os.X_OK):
            raise ConfigError(f"DATAZONES_EARK_VALIDATOR={env} is not an executable file",
                              fix="point it at the eark-validate wrapper or unset it")
        return Path(env)
    default = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "eark-validate"
    return default if default.is_file() else None


def validate_reference(package_dir: Path, *, accept: Sequence[str] = ("SIP14",), timeout: float = 900
                       ) -> ValidatorResult:
    """Run the E-ARK reference validator (eark-validator 1.1.3, CSIP/SIP 2.1.0) on a package folder.

    Found via ``$DATAZONES_EARK_VALIDATOR``, else ``<repo>/../shared/tools/eark-validate``, else unavailable.
    SIP14 is accepted by default: 1.1.3 cannot pass it (integration-notes). The validator reads only the root
    METS.xml and checks no checksums, sizes or files: ``verify_package`` does that.
    """
    tool = _find_validator()
    if tool is None:
        return ValidatorResult(False, False, [], [], "", reason="no validator: set DATAZONES_EARK_VALIDATOR or "
                               "provide ../shared/tools/eark-validate")
    cmd = [str(tool), *(["--accept", ",".join(accept)] if accept else []), str(package_dir)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return ValidatorResult(True, False, [f"validator did not finish: {e}"], [], "", reason=str(e))
    lines = proc.stdout.splitlines()
    summary = next((ln for ln in lines if ln.startswith(("VALID ", "INVALID "))), "")
    errors = [ln.strip() for ln in lines if ln.startswith("  ") and not ln.startswith("  accepted ")]
    accepted = [ln.split()[2].rstrip(":") for ln in lines if ln.startswith("  accepted ")]
    if not summary:
        errors.append(f"validator exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    valid = proc.returncode == 0 and summary.startswith("VALID ") and not errors
    return ValidatorResult(True, valid, errors, accepted, summary, proc.stdout, "" if summary else "no verdict line")
