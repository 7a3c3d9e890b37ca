"""Legal holds: a hold blocks every delete and irreversible transform of what it covers, in every zone.

A hold covers a whole dataset, one business period of it, one case (through the dataset's ``case_key``) or one
person (through ``person_key``; the personnummer is stored only as its HMAC pseudonym). Archiving — a copy — still
proceeds; hot purge, warm delete and disposal skip or refuse what is held. Adding and releasing are ledger events.
Typical reasons: omprövning/överklagande pending, återkrav or bidragsbrott case, a request for a public document,
supervision (IMY, JO, Riksarkivet).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from lifecycle.ledger import Ledger, holds, utcnow
from lifecycle.protect import Keys, pseudonymise
from zones.config import Project
from zones.errors import ConfigError, TerminalError
from zones.personnummer import normalise


@dataclass(frozen=True)
class Hold:
    hold_id: str
    dataset: str
    period: str | None
    case_id: str | None
    person: str | None
    reason: str
    set_by: str
    set_at: Any
    review_at: date | None
    released_at: Any
    released_by: str | None

    @property
    def scope(self) -> str:
        parts = [self.dataset]
        if self.period:
            parts.append(f"period {self.period}")
        if self.case_id:
            parts.append(f"case {self.case_id}")
        if self.person:
            parts.append(f"person {self.person[:12]}…")
        return ", ".join(parts)


def person_pseudonym(pnr: str, keys: Keys) -> str:
    try:
        twelve = normalise(pnr)
    except ValueError as exc:
        raise ConfigError(f"--person is not a valid personnummer or samordningsnummer: {exc}",
                          fix="give 12 digits (YYYYMMDDNNNC) or YYMMDD-NNNC") from None
    return str(pseudonymise(pa.array([twelve]), keys.pseudonym_key)[0].as_py())


def add(project: Project, ledger: Ledger, *, dataset: str, reason: str, by: str, keys: Keys | None = None,
        period: str | None = None, case: str | None = None, person: str | None = None,
        review_at: date | None = None) -> Hold:
    ds = project.dataset(dataset)
    if case and not ds.case_key:
        raise ConfigError(f"dataset {dataset!r} declares no case_key, so a case hold cannot find its rows",
                          key_path=f"datasets.{dataset}.case_key", fix="declare case_key: <column> in zones.yaml")
    if person and not ds.person_key:
        raise ConfigError(f"dataset {dataset!r} declares no person_key, so a person hold cannot find its rows",
                          key_path=f"datasets.{dataset}.person_key", fix="declare person_key: <column>")
    if not reason.strip() or not by.strip():
        raise TerminalError("a hold needs a reason and who sets it (--reason, --by)")
    if period is not None:  # matched by equality with the packages' period labels: a wrong form would hold nothing
        form, pattern = ("YYYY", r"\d{4}") if ds.archive.period == "year" else ("YYYY-MM", r"\d{4}-(0[1-9]|1[0-2])")
        if not re.fullmatch(pattern, period):
            raise ConfigError(f"--period {period!r} does not name a {ds.archive.period} of {dataset!r}, which is "
                              f"archived one package per {ds.archive.period}: it would hold nothing",
                              key_path=f"datasets.{dataset}.archive.period", fix=f"give the period as {form}")
    pseud = None
    if person:
        if keys is None:
            from lifecycle.protect import load_keys

            keys = load_keys(need_seal=False)
        pseud = person_pseudonym(person, keys)
    hold_id = "H-" + secrets.token_hex(4)
    row = {"hold_id": hold_id, "dataset": dataset, "period": period, "case_id": case, "person": pseud,
           "reason": reason, "set_by": by, "set_at": utcnow(), "review_at": review_at}
    with ledger.engine.begin() as c:
        c.execute(holds.insert().values(**row))
        ledger.append("hold.added", dataset=dataset, conn=c, hold_id=hold_id, period=period, case=case,
                      person=pseud, reason=reason, by=by)
    return Hold(**row, released_at=None, released_by=None)  # type: ignore[arg-type]


def release(ledger: Ledger, hold_id: str, *, by: str) -> Hold:
    in_log = {h.hold_id: h for h in _logged_only(ledger, None, set())}  # active by the log, whatever the table
    with ledger.engine.begin() as c:
        r = c.execute(sa.select(holds).where(holds.c.hold_id == hold_id)).first()
        if r is None and hold_id in in_log:  # its row was deleted behind the tool: restore it from the log
            h = in_log[hold_id]
            c.execute(holds.insert().values(hold_id=h.hold_id, dataset=h.dataset, period=h.period, case_id=h.case_id,
                                            person=h.person, reason=h.reason, set_by=h.set_by,
                                            set_at=datetime.fromisoformat(str(h.set_at)), review_at=None))
            r = c.execute(sa.select(holds).where(holds.c.hold_id == hold_id)).one()
        if r is None:
            raise TerminalError(f"no hold {hold_id!r}; `zones hold list` shows the active ones")
        if r.released_at is not None and hold_id not in in_log:
            raise TerminalError(f"hold {hold_id} was already released by {r.released_by} at {r.released_at}")
        c.execute(holds.update().where(holds.c.hold_id == hold_id).values(released_at=utcnow(), released_by=by))
        ledger.append("hold.released", dataset=r.dataset, conn=c, hold_id=hold_id, by=by)
        r = c.execute(sa.select(holds).where(holds.c.hold_id == hold_id)).one()
    return Hold(**dict(r._mapping))


def active(ledger: Ledger, dataset: str | None = None, *, include_released: bool = False) -> list[Hold]:
    q = sa.select(holds).order_by(holds.c.set_at)
    if dataset:
        q = q.where(holds.c.dataset == dataset)
    if not include_released:
        q = q.where(holds.c.released_at.is_(None))
    with ledger.engine.connect() as c:
        found = [Hold(**dict(r._mapping)) for r in c.execute(q)]
    if include_released:
        return found
    return found + _logged_only(ledger, dataset, {h.hold_id for h in found})


def _logged_only(ledger: Ledger, dataset: str | None, known: set[str]) -> list[Hold]:
    """Holds the chained log says are active whose row is missing or says released: a hold deleted or released
    behind the tool's back still holds (fail safe; ``zones ledger verify`` reports the disagreement)."""
    released = {e["payload"].get("hold_id") for e in ledger.events(dataset=dataset, kind="hold.released")}
    out = []
    for e in ledger.events(dataset=dataset, kind="hold.added"):
        p = e["payload"]
        if p.get("hold_id") in known or p.get("hold_id") in released:
            continue
        out.append(Hold(hold_id=p["hold_id"], dataset=e["dataset"], period=p.get("period"), case_id=p.get("case"),
                        person=p.get("person"), reason=p.get("reason", ""), set_by=p.get("by", ""), set_at=e["at"],
                        review_at=None, released_at=None, released_by=None))
    return out


