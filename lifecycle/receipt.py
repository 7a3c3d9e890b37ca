"""Descriptions of a package for people and catalogues, and the archivist's transfer receipt (Swedish + English).

From a ``PackageSpec``: the Frictionless Table Schema (``schemas/``), the Dublin Core record
(``metadata/descriptive/dc.xml``) and the documentation page (``documentation/``), all written by ``lifecycle.eark``.

``render_receipt`` (leveranskvitto) reads only metadata: the root METS, ``dc.xml``, ``premis.xml``, ``bag-info.txt``
and the results it is given. It never opens the data files (no personal data in receipts). The verdict is
"accepted" only when fixity (and the bag) verified, the E-ARK reference validator ran and passed, and the
reconciliation with the warm rows holds.

``reconciliation`` (from the caller): ``warm_rows``, ``package_rows``, ``warm_content_sha256``,
``package_content_sha256`` and optionally ``ok`` (else computed from those pairs). ``status``: ``state``
(``preserve`` | ``dispose_scheduled`` | ``disposed``), optionally ``disposed_at``, ``decision``, ``holds``;
missing values are taken from ``dc.xml``.
"""

from __future__ import annotations

import html
import json
import textwrap
from dataclasses import dataclass
from datetime import UTC, date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle.fixity import VerifyResult, el, locate, parse_xml, q, to_xml

if TYPE_CHECKING:
    from lifecycle.eark import PackageSpec, ValidatorResult

L = {"receipt": "Leveranskvitto / Transfer receipt", "verdict": "Bedömning / Verdict",
     "objid": "Paket-ID / Package ID", "title": "Titel / Title", "dataset": "Datamängd / Dataset",
     "agency": "Arkivbildare / Records creator", "period": "Period / Period", "rows": "Antal rader / Rows",
     "content": "Innehållets SHA-256 / Content SHA-256", "created": "Skapad / Created",
     "mets": "METS.xml SHA-256", "location": "Plats / Location", "preservation": "Bevarande / Preservation",
     "secrecy": "Sekretess till / Secret until", "fixity": "Fixitet / Fixity", "files": "Filer / Files",
     "validator": "E-ARK-validering / E-ARK validation", "bag": "BagIt-paket / BagIt bag",
     "reconciliation": "Avstämning mot varma zonen / Reconciliation with the warm zone",
     "events": "PREMIS-händelser / PREMIS events", "owner": "Ägare / Owner", "steward": "Förvaltare / Steward",
     "domain": "Område / Domain", "software": "Program / Software", "problems": "Avvikelser / Problems"}
PERSONAL_DATA_LABELS = {"direct": "direkt identifierande / direct identifier",
                        "quasi": "indirekt identifierande / quasi-identifier",
                        "special": "känsliga (art. 9) / special category", "none": "inga personuppgifter / none",
                        "unclassified": "ej klassad / unclassified"}
OK, FAIL = "OK / OK", "FEL / FAILED"


def disposal_text(action: str, dispose_after: date | str | None, basis: str | None) -> tuple[str, str]:
    """(Swedish, English) wording of a package's preservation or disposal (gallring) rule."""
    basis = basis or "—"
    if action == "dispose":
        return (f"Gallras tidigast {dispose_after} enligt {basis}",
                f"Disposable on or after {dispose_after} under {basis}")
    return f"Bevaras (ingen gallring). Grund: {basis}", f"Preserved (not disposable). Basis: {basis}"


