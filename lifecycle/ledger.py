"""The ledger: batches, watermarks and an append-only, hash-chained event log (SQLAlchemy Core).

Every event row stores ``hash = sha256(prev_hash || canonical(seq, at, dataset, kind, batch_id, payload))``; the
single-row ``dz_chain_head`` holds the last hash and is updated in the same transaction (row-locked on PostgreSQL,
the write lock on SQLite), which serialises appends and lets ``verify`` notice a truncated tail. ``zones ledger
verify`` recomputes the chain: an edited, inserted or deleted row breaks it at that row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

GENESIS = "0" * 64
META = sa.MetaData()

batches = sa.Table(
    "dz_batches", META,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("dataset", sa.String(64), nullable=False, index=True),
    sa.Column("transition", sa.String(16), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),  # Delta app-transaction version of this batch
    sa.Column("status", sa.String(16), nullable=False),  # started | committed | abandoned | blocked
    sa.Column("wm_from", sa.String(64)),
    sa.Column("wm_to", sa.String(64)),
    sa.Column("delta_version", sa.BigInteger),
    sa.Column("rows_read", sa.BigInteger),
    sa.Column("rows_written", sa.BigInteger),
    sa.Column("rows_quarantined", sa.BigInteger),
    sa.Column("key_id", sa.String(64)),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("detail", sa.Text),
    sa.UniqueConstraint("dataset", "transition", "seq", name="uq_dz_batches_seq"),
)

watermarks = sa.Table(
    "dz_watermarks", META,
    sa.Column("dataset", sa.String(64), primary_key=True),
    sa.Column("watermark", sa.String(64), nullable=False),
    sa.Column("batch_id", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

events = sa.Table(
    "dz_events", META,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("dataset", sa.String(64)),
    sa.Column("kind", sa.String(48), nullable=False),
    sa.Column("batch_id", sa.String(64)),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

EVENTS_KIND_INDEX = "dz_events_kind_idx"

holds = sa.Table(
    "dz_holds", META,
    sa.Column("hold_id", sa.String(32), primary_key=True),
    sa.Column("dataset", sa.String(64), nullable=False, index=True),
    sa.Column("period", sa.String(16)),
    sa.Column("case_id", sa.String(64)),
    sa.Column("person", sa.String(64)),  # HMAC pseudonym of the personnummer, never the number itself
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("set_by", sa.String(128), nullable=False),
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("review_at", sa.Date),
    sa.Column("released_at", sa.DateTime(timezone=True)),
    sa.Column("released_by", sa.String(128)),
)

packages = sa.Table(
    "dz_packages", META,
    sa.Column("package_id", sa.String(160), primary_key=True),
    sa.Column("dataset", sa.String(64), nullable=False, index=True),
    sa.Column("period", sa.String(16), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("content_sha256", sa.String(64), nullable=False),
    sa.Column("mets_sha256", sa.String(64), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # verified | disposed
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("verified_at", sa.DateTime(timezone=True)),
    sa.Column("warm_deleted_at", sa.DateTime(timezone=True)),
    sa.Column("rows_deleted", sa.BigInteger),
    sa.Column("cold_action", sa.String(16), nullable=False),
    sa.Column("dispose_after", sa.Date),
    sa.Column("basis", sa.Text),
    sa.Column("secrecy_until", sa.Date, nullable=False),
    sa.Column("last_audit_at", sa.DateTime(timezone=True)),
    sa.Column("last_audit_ok", sa.Boolean),
)

disposal_plans = sa.Table(
    "dz_disposal_plans", META,
    sa.Column("plan_id", sa.String(32), primary_key=True),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    sa.Column("planned_by", sa.String(128), nullable=False),
    sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("approved_by", sa.String(128)),
    sa.Column("approved_at", sa.DateTime(timezone=True)),
    sa.Column("executed_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String(16), nullable=False),  # planned | approved | executed
    sa.Column("packages", sa.Text, nullable=False),  # JSON list of package entries
)

# The permanent register of disposals (proof of gallring): outlives the packages, hash-chained on its own.
disposals = sa.Table(
    "dz_disposals", META,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    # one entry per package and plan: a disposal withdrawn under one plan and carried out under a later one keeps
    # both, each naming its own plan, basis and people
    sa.Column("package_id", sa.String(160), nullable=False, index=True),
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("period", sa.String(16), nullable=False),
    sa.Column("mets_sha256", sa.String(64), nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("basis", sa.Text, nullable=False),
    sa.Column("plan_id", sa.String(32), nullable=False),
    sa.Column("planned_by", sa.String(128), nullable=False),
    sa.Column("approved_by", sa.String(128), nullable=False),
    sa.Column("executed_at", sa.String(40), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # executing | disposed
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# Quality: every gate run (one row per batch) and every check of it (one row per expectation). Counts only.
gate_runs = sa.Table(
    "dz_gate_runs", META,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("dataset", sa.String(64), nullable=False, index=True),
    sa.Column("transition", sa.String(16), nullable=False),
    sa.Column("suite", sa.String(128), nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("blocked", sa.Boolean, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False),
    sa.Column("rows_quarantined", sa.BigInteger, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("result_json", sa.Text),  # the GX validation result, scrubbed of values (rebuilds Data Docs)
)

gate_results = sa.Table(
    "dz_gate_results", META,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("check_name", sa.String(255), primary_key=True),
    sa.Column("dataset", sa.String(64), nullable=False, index=True),
    sa.Column("suite", sa.String(128), nullable=False),
    sa.Column("expectation", sa.String(128), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("blocking", sa.Boolean, nullable=False),
    sa.Column("unexpected_count", sa.BigInteger, nullable=False),
    sa.Column("element_count", sa.BigInteger),
    sa.Column("mostly", sa.Float),
    sa.Column("error", sa.Text),
)

chain_head = sa.Table(
    "dz_chain_head", META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


def _canonical(seq: int, at: str, dataset: str | None, kind: str, batch_id: str | None, payload: str) -> bytes:
    return json.dumps([seq, at, dataset, kind, batch_id, payload], ensure_ascii=False,
                      separators=(",", ":")).encode()


def chain_hash(prev: str, seq: int, at: str, dataset: str | None, kind: str, batch_id: str | None,
               payload: str) -> str:
    return hashlib.sha256(prev.encode() + _canonical(seq, at, dataset, kind, batch_id, payload)).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    seq: int | None
    problem: str


def utcnow() -> datetime:
    return datetime.now(UTC)


class Ledger:
    """Ledger access. One instance per process; safe to share between sequential transitions."""

    def __init__(self, url: str) -> None:
        kw: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"timeout": 60}
        self.engine = sa.create_engine(url, **kw)
        self.url = url
        META.create_all(self.engine)
        self._index_events()
        with self.engine.begin() as c:
            if c.execute(sa.select(chain_head.c.id)).first() is None:
                try:
                    c.execute(chain_head.insert().values(id=1, seq=0, hash=GENESIS))
                except sa.exc.IntegrityError:  # a concurrent process created it
                    pass

    def _index_events(self) -> None:
        """Readers ask the log for one kind of event (holds, plans, disposals): without an index each ask reads the
        whole log. Made here, not only with the table, so ledgers created before it get it too. Looked up first:
        CREATE INDEX locks the table even when the index exists. When it must be made and another transaction is
        appending, it gives up after a moment (PostgreSQL's lock timeout) and a later open makes it: opening a
        ledger never waits on, or holds up, the appends."""
        with self.engine.connect() as c:
            if self.engine.dialect.has_index(c, "dz_events", EVENTS_KIND_INDEX):
                return
        try:
            with self.engine.begin() as c:
                if self.is_postgres:
                    c.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
                c.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {EVENTS_KIND_INDEX} ON dz_events (kind, dataset, seq)"))
        except sa.exc.DBAPIError as exc:  # busy (made by a later open), or made by another process just now
            log.info("event-log index not made now (%s); a later open makes it", type(exc.orig).__name__)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    # -- events -----------------------------------------------------------------------------------------------
    def append(self, kind: str, *, dataset: str | None = None, batch_id: str | None = None,
               conn: sa.Connection | None = None, **payload: Any) -> int:
        """Append one event to the chain (inside ``conn``'s transaction if given)."""
        if conn is None:
            with self.engine.begin() as c:
                return self.append(kind, dataset=dataset, batch_id=batch_id, conn=c, **payload)
        head = conn.execute(sa.select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1)
                            .with_for_update()).one()
        seq = int(head.seq) + 1
        at = utcnow().isoformat(timespec="microseconds")
        body = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
        h = chain_hash(head.hash, seq, at, dataset, kind, batch_id, body)
        conn.execute(events.insert().values(seq=seq, at=at, dataset=dataset, kind=kind, batch_id=batch_id,
                                            payload=body, prev_hash=head.hash, hash=h))
        conn.execute(chain_head.update().where(chain_head.c.id == 1).values(seq=seq, hash=h))
        return seq

    def events(self, *, dataset: str | None = None, kind: str | None = None) -> Iterator[dict[str, Any]]:
        q = sa.select(events).order_by(events.c.seq)
        if dataset:
            q = q.where(events.c.dataset == dataset)
        if kind:
            q = q.where(events.c.kind == kind)
        with self.engine.connect() as c:
            for r in c.execute(q):
                d = dict(r._mapping)
                d["payload"] = json.loads(d["payload"])
                yield d

    def verify(self) -> list[ChainProblem]:
        """Recompute the whole chain; return every break found (empty list = intact)."""
        problems: list[ChainProblem] = []
        prev, expected_seq = GENESIS, 1
        with self.engine.connect() as c:
            head = c.execute(sa.select(chain_head.c.seq, chain_head.c.hash)).one()
            for r in c.execute(sa.select(events).order_by(events.c.seq)).yield_per(10_000):
                if r.seq != expected_seq:
                    problems.append(ChainProblem(r.seq, f"sequence gap: expected {expected_seq}, found {r.seq} "
                                                 f"(events deleted)"))
                if r.prev_hash != prev:
                    problems.append(ChainProblem(r.seq, "prev_hash does not match the previous row (a row was "
                                                 "deleted, inserted or edited before this one)"))
                h = chain_hash(r.prev_hash, r.seq, r.at, r.dataset, r.kind, r.batch_id, r.payload)
                if h != r.hash:
                    problems.append(ChainProblem(r.seq, "hash mismatch: this row's content was edited"))
                prev, expected_seq = r.hash, r.seq + 1
            if head.seq != expected_seq - 1 or head.hash != prev:
                problems.append(ChainProblem(head.seq, f"chain head says seq {head.seq}, last row is "
                                             f"{expected_seq - 1}: rows at the end were deleted"))
        return problems

    # -- batches and watermarks --------------------------------------------------------------------------------
    def next_seq(self, dataset: str, transition: str) -> int:
        with self.engine.connect() as c:
            cur = c.execute(sa.select(sa.func.max(batches.c.seq)).where(
                batches.c.dataset == dataset, batches.c.transition == transition)).scalar()
        return int(cur or 0) + 1

    def start_batch(self, *, batch_id: str, dataset: str, transition: str, seq: int, wm_from: str | None,
                    key_id: str | None, detail: dict[str, Any] | None = None, gate: Any = None) -> None:
        """Open a batch; with ``gate`` (a GateOutcome) its gate run and checks are stored in the same transaction."""
        with self.engine.begin() as c:
            c.execute(batches.insert().values(
                batch_id=batch_id, dataset=dataset, transition=transition, seq=seq, status="started",
                wm_from=wm_from, key_id=key_id, started_at=utcnow(), detail=json.dumps(detail or {})))
            self.append(f"{transition}.started", dataset=dataset, batch_id=batch_id, conn=c, seq=seq,
                        wm_from=wm_from, key_id=key_id)
            if gate is not None:
                self._record_gate(c, batch_id, dataset, transition, gate)

    def _record_gate(self, c: sa.Connection, batch_id: str, dataset: str, transition: str, gate: Any) -> None:
        n = gate.passed.num_rows + gate.rejected.num_rows
        c.execute(gate_runs.insert().values(
            batch_id=batch_id, dataset=dataset, transition=transition, suite=gate.suite,
            success=all(ch.ok for ch in gate.checks), blocked=gate.blocked, rows=n,
            rows_quarantined=gate.rejected.num_rows, at=utcnow(),
            result_json=json.dumps(gate.result, default=str) if gate.result is not None else None))
        if gate.checks:
            c.execute(gate_results.insert(), [
                {"batch_id": batch_id, "check_name": ch.name[:255], "dataset": dataset, "suite": gate.suite,
                 "expectation": ch.type or ch.name, "severity": ch.severity, "success": ch.ok,
                 "blocking": ch.blocking,
                 "unexpected_count": ch.failed, "element_count": ch.element_count, "mostly": ch.mostly,
                 "error": ch.error} for ch in gate.checks])
        if gate.blocked:
            self.append("quality.blocked", dataset=dataset, batch_id=batch_id, conn=c, suite=gate.suite,
                        checks=gate.blocking_summary())

    def record_gate(self, batch_id: str, dataset: str, transition: str, gate: Any) -> None:
        """Store a gate run outside a promote batch (e.g. an archive pre-check); a rerun replaces it."""
        with self.engine.begin() as c:
            c.execute(gate_results.delete().where(gate_results.c.batch_id == batch_id))
            c.execute(gate_runs.delete().where(gate_runs.c.batch_id == batch_id))
            self._record_gate(c, batch_id, dataset, transition, gate)

    def gate_runs(self, dataset: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(gate_runs).order_by(gate_runs.c.at, gate_runs.c.batch_id)
        if dataset:
            q = q.where(gate_runs.c.dataset == dataset)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def gate_results(self, batch_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(
                sa.select(gate_results).where(gate_results.c.batch_id == batch_id))]

    def open_batches(self, dataset: str, transition: str) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(batches).where(
                batches.c.dataset == dataset, batches.c.transition == transition,
                batches.c.status == "started").order_by(batches.c.seq)).all()
        return [dict(r._mapping) for r in rows]

    def finish_batch(self, batch_id: str, *, status: str, dataset: str, transition: str,
                     watermark: str | None = None, advance_watermark: bool = False, **fields: Any) -> None:
        """Close a batch and (optionally) move the dataset's watermark, in one ledger transaction."""
        with self.engine.begin() as c:
            c.execute(batches.update().where(batches.c.batch_id == batch_id).values(
                status=status, finished_at=utcnow(), wm_to=watermark, **fields))
            if advance_watermark and watermark is not None:
                done = c.execute(watermarks.update().where(watermarks.c.dataset == dataset).values(
                    watermark=watermark, batch_id=batch_id, updated_at=utcnow())).rowcount
                if not done:
                    c.execute(watermarks.insert().values(dataset=dataset, watermark=watermark,
                                                         batch_id=batch_id, updated_at=utcnow()))
            if advance_watermark and watermark is not None:
                fields["advanced"] = True  # the log says which batch moved the watermark (``ledger verify``)
            self.append(f"{transition}.{status}", dataset=dataset, batch_id=batch_id, conn=c,
                        watermark=watermark, **fields)

    def adopt_batch(self, *, batch_id: str, dataset: str, transition: str, seq: int, detail: dict[str, Any]) -> None:
        """Record, in one transaction, that Delta holds batches up to ``seq`` this ledger never knew."""
        with self.engine.begin() as c:
            now = utcnow()
            c.execute(batches.insert().values(batch_id=batch_id, dataset=dataset, transition=transition, seq=seq,
                                              status="adopted", started_at=now, finished_at=now,
                                              detail=json.dumps(detail)))
            self.append(f"{transition}.adopted", dataset=dataset, batch_id=batch_id, conn=c, seq=seq, **detail)

    def reset_watermark(self, dataset: str, *, reason: str) -> None:
        """Forget the dataset's watermark (the next run is a full load), with the event that says why."""
        with self.engine.begin() as c:
            was = c.execute(sa.select(watermarks.c.watermark).where(watermarks.c.dataset == dataset)).scalar()
            c.execute(watermarks.delete().where(watermarks.c.dataset == dataset))
            self.append("promote.watermark_reset", dataset=dataset, conn=c, watermark_was=was, reason=reason)

    def batch_status(self, batch_id: str) -> str | None:
        """started | committed | abandoned | blocked, or None for a batch the ledger does not know."""
        with self.engine.connect() as c:
            return c.execute(sa.select(batches.c.status).where(batches.c.batch_id == batch_id)).scalar()

    def watermark(self, dataset: str) -> str | None:
        with self.engine.connect() as c:
            return c.execute(sa.select(watermarks.c.watermark).where(watermarks.c.dataset == dataset)).scalar()

    def last_batch(self, dataset: str, transition: str = "promote",
                   status: str | None = None) -> dict[str, Any] | None:
        q = sa.select(batches).where(batches.c.dataset == dataset, batches.c.transition == transition)
        if status:
            q = q.where(batches.c.status == status)
        with self.engine.connect() as c:
            r = c.execute(q.order_by(batches.c.seq.desc()).limit(1)).first()
        return dict(r._mapping) if r else None

    def dispose(self) -> None:
        self.engine.dispose()