def period_label(values: pa.Array | pa.ChunkedArray, period: str) -> pa.Array | pa.ChunkedArray:
    if period == "year":  # pc.year is ~20x faster than strftime
        return pc.cast(pc.year(values), pa.string())
    return pc.strftime(values, format="%Y-%m")


def held_mask(project: Project, dataset: str, rows: pa.Table, hold_list: list[Hold], *,
              person_keys: dict[str, pa.Array] | None = None) -> pa.Array:
    """True for every row a hold covers. ``rows`` has the dataset's business date, case_key and person_key
    columns as that zone stores them; ``person_keys`` maps a person pseudonym to that zone's person-key values."""
    ds = project.dataset(dataset)
    mask = pa.repeat(False, rows.num_rows)
    for h in hold_list:
        if h.dataset != dataset:
            continue
        m = pa.repeat(True, rows.num_rows)
        if h.period:
            m = pc.and_(m, pc.equal(period_label(rows.column(ds.business_date), ds.archive.period), h.period))
        if h.case_id and ds.case_key:
            m = pc.and_(m, pc.equal(pc.cast(rows.column(ds.case_key), pa.string()), h.case_id))
        if h.person and ds.person_key:
            keys = (person_keys or {}).get(h.person)
            if keys is None or len(keys) == 0:
                m = pa.repeat(False, rows.num_rows)
            else:
                col = rows.column(ds.person_key)
                m = pc.and_(m, pc.is_in(col, value_set=pc.cast(keys, col.type)))
        mask = pc.or_(mask, pc.fill_null(m, False))
    return mask