def documentation_html(s: PackageSpec, data: dict[str, tuple[int, str]]) -> bytes:
    """``documentation/<objid>.html``: what the records are, their columns and how to read the CSV."""
    e = html.escape
    sv, en = disposal_text(s.cold_action, s.dispose_after, s.basis)
    facts = [(L["objid"], s.objid), (L["dataset"], s.dataset),
             (L["agency"], f"{s.agency_name} {s.agency_id or ''}".strip()),
             (L["period"], f"{s.period_label} ({s.period_start} – {s.period_end})"), (L["rows"], str(s.rows)),
             (L["owner"], s.owner), (L["steward"], s.steward), (L["domain"], s.domain),
             (L["preservation"], f"{sv} / {en}"), (L["secrecy"], f"{s.secrecy_until} (OSL 28 kap. 1 §)"),
             (L["content"], s.content_sha256), (L["created"], s.when),
             (L["software"], f"{s.software} {s.software_version}")]
    cols = "".join(f"<tr><td><code>{e(c.name)}</code></td><td>{e(_ts_type(c.type))}</td>"
                   f"<td>{'nej / no' if c.nullable else 'ja / yes'}</td><td>{e(PERSONAL_DATA_LABELS[c.personal_data])}"
                   f"</td><td>{e(c.description)}</td></tr>" for c in s.columns)
    files = "".join(f"<tr><td><code>{e(k)}</code></td><td>{v[0]}</td><td><code>{v[1]}</code></td></tr>"
                    for k, v in data.items())
    schema = f"<code>schemas/{e(s.dataset)}.tableschema.json</code>"
    return f"""<!DOCTYPE html>
<html lang="sv"><head><meta charset="utf-8"><title>{e(s.title)}</title><style>{_CSS}</style></head><body>
<h1>{e(s.title)}</h1><p>{e(s.description)}</p>
<h2>Om handlingarna / About the records</h2><table>{_rows(facts)}</table>
<h2>Kolumner / Columns</h2><table><tr><th>Namn / Name</th><th>Typ / Type</th><th>Obligatorisk / Required</th>
<th>Personuppgifter / Personal data</th><th>Beskrivning / Description</th></tr>{cols}</table>
<h2>Så läser du filen / How to read the file</h2>
<p lang="sv">Uppgifterna är en teckenseparerad textfil (CSV enligt RFC 4180) i teckenkodningen UTF-8 utan BOM, med
kommatecken som avgränsare och kolumnnamnen på första raden. Fält som innehåller kommatecken, citattecken eller
radbrytningar omges av dubbla citattecken ("" inuti ett fält är ett citattecken). Ett tomt fält betyder att värdet
saknas. Kolumnerna beskrivs maskinläsbart i {schema} (Frictionless Table Schema).</p>
<p lang="en">The records are a comma-separated text file (CSV, RFC 4180), UTF-8 without a BOM, with the column names
on the first row. Fields containing commas, quotes or line breaks are enclosed in double quotes ("" inside a field is
one quote). An empty field means the value is missing. Any CSV reader opens it (Python <code>csv</code>,
LibreOffice, R <code>read.csv(encoding = "UTF-8")</code>). The columns are described in {schema}.</p>
<h2>Filer / Files</h2><table><tr><th>Fil / File</th><th>Byte / Bytes</th><th>SHA-256</th></tr>{files}</table>
<p>Paketet följer E-ARK SIP 2.1.0 (FGS Paketstruktur 2.0). / The package follows E-ARK SIP 2.1.0.</p>
</body></html>
""".encode()


_TS_TYPES = {"int": "integer", "uint": "integer", "float": "number", "double": "number", "decimal": "number",
             "bool": "boolean", "string": "string", "large_string": "string", "utf8": "string", "date": "date",
             "timestamp": "datetime", "time": "time", "binary": "string"}


def _ts_type(t: str) -> str:
    t = t.strip().lower()
    if t in ("integer", "number", "string", "boolean", "date", "datetime", "time", "year", "any"):
        return t
    return next((v for k, v in _TS_TYPES.items() if t.startswith(k)), "string")


def table_schema(s: PackageSpec, eol: str) -> bytes:
    fields = [{"name": c.name, "type": _ts_type(c.type), "description": c.description,
               "constraints": {"required": not c.nullable, **({"unique": True} if [c.name] == list(s.primary_key)
                                                              else {})},
               "personalData": c.personal_data, "sourceType": c.type,
               **({"promotionChecks": dict(c.checks)} if c.checks else {})}
              for c in s.columns]
    doc: dict[str, Any] = {"title": s.title, "description": s.description, "fields": fields, "missingValues": [""]}
    if s.primary_key:
        doc["primaryKey"] = list(s.primary_key)
    doc["dialect"] = {"csvddfVersion": 1.2, "delimiter": ",", "lineTerminator": eol, "quoteChar": '"',
                      "doubleQuote": True, "skipInitialSpace": False, "header": True, "encoding": "utf-8",
                      "standard": "RFC 4180"}
    doc |= {"datazones": {"objid": s.objid, "dataset": s.dataset, "rows": s.rows, "contentSha256": s.content_sha256,
                         "promotionChecks": "each field's promotionChecks were checked when the row entered the warm "
                                            "zone, with the severity given: block and quarantine rows never pass, "
                                            "warn rows and rows released by override may not meet them"}}
    return (json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n").encode()


def dublin_core(s: PackageSpec) -> bytes:
    root = el(None, "oai_dc:dc")
    sv, en = disposal_text(s.cold_action, s.dispose_after, s.basis)
    for tag, text in (("title", s.title), ("creator", s.agency_name), ("subject", s.domain),
                      ("description", s.description), ("date", s.created.astimezone(UTC).date().isoformat()),
                      ("type", "Dataset"), ("format", "text/csv"), ("identifier", s.objid),
                      ("coverage", f"{s.period_label}: {s.period_start.isoformat()}/{s.period_end.isoformat()}"),
                      ("rights", f"Sekretess enligt OSL 28 kap. 1 § till och med {s.secrecy_until} / "
                                 f"Secret under OSL ch. 28 s. 1 until {s.secrecy_until}"),
                      ("rights", f"{sv} / {en}")):
        el(root, f"dc:{tag}", text=text)
    for key, value in (("dataset", s.dataset), ("steward", s.steward), ("owner", s.owner), ("rows", str(s.rows)),
                       ("legalBasis", s.basis or ""), ("coldAction", s.cold_action),
                       ("disposeAfter", str(s.dispose_after or "")), ("disposalDecision", f"{sv} / {en}"),
                       ("secrecyUntil", s.secrecy_until.isoformat()), ("contentSha256", s.content_sha256),
                       ("agencyId", s.agency_id or "")):
        el(root, "dc:description", text=f"datazones.{key}: {value}")
    return to_xml(root)


_CSS = ("body{font-family:sans-serif;max-width:64em;margin:2em auto;color:#111}table{border-collapse:collapse;"
        "margin-bottom:1em}td,th{border:1px solid #999;padding:.25em .5em;text-align:left;vertical-align:top}"
        "code{font-size:.85em;word-break:break-all}.ok{color:#064}.fail{color:#a00;font-weight:bold}"
        "@media print{body{margin:0;max-width:none}h2{break-after:avoid}tr{break-inside:avoid}}")


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs)


