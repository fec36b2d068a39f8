"""The HIS ledger (stl:ild, storage/ledger.lua) as the settlement Functions write it, in the same
atomic step as the money moves, called directly against a real Valkey server: a charge settled
plainly or from its held quote, a refund and an upheld dispute's reversal each add one entry and
the day's totals once, however often they are applied again; and the upgrade's `ledger_record`
reads the published outcomes into the same entries."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from shared.kafka import Received
from services.settlement import outcomes
from services.settlement.domain.lines import Line
from services.settlement.metrics import ReconciliationMetrics
from services.settlement.storage.accounts import Reversal
from services.settlement.storage.ledger import LedgerStore
from services.settlement.usecases.his_reconciliation import Ledger
from tests.ledger_calls import BAOJI, HOSPITAL, REFUND_AT, XIAN, bind, charge, new_person, refund

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_store")]

DAY, REFUND_DAY = "20260601", "20260602"  # China dates of ledger_calls' AT and REFUND_AT
T0 = 1_780_000_000_000  # the platform's clock, epoch ms
HOLD_MS = 15 * 60_000    # SettlementStore's default hold


class Family:
    """A patient (a resident, or with an own account) with grantor 1 (Xi'an) and grantor 2 (Baoji)."""

    async def make(self, store, client, first=10_000, second=10_000, own: int | None = None) -> Family:
        self.patient, self.father, self.sister = new_person(), new_person(), new_person()
        await store.register([(self.patient, XIAN, "r" if own is None else "e", own),
                              (self.father, XIAN, "e", first), (self.sister, BAOJI, "e", second)])
        await bind(client, self.patient, self.father, 1, XIAN)
        await bind(client, self.patient, self.sister, 2, BAOJI)
        return self


def quote_of(c):
    return replace(c, event_id=str(uuid.uuid4()), op="Q", quote_id=f"Q-{c.charge_id}")


async def entries(client, day: str = DAY) -> dict[str, str]:
    raw = await client.hgetall(f"stl:ild:{HOSPITAL}:{day}")
    return {k.decode(): v.decode() for k, v in raw.items()}


def totals(book: dict[str, str]) -> dict[str, int]:
    return {k[2:]: int(v) for k, v in book.items() if k.startswith("t:")}


async def test_a_settled_charge_is_in_the_ledger_once_with_its_four_columns(store, client):
    f = await Family().make(store, client, first=6_000, second=1_000, own=2_000)
    c = charge(f.patient, 10_000)
    [applied] = await store.settle([c])
    assert [(x.source, x.amount) for x in applied.lines] == [("own", 2_000), ("grantor", 6_000), ("grantor", 1_000),
                                                            ("cash", 1_000)]
    book = await entries(client)
    assert book[f"c:{c.charge_id}"] == "10000|2000|7000|1000"
    assert totals(book) == {"charges": 1, "borne": 10_000, "own": 2_000, "family": 7_000, "cash": 1_000}

    [again] = await store.settle([c])  # redelivered: answered from its record, counted once
    assert again.replay and await entries(client) == book
    assert await client.ttl(f"stl:ild:{HOSPITAL}:{DAY}") > 0


async def test_a_refused_charge_leaves_no_entry(store, client):
    c = charge(new_person(), 1_000)  # nobody registered
    [refused] = await store.settle([c])
    assert refused.status == "REJECTED" and await entries(client) == {}


async def test_a_held_quote_enters_the_ledger_only_when_it_is_settled(store, client):
    f = await Family().make(store, client, first=3_000)
    c = charge(f.patient, 5_000)
    [q] = await store.settle([quote_of(c)], now_ms=T0)
    assert q.status == "QUOTED" and await entries(client) == {}
    [posted] = await store.settle([replace(c, event_id=str(uuid.uuid4()), quote_id=q.quote_id)],
                                  now_ms=T0 + HOLD_MS // 2)
    assert posted.status == "SETTLED"
    book = await entries(client)
    assert book[f"c:{c.charge_id}"] == "5000|0|5000|0"
    assert totals(book)["charges"] == 1


async def test_refunds_and_a_reversal_enter_the_day_they_are_made_once(store, client):
    f = await Family().make(store, client, first=3_000, second=3_000)
    c = charge(f.patient, 5_000)
    await store.settle([c])
    r = refund(c.charge_id, 500, refund_id="R1")
    [done] = await store.refund([r])
    assert done.status == "REFUNDED"
    [done_again] = await store.refund([r])
    assert done_again.replay
    [reversed_] = await store.reverse([Reversal("DSP-1", HOSPITAL, c.charge_id, f.father, "", REFUND_AT)])
    assert (reversed_.paid, reversed_.refunded_before) == (3_000, 0)  # the refund came off grantor 2's line
    await store.reverse([Reversal("DSP-1", HOSPITAL, c.charge_id, f.father, "", REFUND_AT)])

    book = await entries(client, REFUND_DAY)
    assert (book[f"r:{c.charge_id}:R1"], book[f"v:{c.charge_id}:DSP-1"]) == ("500", "3000")
    assert totals(book) == {"refunds": 1, "refunded": 500, "reversals": 1, "reversed": 3_000}
    assert totals(await entries(client)) == {"charges": 1, "borne": 5_000, "own": 0, "family": 5_000, "cash": 0}


async def test_the_upgrades_drain_reads_published_outcomes_into_the_same_entries(store, client):
    f = await Family().make(store, client, first=3_000, second=3_000)
    settled = charge(f.patient, 4_000)
    [applied] = await store.settle([settled])
    before = await entries(client)
    ledger = Ledger(LedgerStore(client, ledger_ttl=3600, report_ttl=3600), broker=None,  # type: ignore[arg-type]
                    keep_days=30, metrics=ReconciliationMetrics(CollectorRegistry()))
    value = outcomes.charge_settled(HOSPITAL, settled.charge_id, f.patient, 4_000, applied.at, applied.lines,
                                    settled.settled_at)
    other = charge(f.patient, 100)  # settled by the retired release: published, never in the ledger
    missed = outcomes.charge_settled(HOSPITAL, other.charge_id, f.patient, 100, other.settled_at, [Line("cash", 100)],
                                     other.settled_at)
    await ledger.project([Received("settlement.results", 0, n, None, v, {}) for n, v in enumerate((value, missed))])

    book = await entries(client)
    # the Function's entry read again from its outcome: the same, counted once; the missed one added
    assert book[f"c:{settled.charge_id}"] == before[f"c:{settled.charge_id}"] == "4000|0|4000|0"
    assert book[f"c:{other.charge_id}"] == "100|0|0|100"
    assert totals(book) == {"charges": 2, "borne": 4_100, "own": 0, "family": 4_000, "cash": 100}
