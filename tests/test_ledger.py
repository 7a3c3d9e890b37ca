from __future__ import annotations

import sqlalchemy as sa

from lifecycle.ledger import Ledger


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