def _dc(pkg: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for e in parse_xml(pkg / "metadata" / "descriptive" / "dc.xml"):
            tag, text = e.tag.rsplit("}", 1)[-1], (e.text or "").strip()
            if tag == "description" and text.startswith("datazones."):
                key, _, value = text.removeprefix("datazones.").partition(": ")
                out[key] = value
            elif tag not in out:
                out[tag] = text
    except (OSError, SyntaxError):  # ET.ParseError is a SyntaxError
        out["error"] = "dc.xml unreadable / oläslig"
    return out


def _events(pkg: Path) -> list[dict[str, Any]]:
    try:
        root = parse_xml(pkg / "metadata" / "preservation" / "premis.xml")
    except (OSError, SyntaxError) as e:
        return [{"type": "unreadable / oläslig", "datetime": "", "outcome": "failure", "detail": str(e), "agents": []}]

    def txt(parent: Any, path: str) -> str:
        return str(parent.findtext("/".join(q(f"premis:{p}") for p in path.split("/"))) or "")

    return [{"type": txt(ev, "eventType"), "datetime": txt(ev, "eventDateTime"),
             "outcome": txt(ev, "eventOutcomeInformation/eventOutcome"),
             "detail": txt(ev, "eventDetailInformation/eventDetail"),
             "agents": [f"{txt(a, 'linkingAgentIdentifierValue')} ({txt(a, 'linkingAgentRole')})"
                        for a in ev.findall(q("premis:linkingAgentIdentifier"))]}
            for ev in root.iter(q("premis:event"))]


def _bag_info(bag: Path | None) -> dict[str, str]:
    if bag is None or not (bag / "bag-info.txt").is_file():
        return {}
    lines = (bag / "bag-info.txt").read_text(encoding="utf-8").splitlines()
    return {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in lines) if v}


def _reconciled(r: dict[str, Any]) -> bool:
    if "ok" in r:
        return bool(r["ok"])
    pairs = [(r[a], r[b]) for a, b in (("warm_rows", "package_rows"),
                                       ("warm_content_sha256", "package_content_sha256")) if a in r and b in r]
    return bool(pairs) and all(x == y for x, y in pairs)


