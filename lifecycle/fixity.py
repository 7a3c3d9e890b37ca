"""Fixity: streamed threaded hashing, package verification (leveranskontroll), audits, PREMIS fixity events.

``verify_package`` checks a package (or the BagIt bag around it) against its root METS.xml: every listed file
exists with the listed SIZE and SHA-256, its MIMETYPE is on the allow-list and fits its extension, nothing unlisted
is present, the representation METS agrees, the mdRef'd metadata files match; inside a bag every manifest and
tag-manifest entry is recomputed too (full validation, never bagit's ``fast``), in the same hashing pass as the
METS checks. Problems are reported per file; content problems never raise (an unreadable package is a result,
not a skipped package).

Audit records: a package is read-only once transferred (object lock in production), so its ``premis.xml`` is never
rewritten. ``append_audit_log`` keeps the audit trail in ``<objid>.audit.premis.xml`` beside the bag (a PREMIS
document of "fixity check" events); the caller also writes each result to the ledger.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import os
import re
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote

import bagit

from zones.errors import TerminalError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

EXT_MIME = {".csv": {"text/csv"}, ".json": {"application/json"}, ".html": {"text/html"},
            ".xml": {"text/xml", "application/xml"}, ".pdf": {"application/pdf"}}
ALLOWED_MIME = frozenset().union(*EXT_MIME.values())
NS = {"mets": "http://www.loc.gov/METS/", "csip": "https://DILCIS.eu/XML/METS/CSIPExtensionMETS",
      "sip": "https://DILCIS.eu/XML/METS/SIPExtensionMETS", "xlink": "http://www.w3.org/1999/xlink",
      "xsi": "http://www.w3.org/2001/XMLSchema-instance", "premis": "http://www.loc.gov/premis/v3",
      "dc": "http://purl.org/dc/elements/1.1/", "oai_dc": "http://www.openarchives.org/OAI/2.0/oai_dc/"}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)
ProblemKind = Literal["modified", "missing", "extra", "size", "mime", "bag", "identity"]
_REP_METS = re.compile(r"^representations/[^/]+/METS\.xml$")


def q(name: str) -> str:
    """``"mets:file"`` -> ``"{http://www.loc.gov/METS/}file"``."""
    prefix, _, local = name.partition(":")
    return f"{{{NS[prefix]}}}{local}"


def el(parent: ET.Element | None, tag: str, attrs: dict[str, str] | None = None, text: str | None = None
       ) -> ET.Element:
    """A new element (prefixed names, e.g. ``"premis:event"``, ``{"xlink:href": ...}``), appended to ``parent``."""
    a = {(q(k) if ":" in k else k): v for k, v in (attrs or {}).items()}
    e = ET.Element(q(tag), a) if parent is None else ET.SubElement(parent, q(tag), a)
    e.text = text
    return e


def to_xml(root: ET.Element) -> bytes:
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"


def parse_xml(path: Path) -> ET.Element:
    # stdlib ElementTree resolves no external entities; expat >= 2.4 bounds entity expansion
    return ET.parse(path).getroot()  # noqa: S314


@dataclass(frozen=True)
class FileProblem:
    path: str  # relative to the package root; for problem "bag", relative to the bag root
    problem: ProblemKind
    expected: str | None
    found: str | None


@dataclass(frozen=True)
class VerifyResult:
    package: Path  # the package folder (inside the bag when bagged)
    objid: str | None
    ok: bool
    problems: tuple[FileProblem, ...]
    files_checked: int
    bytes_checked: int
    seconds: float
    checked_at: datetime
    bag: Path | None = None
    mets_sha256: str | None = None
    files: dict[str, tuple[int, str]] = field(default_factory=dict)  # package relpath -> (size, sha256) as found
    tag_files: dict[str, str] = field(default_factory=dict)  # the bag's own files (bagit.txt, bag-info.txt, …)


def _hash_one(path: Path, algorithms: Sequence[str], chunk: int) -> dict[str, str]:
    hashers = [hashlib.new(a) for a in algorithms]
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            for h in hashers:
                h.update(view[:n])
    return {a: h.hexdigest() for a, h in zip(algorithms, hashers, strict=True)}


def hash_files(paths: Sequence[Path], *, threads: int = 2, algorithms: Sequence[str] = ("sha256",),
               chunk_size: int = 4 << 20) -> dict[Path, dict[str, str]]:
    """Hex digests of every file for every algorithm, streamed in ``chunk_size`` chunks (1-8 MiB).

    ``threads=1`` reads each file once for all algorithms. With more threads, each (file, algorithm) pair is a
    task on a pool of ``threads`` (hashlib releases the GIL on large buffers): the two digests of one file run
    side by side, their reads served by the page cache, so a bagged file costs max(sha256, sha512), not the sum.
    """
    if threads < 1 or not (1 << 20) <= chunk_size <= (8 << 20):
        raise TerminalError(f"hash_files: threads must be >= 1 and chunk_size 1-8 MiB, got {threads}, {chunk_size}")
    for a in algorithms:
        hashlib.new(a)  # unknown algorithm -> ValueError now, not in a worker
    order = sorted(set(paths), key=lambda p: -os.stat(p).st_size)
    jobs = [(p, tuple(algorithms) if threads == 1 else (a,)) for p in order
            for a in (algorithms[:1] if threads == 1 else algorithms)]
    out: dict[Path, dict[str, str]] = {p: {} for p in order}
    with ThreadPoolExecutor(threads, "dz-hash") as pool:
        for (p, _), digests in zip(jobs, pool.map(lambda j: _hash_one(j[0], j[1], chunk_size), jobs), strict=True):
            out[p].update(digests)
    return out


class HashingFile(io.RawIOBase):
    """A binary sink that computes SHA-256 and counts bytes while writing (nothing is re-read).

    Works as the sink of ``pyarrow.csv.CSVWriter`` (which calls ``write``/``writable``/``closed``). Leaving the
    ``with`` block through an exception deletes the partial file; it is then not part of the package.
    """

    HEAD = 65536

    def __init__(self, path: Path, on_close: Callable[[HashingFile], None], *, rows: int | None, fsync: bool) -> None:
        super().__init__()
        self.path, self.rows, self.size, self.sha256 = path, rows, 0, ""
        self.head = bytearray()  # the first bytes: header line and line terminator, checked in finish()
        self._fh = open(path, "xb")  # closed in close()/abort()
        self._hash = hashlib.sha256()
        self._on_close, self._fsync, self.aborted = on_close, fsync, False

    def writable(self) -> bool:
        return True

    def write(self, b: ReadableBuffer) -> int:
        if self.closed:
            raise ValueError(f"write to closed package file {self.path}")
        view = memoryview(b).cast("B")
        self._hash.update(view)
        self._fh.write(view)
        if len(self.head) < self.HEAD:
            self.head += view[: self.HEAD - len(self.head)]
        self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        if not self._fh.closed:
            self._fh.flush()

    def close(self) -> None:
        if self.closed:
            return
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())
        self._fh.close()
        self.sha256 = self._hash.hexdigest()
        super().close()
        self._on_close(self)

    def abort(self) -> None:
        self.aborted = True
        self._fh.close()
        self.path.unlink(missing_ok=True)
        super().close()
        self._on_close(self)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None and not self.closed:
            self.abort()
        else:
            self.close()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _Decl:
    size: str | None
    checksum: str | None
    ctype: str | None
    mime: str | None
    source: str


def _safe(rel: str) -> bool:
    p = PurePosixPath(rel)
    return bool(rel) and not p.is_absolute() and ".." not in p.parts and ":" not in p.parts[0]


def _mets_decls(root: ET.Element, base: str, source: str) -> list[tuple[str, _Decl]]:
    out = []
    for tag in ("mets:file", "mets:mdRef"):
        for e in root.iter(q(tag)):
            loc = e.find(q("mets:FLocat")) if tag == "mets:file" else e
            href = unquote(loc.get(q("xlink:href"), "")) if loc is not None else ""
            rel = href if not _safe(href) else str(PurePosixPath(base, href))
            out.append((rel, _Decl(e.get("SIZE"), e.get("CHECKSUM"), e.get("CHECKSUMTYPE"), e.get("MIMETYPE"),
                                   source)))
    return out


def locate(pkg: Path) -> tuple[Path, Path | None]:
    pkg = pkg.resolve()
    if (pkg / "bagit.txt").is_file():
        inner = [d for d in sorted((pkg / "data").glob("*")) if (d / "METS.xml").is_file()]
        return (inner[0] if len(inner) == 1 else pkg / "data" / pkg.name.removesuffix(".bag")), pkg
    if pkg.parent.name == "data" and (pkg.parent.parent / "bagit.txt").is_file():
        return pkg, pkg.parent.parent
    return pkg, None


def _check_decl(rel: str, d: _Decl, found: tuple[int, str] | None) -> list[FileProblem]:
    want = f"{d.size} bytes, {d.ctype}:{d.checksum} ({d.source})"
    if not _safe(rel):
        return [FileProblem(rel, "missing", want, "unsafe href (absolute, '..' or URL)")]
    if found is None:
        return [FileProblem(rel, "missing", want, None)]
    problems = []
    ext = os.path.splitext(rel)[1].lower()
    if d.mime not in ALLOWED_MIME or d.mime not in EXT_MIME.get(ext, set()):
        problems.append(FileProblem(rel, "mime", f"allowed for {ext or 'no extension'}: "
                                    f"{sorted(EXT_MIME.get(ext, set()))}", d.mime))
    if d.size != str(found[0]):
        problems.append(FileProblem(rel, "size", d.size, str(found[0])))
    elif (d.ctype or "").upper() != "SHA-256" or (d.checksum or "").lower() != found[1]:
        problems.append(FileProblem(rel, "modified", f"{d.ctype}:{d.checksum} ({d.source})", f"SHA-256:{found[1]}"))
    return problems


def _check_bag(bag: bagit.Bag, bag_dir: Path, hashes: dict[Path, dict[str, str]]) -> list[FileProblem]:
    problems = []
    only_in_manifests, only_on_fs = bag.compare_manifests_with_fs()
    problems += [FileProblem(p, "bag", "in manifest", "not on disk") for p in only_in_manifests]
    problems += [FileProblem(p, "bag", "not in manifest", "on disk") for p in only_on_fs]
    for path in sorted(hashes):  # outside the payload only the tag files a manifest lists (and tagmanifests)
        if path.is_relative_to(bag_dir) and not path.is_relative_to(bag_dir / "data"):
            rel = path.relative_to(bag_dir).as_posix()
            if rel not in bag.entries and not re.fullmatch(r"tagmanifest-\w+\.txt", rel):
                problems.append(FileProblem(rel, "extra", "not present", "a file outside the payload in no manifest"))
    for rel, entry in sorted(bag.entries.items()):
        found = hashes.get(bag_dir / rel)
        for alg, want in sorted(entry.items()):
            if found is not None and found.get(alg) != want.lower():
                problems.append(FileProblem(rel, "bag", f"{alg}:{want.lower()}", f"{alg}:{found.get(alg)}"))
    if not problems:
        try:  # structure, bagit.txt, fetch.txt, Payload-Oxum, completeness: no hashing (done above)
            bag.validate(processes=1, completeness_only=True)
        except bagit.BagError as e:
            problems += [FileProblem(str(getattr(d, "path", "bag-info.txt")), "bag", None, str(d))
                         for d in (getattr(e, "details", None) or [e])]
    return problems


def verify_package(pkg: Path, *, threads: int = 2, expected_mets_sha256: str | None = None,
                   expected_tag_files: Mapping[str, str] | None = None, at: datetime | None = None,
                   expected_objid: str | None = None) -> VerifyResult:
    """Verify a package folder, the bag around it, or the package folder inside a bag; see the module doc.
    ``expected_objid``: the package the ledger says lives here (a package moved or swapped in is another)."""
    t0, checked_at = time.perf_counter(), at or datetime.now(UTC)
    pkg_dir, bag_dir = locate(Path(pkg))
    problems: list[FileProblem] = []
    bag_obj, algorithms = None, ["sha256"]
    if bag_dir is not None:
        try:
            bag_obj = bagit.Bag(str(bag_dir))
            algorithms += [a for a in bag_obj.algorithms if a not in algorithms]
        except bagit.BagError as e:
            problems.append(FileProblem("bagit.txt", "bag", "a readable BagIt bag", str(e)))
    top = bag_dir or pkg_dir
    on_disk = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else []
    try:
        hashes = hash_files(on_disk, threads=threads, algorithms=algorithms)
    except OSError as e:  # vanished or unreadable while we looked
        hashes = {}
        problems.append(FileProblem(str(getattr(e, "filename", "")), "missing", "readable", str(e)))
    found = {p.relative_to(pkg_dir).as_posix(): (p.stat().st_size, h["sha256"])
             for p, h in hashes.items() if p.is_relative_to(pkg_dir)}
    objid, decls = None, []
    try:
        root = parse_xml(pkg_dir / "METS.xml")
        objid = root.get("OBJID")
        decls = _mets_decls(root, "", "METS.xml")
    except FileNotFoundError:
        problems.append(FileProblem("METS.xml", "missing", "root METS.xml", None))
    except (ET.ParseError, OSError) as e:
        problems.append(FileProblem("METS.xml", "modified", "well-formed METS XML", str(e)))
    if expected_objid and objid is not None and objid != expected_objid:
        problems.append(FileProblem("METS.xml", "identity", f"OBJID {expected_objid} (ledger)", f"OBJID {objid}"))
    listed = {rel for rel, _ in decls}
    for rep in sorted(r for r in listed if _REP_METS.match(r) and r in found):
        try:
            decls += _mets_decls(parse_xml(pkg_dir / rep), str(PurePosixPath(rep).parent), rep)
        except ET.ParseError as e:
            problems.append(FileProblem(rep, "modified", "well-formed METS XML", str(e)))
    for rel, d in decls:
        problems += _check_decl(rel, d, found.get(rel))
    problems += [FileProblem(rel, "extra", "not present", "unlisted file")
                 for rel in found if rel != "METS.xml" and rel not in listed]
    mets_sha = found.get("METS.xml", (0, None))[1]
    if expected_mets_sha256 and mets_sha and expected_mets_sha256.lower() != mets_sha:
        problems.append(FileProblem("METS.xml", "modified", f"SHA-256:{expected_mets_sha256} (ledger)",
                                    f"SHA-256:{mets_sha}"))
    tags = ({p.name: h["sha256"] for p, h in hashes.items() if p.parent == bag_dir}
            if bag_dir is not None else {})
    if bag_obj is not None and bag_dir is not None:
        problems += _check_bag(bag_obj, bag_dir, hashes)
    if expected_tag_files:  # recorded when the package was made: a tag file edited with its tagmanifest redone
        extra = {p.path for p in problems if p.problem == "extra"}  # already said
        problems += [p for p in _check_tags(expected_tag_files, tags) if p.problem != "extra" or p.path not in extra]
    unique = sorted(set(problems), key=lambda p: (p.path, p.problem, p.expected or "", p.found or ""))
    return VerifyResult(pkg_dir, objid, not unique, tuple(unique), len(hashes),
                        sum(p.stat().st_size for p in hashes), time.perf_counter() - t0, checked_at, bag_dir,
                        mets_sha, dict(sorted(found.items())), dict(sorted(tags.items())))


def _check_tags(expected: Mapping[str, str], found: Mapping[str, str]) -> list[FileProblem]:
    """The bag's tag files against the SHA-256s the ledger recorded when the package was made. BagIt's
    tagmanifest protects them only from accidents: whoever edits bag-info.txt can write a new tagmanifest too."""
    out = []
    for name in sorted(set(expected) | set(found)):
        want, got = expected.get(name), found.get(name)
        if want is None:
            out.append(FileProblem(name, "extra", "not in the bag when it was made (ledger)", f"SHA-256:{got}"))
        elif got is None:
            out.append(FileProblem(name, "missing", f"SHA-256:{want} (ledger)", None))
        elif want.lower() != got:
            out.append(FileProblem(name, "modified", f"SHA-256:{want} (ledger)", f"SHA-256:{got}"))
    return out


def audit(pkgs: Sequence[Path], *, threads: int = 2, at: datetime | None = None) -> list[VerifyResult]:
    """``verify_package`` for each package (results in input order): packages in parallel when there are at least
    ``threads`` of them, else one after another with ``threads`` hashing each."""
    if threads > 1 and len(pkgs) >= threads:
        with ThreadPoolExecutor(threads, "dz-audit") as ex:
            return list(ex.map(lambda p: verify_package(p, threads=1, at=at), pkgs))
    return [verify_package(p, threads=threads, at=at) for p in pkgs]


def premis_event(parent: ET.Element | None, *, key: str, event_type: str, when: str, detail: str, outcome: str,
                 agents: Sequence[tuple[str, str]], objects: Sequence[str], notes: Sequence[str] = ()
                 ) -> ET.Element:
    """A PREMIS 3 event; ``key`` seeds its UUID (deterministic), ``agents`` are (local id, role) pairs."""
    ev = el(parent, "premis:event")
    ident = el(ev, "premis:eventIdentifier")
    el(ident, "premis:eventIdentifierType", text="UUID")
    el(ident, "premis:eventIdentifierValue", text=str(uuid.uuid5(uuid.NAMESPACE_URL, f"datazones:{key}")))
    el(ev, "premis:eventType", text=event_type)
    el(ev, "premis:eventDateTime", text=when)
    el(el(ev, "premis:eventDetailInformation"), "premis:eventDetail", text=detail)
    out = el(ev, "premis:eventOutcomeInformation")
    el(out, "premis:eventOutcome", text=outcome)
    for note in notes:
        el(el(out, "premis:eventOutcomeDetail"), "premis:eventOutcomeDetailNote", text=note)
    for kind, values in (("Agent", agents), ("Object", [(o, "") for o in objects])):
        for value, role in values:
            link = el(ev, f"premis:linking{kind}Identifier")
            el(link, f"premis:linking{kind}IdentifierType", text="local")
            el(link, f"premis:linking{kind}IdentifierValue", text=value)
            if role:
                el(link, f"premis:linking{kind}Role", text=role)
    return ev


def datazones_version() -> str:
    try:
        return importlib.metadata.version("datazones")
    except importlib.metadata.PackageNotFoundError:
        return "0.1.0"


def _fixity_event(parent: ET.Element | None, result: VerifyResult, operator: str | None) -> ET.Element:
    where = f"{result.bag} (and its BagIt sha256+sha512 manifests)" if result.bag else str(result.package)
    agents = [(f"software:datazones-{datazones_version()}", "executing program")]
    return premis_event(
        parent, key=f"{result.objid}:fixity:{result.checked_at.isoformat()}", event_type="fixity check",
        when=result.checked_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        detail=f"SHA-256 of {result.files_checked} files ({result.bytes_checked} bytes) recomputed and compared "
               f"with METS.xml: {where}", outcome="success" if result.ok else "failure",
        agents=agents + ([(f"person:{operator}", "implementer")] if operator else []),
        objects=[result.objid or result.package.name],
        notes=[f"{p.problem} {p.path}: expected {p.expected}, found {p.found}" for p in result.problems])


def premis_fixity_event(result: VerifyResult, *, operator: str | None = None) -> str:
    """One PREMIS "fixity check" event as an XML string (namespace declared on it)."""
    return ET.tostring(_fixity_event(None, result, operator), encoding="unicode")


def append_audit_log(result: VerifyResult, *, operator: str | None = None) -> Path:
    """Append the result as a PREMIS event to ``<objid>.audit.premis.xml`` beside the bag (or package)."""
    objid = result.objid or result.package.name
    log = (result.bag or result.package).parent / f"{objid}.audit.premis.xml"
    if log.exists():
        root = parse_xml(log)
    else:
        root = el(None, "premis:premis", {"version": "3.0"})
        obj = el(root, "premis:object", {"xsi:type": "premis:intellectualEntity"})
        ident = el(obj, "premis:objectIdentifier")
        el(ident, "premis:objectIdentifierType", text="local")
        el(ident, "premis:objectIdentifierValue", text=objid)
    event = _fixity_event(None, result, operator)
    ids = {e.text for e in root.iter(q("premis:eventIdentifierValue"))}
    if event.findtext(f"{q('premis:eventIdentifier')}/{q('premis:eventIdentifierValue')}") in ids:
        return log  # the same audit (same package and time) is already recorded: a rerun
    at = next((i for i, e in enumerate(root) if e.tag in (q("premis:agent"), q("premis:rights"))), len(root))
    root.insert(at, event)
    tmp = log.with_name(log.name + ".partial")
    with open(tmp, "wb") as fh:
        fh.write(to_xml(root))
        os.fsync(fh.fileno())
    os.replace(tmp, log)
    fsync_dir(log.parent)
    return log