def resolve_people(project: Project, hold_list: list[Hold], keys: Keys, *, zone: str,
                   chunk: int = 250_000) -> dict[str, pa.Array]:
    """Map each person hold to that zone's person-key values (raw in hot and cold, pseudonymised in warm).

    A hold names its person by the pseudonym under the key current when it was set; after a key rotation warm
    holds the person's rows under the old key, the new one, or both. So the person is found in hot under every
    key in use (current and retired), and in warm by their pseudonyms under every key."""
    wanted = {h.person for h in hold_list if h.person}
    if not wanted or project.config.persons is None:
        return {}
    p = project.config.persons
    every = [keys.pseudonym_key, *(k for k in dict.fromkeys(keys.retired_pseudonym_keys) if k != keys.pseudonym_key)]
    from zones.hot import HotReader, make_engine, reflect

    pds = project.dataset(p.dataset)
    targets = pa.array(sorted(wanted), pa.string())
    # Pseudonyms are one-way: every person in hot is pseudonymised under every key and compared. Streamed in
    # chunks, keeping only the matches, so memory does not grow with the population.
    values_parts: list[pa.Array] = []
    value_type = pa.null()
    pseud_parts: list[list[pa.Array]] = [[] for _ in every]
    eng = make_engine(project.hot_url)
    reader: HotReader | None = None
    try:
        reader = HotReader(eng, reflect(eng, pds.table, pds.schema_ or project.config.hot.schema_),
                           key=[p.key], watermark=pds.watermark)
        for part in reader.scan([p.identifier, p.key], chunk=chunk):
            idents = pc.cast(part.column(0).combine_chunks(), pa.string())
            value_type = part.column(1).type
            pseuds = [pseudonymise(idents, k).cast(pa.string()) for k in every]
            hit = pa.repeat(False, part.num_rows)
            for ps in pseuds:
                hit = pc.or_(hit, pc.is_in(ps, value_set=targets))
            if not pc.any(hit).as_py():
                continue
            values_parts.append(part.column(1).combine_chunks().filter(hit))
            for i, ps in enumerate(pseuds):
                pseud_parts[i].append(ps.filter(hit))
    finally:
        if reader is not None:
            reader.close()
        eng.dispose()
    values = pa.concat_arrays(values_parts) if values_parts else pa.array([], value_type)
    pseuds = [pa.concat_arrays(ps) if ps else pa.array([], pa.string()) for ps in pseud_parts]
    found = {w: pa.repeat(False, len(values)) for w in wanted}
    for ps in pseuds:
        for w in wanted:
            found[w] = pc.or_(found[w], pc.equal(ps, w))
    if zone != "warm":
        return {w: values.filter(m) for w, m in found.items()}
    from lifecycle.warm import WarmTable

    names = {w: pa.array(sorted({w, *(str(v) for ps in pseuds for v in ps.filter(m).to_pylist())}), pa.string())
             for w, m in found.items()}
    every_name = pa.array(sorted({n for ns in names.values() for n in ns.to_pylist()}), pa.string())
    # filtered in memory, not pushed into the scan: warm keeps no statistics for pseudonymised columns, and
    # a pushed-down filter on such a column skips every file
    t = WarmTable(project.warm_table_uri(p.dataset), project.storage_options("warm")).to_arrow(
        columns=[p.identifier, p.key])
    if t.num_columns:
        t = t.filter(pc.is_in(t.column(p.identifier), value_set=every_name))
    out = {}
    for w, m in found.items():
        # rows promoted under any key: the person's key pseudonymised under every key, and whatever warm's person
        # table holds for the person's identifier under any key (the hold's own pseudonym if hot lost them)
        raw = values.filter(m)
        in_warm = t.column(p.key).filter(pc.is_in(t.column(p.identifier), value_set=names[w])) if t.num_columns \
            else pa.chunked_array([], pa.string())
        keyed = [pseudonymise(raw, k).cast(pa.string()) for k in every] if len(raw) else []
        out[w] = pc.unique(pa.chunked_array([*in_warm.cast(pa.string()).chunks, *keyed], pa.string())
                           .combine_chunks())
    return out