def render_receipt(pkg_dir: Path, verify: VerifyResult, validator: ValidatorResult, reconciliation: dict[str, Any],
                   status: dict[str, Any]) -> Receipt:
    pkg, bag = locate(Path(pkg_dir))
    dc, mime = _dc(pkg), {}
    try:
        mets = parse_xml(pkg / "METS.xml")
        for f in mets.iter(q("mets:file")):
            loc = f.find(q("mets:FLocat"))
            mime[loc.get(q("xlink:href"), "") if loc is not None else ""] = f.get("MIMETYPE", "")
        for m in mets.iter(q("mets:mdRef")):
            mime[m.get(q("xlink:href"), "")] = m.get("MIMETYPE", "")
        title, hdr = mets.get("LABEL", ""), mets.find(q("mets:metsHdr"))
        created = hdr.get("CREATEDATE", "") if hdr is not None else ""
    except (OSError, SyntaxError):
        title = created = ""
    by_path: dict[str, list[str]] = {}
    for p in verify.problems:
        by_path.setdefault(p.path, []).append(p.problem)
    files = [{"path": rel, "size": size, "sha256": sha, "mime": mime.get(rel, "application/xml"),
              "status": ", ".join(by_path.get(rel, [])) or "ok"} for rel, (size, sha) in verify.files.items()]
    files += [{"path": p.path, "size": None, "sha256": None, "mime": mime.get(p.path, ""), "status": p.problem}
              for p in verify.problems if p.problem == "missing"]
    bag_problems = [p for p in verify.problems if p.problem == "bag"]
    action = status.get("action") or dc.get("coldAction", "preserve")
    basis = status.get("basis") or dc.get("legalBasis") or None
    after = status.get("dispose_after") or dc.get("disposeAfter") or None
    state = status.get("state") or ("dispose_scheduled" if action == "dispose" else "preserve")
    sv, en = disposal_text(action, after, basis)
    if state == "disposed":
        sv, en = (f"Gallrad {status.get('disposed_at')} enligt {basis} (beslut {status.get('decision')})",
                  f"Disposed {status.get('disposed_at')} under {basis} (decision {status.get('decision')})")
    if status.get("holds"):
        sv, en = sv + f"; spärrad: {status['holds']}", en + f"; on legal hold: {status['holds']}"
    reconciled = _reconciled(reconciliation)
    wrong = next((p for p in verify.problems if p.problem == "identity"), None)
    reasons = [f"fel paket / wrong package: {wrong.found}, väntat / expected {wrong.expected}"] if wrong else []
    reasons += [r for ok, r in ((verify.ok, "fixitetsfel / fixity problems"),
                               (validator.available, "E-ARK-validatorn kördes inte / validator not run"),
                               (validator.valid or not validator.available, "E-ARK-valideringsfel / E-ARK errors"),
                               (reconciled, "avstämningen stämmer inte / reconciliation failed")) if not ok]
    data = {
        "kind": "datazones.transfer-receipt", "version": 1, "title": L["receipt"],
        "verdict": {"accepted": not reasons, "label": "GODKÄND / ACCEPTED" if not reasons
                    else "EJ GODKÄND / NOT ACCEPTED", "reasons": reasons},
        "package": {"objid": verify.objid or pkg.name, "title": title or dc.get("title", ""),
                    "dataset": dc.get("dataset", ""), "agency": dc.get("creator", ""),
                    "agency_id": dc.get("agencyId", ""), "period": dc.get("coverage", ""),
                    "rows": int(dc["rows"]) if dc.get("rows", "").isdigit() else None,
                    "content_sha256": dc.get("contentSha256", ""), "created": created or dc.get("date", ""),
                    "mets_sha256": verify.mets_sha256, "location": str(bag or pkg)},
        "files": files,
        "fixity": {"ok": verify.ok, "files_checked": verify.files_checked, "bytes_checked": verify.bytes_checked,
                   "seconds": round(verify.seconds, 3), "checked_at": verify.checked_at.isoformat(),
                   "problems": [vars(p) for p in verify.problems]},
        "bag": {"present": bag is not None, "ok": (not bag_problems) if bag else None, **_bag_info(bag)},
        "validator": {"available": validator.available, "valid": validator.valid, "summary": validator.summary,
                      "errors": validator.errors, "accepted_known_defects": validator.accepted,
                      "reason": validator.reason},
        "reconciliation": {**reconciliation, "ok": reconciled},
        "preservation": {"state": state, "action": action, "basis": basis, "dispose_after": after,
                         "disposed_at": status.get("disposed_at"), "decision": status.get("decision"),
                         "holds": status.get("holds"), "text_sv": sv, "text_en": en},
        "secrecy_until": dc.get("secrecyUntil", ""),
        "premis_events": _events(pkg),
    }
    return Receipt(data)


