from __future__ import annotations

import sqlalchemy as sa

from lifecycle.ledger import EVENTS_KIND_INDEX, Ledger


def _ledger(backend: dict[str, str]) -> Ledger:
    led = Ledger(backend["ledger"])
    for i in range(5):
        led.append("test.event", dataset="d", batch_id=f"b{i}", n=i)
    return led


def test_intact_chain_verifies(backend: dict[str, str]) -> None:
    led = _ledger(backend)
    assert led.verify() == []
    assert [e["payload"]["n"] for e in led.events(dataset="d")] == [0, 1, 2, 3, 4]


def test_edited_row_is_detected(backend: dict[str, str]) -> None:
    led = _ledger(backend)
    with led.engine.begin() as c:
        c.execute(sa.text("UPDATE dz_events SET payload = :p WHERE seq = 3"), {"p": '{"n":99}'})
    problems = led.verify()
    assert [p.seq for p in problems] == [3] and "edited" in problems[0].problem


def test_deleted_row_is_detected(backend: dict[str, str]) -> None:
    led = _ledger(backend)
    with led.engine.begin() as c:
        c.execute(sa.text("DELETE FROM dz_events WHERE seq = 2"))
    problems = led.verify()
    assert problems and problems[0].seq == 3 and "gap" in problems[0].problem


def test_deleted_tail_is_detected(backend: dict[str, str]) -> None:
    led = _ledger(backend)
    with led.engine.begin() as c:
        c.execute(sa.text("DELETE FROM dz_events WHERE seq = 5"))
    assert any("deleted" in p.problem for p in led.verify())


def test_rehashed_forgery_breaks_the_next_link(backend: dict[str, str]) -> None:
    """Editing a row and recomputing its own hash still breaks the following row's prev_hash."""
    from lifecycle.ledger import chain_hash

    led = _ledger(backend)
    with led.engine.begin() as c:
        r = c.execute(sa.text("SELECT * FROM dz_events WHERE seq = 2")).one()
        h = chain_hash(r.prev_hash, r.seq, r.at, r.dataset, r.kind, r.batch_id, '{"n":42}')
        c.execute(sa.text("UPDATE dz_events SET payload = :p, hash = :h WHERE seq = 2"), {"h": h, "p": '{"n":42}'})
    assert [p.seq for p in led.verify()] == [3]


def test_a_ledger_made_before_the_event_index_gets_it_and_queries_by_kind_use_it(backend: dict[str, str]) -> None:
    led = _ledger(backend)
    with led.engine.begin() as c:
        c.execute(sa.text(f"DROP INDEX {EVENTS_KIND_INDEX}"))
    assert EVENTS_KIND_INDEX not in {ix["name"] for ix in sa.inspect(led.engine).get_indexes("dz_events")}
    again = Ledger(backend["ledger"])
    assert EVENTS_KIND_INDEX in {ix["name"] for ix in sa.inspect(again.engine).get_indexes("dz_events")}
    with again.engine.connect() as c:
        if backend["name"] == "sqlite":
            explain = "EXPLAIN QUERY PLAN "
        else:  # five rows: make PostgreSQL say whether the index serves the query at all
            explain = "EXPLAIN "
            c.execute(sa.text("SET enable_seqscan = off"))
        plan = " ".join(str(r) for r in c.execute(sa.text(
            f"{explain}SELECT * FROM dz_events WHERE kind = 'hold.added' AND dataset = 'd' ORDER BY seq")))
    assert EVENTS_KIND_INDEX in plan
    assert [e["payload"]["n"] for e in again.events(dataset="d", kind="test.event")] == [0, 1, 2, 3, 4]


def test_opening_a_ledger_does_not_wait_on_an_open_append(backend: dict[str, str]) -> None:
    """CREATE INDEX locks the table even when the index exists, and making it waits for an open append: opening a
    ledger must do neither (it looks the index up, and gives up making it while the table is busy)."""
    import threading
    import time

    led = _ledger(backend)
    if backend["name"] == "sqlite":
        return  # SQLite has one writer at a time whatever we do
    took: dict[str, float] = {}

    def open_ledger(name: str) -> None:
        t0 = time.perf_counter()
        Ledger(backend["ledger"]).engine.dispose()
        took[name] = time.perf_counter() - t0

    for missing in (False, True):
        if missing:
            with led.engine.begin() as c:
                c.execute(sa.text(f"DROP INDEX {EVENTS_KIND_INDEX}"))
        with led.engine.begin() as c:
            led.append("test.open", dataset="d", conn=c)  # an append left open while another process opens
            opener = threading.Thread(target=open_ledger, args=(str(missing),))
            opener.start()
            opener.join(timeout=3)
            waited = opener.is_alive()
        opener.join()
        assert not waited and took[str(missing)] < 2, took
    indexes = {ix["name"] for ix in sa.inspect(led.engine).get_indexes("dz_events")}
    assert EVENTS_KIND_INDEX not in indexes  # it gave up while the append was open
    Ledger(backend["ledger"])
    assert EVENTS_KIND_INDEX in {ix["name"] for ix in sa.inspect(led.engine).get_indexes("dz_events")}
