"""What archivists see: package status, verification with a transfer receipt, fixity audits."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from lifecycle.fixity import append_audit_log, locate, verify_package
from lifecycle.ledger import Ledger, packages, utcnow
from zones.config import Project
from zones.errors import TerminalError

if TYPE_CHECKING:
    from lifecycle.receipt import Receipt

# An audit touches only the ledger and the files: the Arrow/Delta/crypto stack is imported where it is needed, so
# `zones audit` starts fast.


def package_rows(ledger: Ledger, dataset: str | None = None) -> list[dict[str, Any]]:
    q = sa.select(packages).order_by(packages.c.dataset, packages.c.period, packages.c.seq)
    if dataset:
        q = q.where(packages.c.dataset == dataset)
    with ledger.engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(q)]


def recorded(ledger: Ledger) -> dict[str, dict[str, Any]]:
    """What the hash-chained log recorded of each package when it was made (``archive.verified``): its METS.xml and
    bag tag files' SHA-256s. Verification checks against these, not against the package register's row (which is
    not chained) nor the bag's tagmanifest (which whoever edits a tag file can rewrite)."""
    return {e["batch_id"]: e["payload"] for e in ledger.events(kind="archive.verified") if e["batch_id"]}


def expected(pkg: dict[str, Any] | None, made: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``verify_package``'s expectations for a registered package (none for a path the ledger does not know)."""
    if pkg is None:
        return {}
    rec = made.get(pkg["package_id"]) or {}
    return {"expected_mets_sha256": rec.get("mets_sha256") or pkg["mets_sha256"],
            "expected_tag_files": rec.get("tag_files"), "expected_objid": pkg["package_id"]}


def rule_in_force(project: Project, pkg: dict[str, Any]) -> tuple[date | None, str | None, str | None]:
    """(disposal date, basis, why it may not be disposed) under zones.yaml as it is now — disposal follows the
    rule in force, not the one recorded when the package was made. The later of the two dates wins, so a rule
    shortened after archiving never brings a disposal forward; a dataset no longer declared, or now preserved,
    is preserved (preservation is the default)."""
    from lifecycle.archive import period_bounds
    from zones.model import Dispose

    ds = project.config.datasets.get(pkg["dataset"])
    if ds is None:
        return None, None, f"dataset {pkg['dataset']} is no longer declared in zones.yaml: preservation is the default"
    rule = ds.retention.cold
    if not isinstance(rule, Dispose):
        return None, None, "the cold rule in force is preserve" + (
            f" (it was archived under dispose, {pkg['basis']})" if pkg["cold_action"] == "dispose" else "")
    due = rule.after.add_to(period_bounds(pkg["period"]).end)
    if pkg["dispose_after"] is not None and pkg["dispose_after"] > due:
        due = pkg["dispose_after"]
    if rule.placeholder:
        return due, rule.basis, (f"its basis {rule.basis!r} is marked as a placeholder, not a decision: cite the "
                                 f"regulation or decision that allows disposal in zones.yaml "
                                 f"(datasets.{pkg['dataset']}.retention.cold.basis)")
    return due, rule.basis, None


def package_status(project: Project) -> list[dict[str, Any]]:
    from lifecycle import holds as holds_mod

    ledger = Ledger(project.ledger_url)
    today = datetime.now(UTC).date()
    out = []
    by_dataset: dict[str, list[holds_mod.Hold]] = {}
    for p in package_rows(ledger):
        if p["dataset"] not in by_dataset:  # one read of the holds per dataset, not per package
            by_dataset[p["dataset"]] = holds_mod.active(ledger, p["dataset"])
        hold_list = by_dataset[p["dataset"]]
        held = [h.hold_id for h in hold_list if (not h.period or h.period == p["period"])
                and not (h.case_id or h.person)]
        # a case or person hold covers the package only if one of its rows matches: `dispose plan` reads the
        # rows; the listing says the hold may apply rather than read every package
        maybe = [h.hold_id for h in hold_list if (not h.period or h.period == p["period"]) and (h.case_id or h.person)]
        due, basis, why = rule_in_force(project, p)
        if p["status"] == "disposed":
            state = "disposed"
        elif held:
            state = f"held ({', '.join(held)})"
        elif due is not None and due <= today:
            state = "due for disposal" if why is None else "due, but its basis is a placeholder: kept"
        else:
            state = "verified"
        if maybe and p["status"] != "disposed":
            state += f"; case/person hold {', '.join(maybe)} may cover rows (checked by `zones dispose plan`)"
        out.append({"package_id": p["package_id"], "dataset": p["dataset"], "period": p["period"], "rows": p["rows"],
                    "bytes": p["bytes"], "state": state, "rule": f"dispose ({basis})" if basis else "preserve",
                    "dispose_after": due.isoformat() if due else None,
                    "secrecy_until": p["secrecy_until"].isoformat(),
                    "last_audit": (f"{p['last_audit_at']:%Y-%m-%d %H:%M} {'ok' if p['last_audit_ok'] else 'FAILED'}"
                                   if p["last_audit_at"] else "never"), "path": p["path"]})
    ledger.dispose()
    return out


def _find(ledger: Ledger, ref: str) -> dict[str, Any] | None:
    for p in package_rows(ledger):
        if ref in (p["package_id"], p["path"]) or Path(ref).resolve() == Path(p["path"]).resolve() or \
                Path(ref).name.removesuffix(".bag") == p["package_id"]:
            return p
    return None


def _disposed(ledger: Ledger, project: Project, pkg: dict[str, Any]) -> str:
    """What the register says of a disposed package: it cannot be verified, its disposal can be shown."""
    from lifecycle.ledger import disposals

    with ledger.engine.connect() as c:
        r = c.execute(sa.select(disposals).where(disposals.c.package_id == pkg["package_id"],
                                                   disposals.c.state == "disposed")).first()
    proof = Path(project.zone_uri("cold")) / "_disposals" / f"{pkg['package_id']}.premis.xml"
    if r is None:
        return f"package {pkg['package_id']} is recorded as disposed but has no disposal register entry"
    return (f"package {pkg['package_id']} was disposed (gallrad) at {r.executed_at} under {r.basis}: plan "
            f"{r.plan_id} by {r.planned_by}, approved by {r.approved_by}; register entry {r.seq}, METS SHA-256 "
            f"{r.mets_sha256}; PREMIS deletion event {proof}")


def verify_and_receipt(project: Project, ref: str, out_dir: Path | None) -> tuple[Receipt, bool, list[Path]]:
    from lifecycle import holds as holds_mod
    from lifecycle.archive import reconcile
    from lifecycle.eark import validate_reference
    from lifecycle.receipt import render_receipt

    ledger = Ledger(project.ledger_url)
    pkg = _find(ledger, ref)
    path = Path(pkg["path"]) if pkg else Path(ref)
    if pkg is not None and pkg["status"] == "disposed":
        raise TerminalError(_disposed(ledger, project, pkg))
    if not path.exists():
        raise TerminalError(f"no package {ref!r} (not in the ledger, no such path); `zones packages` lists them")
    result = verify_package(path, **expected(pkg, recorded(ledger)))
    pkg_dir, _ = locate(path)
    validator = validate_reference(pkg_dir)
    recon: dict[str, Any] = {}
    if pkg:
        csvs = list((pkg_dir / "representations" / "rep1" / "data").glob("*.csv"))
        try:
            import pyarrow.csv as pacsv

            header = pacsv.open_csv(csvs[0]).schema.names
            rows, digest = reconcile(csvs[0], header)
        except Exception as exc:  # an unreadable CSV is reported, never skipped
            rows, digest = -1, f"unreadable: {type(exc).__name__}"
        recon = {"warm_rows": pkg["rows"], "package_rows": rows, "warm_content_sha256": pkg["content_sha256"],
                 "package_content_sha256": digest, "ok": rows == pkg["rows"] and digest == pkg["content_sha256"]}
        state = "disposed" if pkg["status"] == "disposed" else ("dispose_scheduled" if pkg["cold_action"] ==
                                                                "dispose" else "preserve")
        status = {"state": state, "decision": pkg["basis"],
                  "holds": [h.hold_id for h in holds_mod.active(ledger, pkg["dataset"])]}
    else:
        status = {}
    receipt = render_receipt(pkg_dir, result, validator, recon, status)
    target = out_dir or Path(project.zone_uri("cold")) / "_receipts" / (pkg["package_id"] if pkg else pkg_dir.name)
    target.mkdir(parents=True, exist_ok=True)
    (target / "receipt.json").write_text(receipt.to_json(), encoding="utf-8")
    (target / "receipt.html").write_text(receipt.to_html(), encoding="utf-8")
    ok = bool(receipt.data["verdict"]["accepted"])  # the exit code says what the receipt says
    ledger.append("cold.verified", dataset=pkg["dataset"] if pkg else None, batch_id=pkg["package_id"] if pkg else
                  None, ok=ok, files=result.files_checked, problems=len(result.problems))
    ledger.dispose()
    return receipt, ok, [target / "receipt.json", target / "receipt.html"]


def run_audit(project: Project, *, sample: int | None = None, threads: int = 2) -> list[dict[str, Any]]:
    """Verify every (or a sample of) verified package; ``threads`` packages are hashed at once (each package is
    mostly one big CSV, so spreading whole packages over the threads keeps every core hashing)."""
    from concurrent.futures import ThreadPoolExecutor

    ledger = Ledger(project.ledger_url)
    rows = [p for p in package_rows(ledger) if p["status"] == "verified"]
    if sample is not None and sample < len(rows):
        rows = random.sample(rows, sample)
    made = recorded(ledger)

    def check(p: dict[str, Any]) -> dict[str, Any]:
        path = Path(p["path"])
        if not path.exists():
            return {"package_id": p["package_id"], "ok": False, "files": 0, "bytes": 0, "seconds": 0.0,
                    "problems": [{"path": str(path), "problem": "missing", "expected": "the package", "found": None}]}
        r = verify_package(path, threads=1, **expected(p, made))
        append_audit_log(r, operator="datazones audit")
        return {"package_id": p["package_id"], "ok": r.ok, "files": r.files_checked, "bytes": r.bytes_checked,
                "seconds": r.seconds, "problems": [pr.__dict__ for pr in r.problems]}

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="dz-audit") as pool:
        results = list(pool.map(check, rows))
    for p, res in zip(rows, results, strict=True):
        with ledger.engine.begin() as c:
            c.execute(sa.update(packages).where(packages.c.package_id == p["package_id"]).values(
                last_audit_at=utcnow(), last_audit_ok=res["ok"]))
            ledger.append("audit.fixity", dataset=p["dataset"], batch_id=p["package_id"], conn=c, ok=res["ok"],
                          files=res["files"], bytes=res["bytes"], problems=res["problems"][:20])
    ledger.dispose()
    return results