@dataclass(frozen=True)
class Receipt:
    data: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(self.data, indent=2, ensure_ascii=False, default=str) + "\n"

    def _facts(self) -> list[tuple[str, Any]]:
        d, p = self.data, self.data["package"]
        return [(L["verdict"], d["verdict"]["label"] + "".join(f" — {r}" for r in d["verdict"]["reasons"])),
                (L["objid"], p["objid"]), (L["title"], p["title"]), (L["dataset"], p["dataset"]),
                (L["agency"], f"{p['agency']} {p['agency_id']}".strip()), (L["period"], p["period"]),
                (L["rows"], p["rows"]), (L["content"], p["content_sha256"]), (L["created"], p["created"]),
                (L["mets"], p["mets_sha256"]), (L["location"], p["location"]),
                (L["preservation"], f"{d['preservation']['text_sv']} / {d['preservation']['text_en']}"),
                (L["secrecy"], f"{d['secrecy_until']} (OSL 28 kap. 1 §)")]

    def _checks(self) -> list[tuple[str, Any]]:
        d = self.data
        fx, v, b, r = d["fixity"], d["validator"], d["bag"], d["reconciliation"]
        return [(L["fixity"], f"{OK if fx['ok'] else FAIL}: {fx['files_checked']} filer/files, "
                              f"{fx['bytes_checked']} byte/bytes, {fx['seconds']} s, {fx['checked_at']}"),
                (L["bag"], "—" if not b["present"] else f"{OK if b['ok'] else FAIL}: sha256+sha512, "
                           f"Payload-Oxum {b.get('Payload-Oxum', '?')}, {b.get('Bagging-Date', '')}"),
                (L["validator"], (v["summary"] or v["reason"]) + (f"; accepted known defects: "
                                                                   f"{', '.join(v['accepted_known_defects'])}"
                                                                   if v["accepted_known_defects"] else "")),
                (L["reconciliation"], f"{OK if r['ok'] else FAIL}: " + ", ".join(
                    f"{k}={val}" for k, val in r.items() if k != "ok"))]

    def to_text(self, width: int = 100) -> str:
        d = self.data
        out = [L["receipt"], "=" * width]
        for k, v in self._facts() + self._checks():
            out += textwrap.wrap(f"{k}: {v}", width, subsequent_indent="    ", break_on_hyphens=False) or [k]
        out += ["", L["files"], "-" * width]
        for f in d["files"]:
            out.append(f"{f['path']:<{width - 30}} {f['size'] if f['size'] is not None else '-':>14} {f['status']:>14}")
            out.append(f"    sha256 {f['sha256']}  {f['mime']}")
        for title, items in ((L["problems"], [f"{p['problem']:<9} {p['path']}: expected {p['expected']}, found "
                                                f"{p['found']}" for p in d["fixity"]["problems"]]),
                             (L["events"], [f"{e['datetime']}  {e['type']}: {e['outcome']} — {e['detail']} "
                                            f"[{'; '.join(e['agents'])}]" for e in d["premis_events"]])):
            if items:
                out += ["", title, "-" * width]
                for item in items:
                    out += textwrap.wrap(item, width, subsequent_indent="    ", break_on_hyphens=False)
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        d, e = self.data, html.escape
        cls = "ok" if d["verdict"]["accepted"] else "fail"
        files = "".join(f"<tr><td><code>{e(f['path'])}</code></td><td>{f['size'] if f['size'] is not None else '—'}"
                        f"</td><td><code>{e(f['sha256'] or '—')}</code></td><td>{e(f['mime'])}</td>"
                        f"<td class=\"{'ok' if f['status'] == 'ok' else 'fail'}\">{e(f['status'])}</td></tr>"
                        for f in d["files"])
        problems = "".join(f"<tr><td>{e(p['problem'])}</td><td><code>{e(p['path'])}</code></td>"
                           f"<td><code>{e(str(p['expected']))}</code></td><td><code>{e(str(p['found']))}</code></td>"
                           f"</tr>" for p in d["fixity"]["problems"])
        events = "".join(f"<tr><td>{e(ev['datetime'])}</td><td>{e(ev['type'])}</td><td>{e(ev['outcome'])}</td>"
                         f"<td>{e(ev['detail'])}</td><td>{e('; '.join(ev['agents']))}</td></tr>"
                         for ev in d["premis_events"])
        return f"""<!DOCTYPE html>
<html lang="sv"><head><meta charset="utf-8"><title>{e(L['receipt'])} {e(d['package']['objid'])}</title>
<style>{_CSS}</style></head><body>
<h1>{e(L['receipt'])}</h1><p class="{cls}">{e(d['verdict']['label'])}</p>
<table>{_rows(self._facts())}</table>
<h2>Kontroller / Checks</h2><table>{_rows(self._checks())}</table>
<h2>{e(L['files'])}</h2><table><tr><th>Fil / File</th><th>Byte / Bytes</th><th>SHA-256</th><th>MIME</th>
<th>Status</th></tr>{files}</table>
{f'<h2>{e(L["problems"])}</h2><table>{problems}</table>' if problems else ''}
<h2>{e(L['events'])}</h2><table><tr><th>Tid / Time (UTC)</th><th>Händelse / Event</th><th>Utfall / Outcome</th>
<th>Detaljer / Detail</th><th>Agenter / Agents</th></tr>{events}</table>
</body></html>
"""
