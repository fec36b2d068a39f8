"""The simulator's generation: who the province holds and what it sends, deterministic for a seed
and valid against the contract's own models; and the pacer that spaces it out."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import date, datetime

import pytest

from shared.bureau import AccountMovement, BalanceSnapshot, PersonRegistered
from shared.envelope import CHINA_TZ
from shared.identity import is_valid_id_number
from shared.institutions import InstitutionRegistered
from shared.money import parse_yuan
from shared.regions import is_in_province
from services.binding.contract import CreateBinding
from services.settlement.contract import ChargeRefunded, ChargeSubmitted
from simulator.pacing import pace
from simulator.province import XIAN, build_province
from simulator.traffic import Traffic

TODAY = date(2026, 5, 22)
AT = datetime(2026, 5, 22, 9, 30, tzinfo=CHINA_TZ)


def province(seed: int = 13):
    return build_province("small", seed, TODAY)


def traffic(seed: int = 1, **kw) -> Traffic:
    return Traffic(province(), random.Random(seed), "T1", **kw)


def play(t: Traffic, n: int):
    return [t.next(AT) for _ in range(n)]


def test_the_same_seed_draws_the_same_province_and_another_seed_another():
    assert province(13) == province(13)
    assert province(13).people != province(14).people


def test_people_are_registered_with_valid_distinct_id_numbers_in_the_province():
    p = province()
    ids = [x.person_id for x in p.people]
    assert len(ids) == len(set(ids))
    for person in p.people:
        assert is_valid_id_number(person.person_id, today=TODAY)
        assert is_in_province(person.region)
        PersonRegistered.model_validate(person.registered())
    assert {x.scheme for x in p.people} == {"employee", "resident"}


def test_institutions_of_every_kind_in_several_cities():
    p = province()
    for inst in p.institutions:
        InstitutionRegistered.model_validate(inst.registered())
    assert {i.kind for i in p.institutions} == {"hospital", "clinic", "pharmacy"}
    assert len({i.region for i in p.institutions}) >= 4
    assert len({i.code for i in p.institutions}) == len(p.institutions)


def test_bindings_follow_the_rules_and_some_cross_regions():
    p = province()
    assert p.bindings
    for b in p.bindings:
        assert b.grantor.scheme == "employee" and b.relation in {"father", "mother", "spouse", "child"}
        assert b.grantor.person_id != b.beneficiary.person_id
        CreateBinding.model_validate(b.form(TODAY) | {"channel": "app"})
    orders: dict[str, list[int]] = {}
    for b in p.bindings:
        orders.setdefault(b.beneficiary.person_id, []).append(b.payment_order)
    assert all(len(o) <= 2 and len(set(o)) == len(o) for o in orders.values())
    assert any(b.cross_region for b in p.bindings)
    demo = p.demo_grantor()
    assert demo.region == XIAN and any(b.grantor == demo and b.cross_region for b in p.bindings)


def test_the_same_seed_plays_the_same_messages():
    assert play(traffic(5), 300) == play(traffic(5), 300)
    assert play(traffic(5), 50) != play(traffic(6), 50)


def test_charges_are_valid_and_add_up_and_come_in_every_kind():
    t = traffic()
    out = play(t, 2_000)
    kinds = Counter(o.kind for o in out)
    assert {"own", "grantor", "cash", "fraud", "credit", "local_debit", "snapshot"} <= set(kinds)
    assert kinds["own"] + kinds["grantor"] + kinds["cash"] > 0.6 * len(out)
    registered = {p.person_id: p for p in t.province.people}
    institutions = {i.code: i for i in t.province.institutions}
    charge_ids = set()
    for o in out:
        if o.event_type != "ChargeSubmitted":
            continue
        c = ChargeSubmitted.model_validate(o.payload)
        assert c.fund_paid + c.individual_borne == c.total
        assert institutions[c.institution_code].region == c.institution_region
        assert c.patient_id in registered and o.key == c.patient_id
        assert (c.code_holder_id != c.patient_id) == (o.kind == "fraud")
        charge_ids.add(c.charge_id)
    assert len(charge_ids) == sum(1 for o in out if o.event_type == "ChargeSubmitted")
    assert len({o.event_id for o in out}) == len(out)


def test_refunds_only_of_settled_charges_and_never_more_than_borne():
    t = traffic()
    assert not [o for o in play(t, 500) if o.kind == "refund"]
    charges = [o for o in play(t, 200) if o.event_type == "ChargeSubmitted" and o.kind != "fraud"]
    for o in charges:
        t.settled(o.payload | {"lines": []})
    refunds = [o for o in play(t, 1_000) if o.kind == "refund"]
    assert refunds
    by_id = {o.payload["charge_id"]: o.payload for o in charges}
    for r in refunds:
        p = ChargeRefunded.model_validate(r.payload)
        charge = by_id[p.charge_id]
        assert p.institution_code == charge["institution_code"] and r.key == charge["patient_id"]
        assert 0 < p.amount <= parse_yuan(charge["individual_borne"])
    assert len({r.payload["charge_id"] for r in refunds}) == len(refunds)  # each refunded once


def test_bureau_seq_increases_per_person_above_the_base():
    t = traffic(seq_base=1_000)
    last: dict[str, int] = {}
    for o in play(t, 3_000):
        if o.topic == "bureau.accounts":
            seq = o.payload["bureau_seq"]
            assert seq > last.get(o.key, 1_000)
            last[o.key] = seq
    assert last


def test_a_snapshot_carries_the_bureaus_book_with_the_platforms_postings_in_it():
    t = traffic()
    person = t.province.employees()[0]
    pid, opening = person.person_id, person.balance_fen
    t.posted({"person_id": pid, "direction": "debit", "amount": "12.34", "account_seq": 1})
    t.posted({"person_id": pid, "direction": "credit", "amount": "2.00", "account_seq": 2})
    t.posted({"person_id": pid, "direction": "credit", "amount": "2.00", "account_seq": 2})  # redelivered
    moved = 0
    for o in play(t, 5_000):
        if o.key != pid:
            continue
        if o.event_type == "AccountCredited":
            moved += parse_yuan(AccountMovement.model_validate(o.payload).amount)
        elif o.event_type == "AccountDebitedLocally":
            moved -= parse_yuan(o.payload["amount"])
        elif o.event_type == "BalanceSnapshot":
            s = BalanceSnapshot.model_validate(o.payload)
            assert s.postings_applied_through == 2
            assert s.balance == opening - 1234 + 200 + moved
            break
    else:
        pytest.fail("no snapshot of that account")


def test_no_snapshot_of_an_account_whose_postings_were_missed():
    t = traffic()
    pid = t.province.employees()[0].person_id
    t.posted({"person_id": pid, "direction": "debit", "amount": "1.00", "account_seq": 2})  # seq 1 never seen
    assert not [o for o in play(t, 5_000) if o.event_type == "BalanceSnapshot" and o.key == pid]


def test_no_snapshot_when_the_accounts_history_is_not_ours():
    t = traffic(books_known=False)
    assert not [o for o in play(t, 2_000) if o.event_type == "BalanceSnapshot"]


async def test_pace_sends_every_item_in_order_at_about_the_rate():
    sent: list[tuple[int, float]] = []

    async def send(i: int) -> None:
        sent.append((i, time.monotonic()))

    began = time.monotonic()
    assert await pace(range(40), 400.0, send) == 40
    assert [i for i, _ in sent] == list(range(40))
    elapsed = sent[-1][1] - began
    assert 39 / 400 - 0.01 <= elapsed < 1.0
    for n, (_, at) in enumerate(sent):  # never ahead of its due time
        assert at - began >= n / 400 - 0.005


async def test_pace_stops_on_the_event_and_after_the_duration():
    stop = asyncio.Event()
    count = 0

    async def send(_: int) -> None:
        nonlocal count
        count += 1
        if count == 5:
            stop.set()

    assert await pace(iter(int, 1), 1_000.0, send, stop=stop) == 5  # an endless source

    async def ignore(_: int) -> None:
        pass

    assert await pace(iter(int, 1), 100.0, ignore, duration=0.1) == 10  # due at 0, 10, ..., 90 ms


def test_the_tally_keeps_the_latest_sms_as_notify_published_them():
    from simulator.tally import RECENT_SMS, Tally
    from shared.launch.view import sms_line

    tally = Tally(regions={})
    for i in range(RECENT_SMS + 2):
        tally.delivery("SmsSent", {"sent_at": f"2026-11-26T10:00:0{i}+08:00", "phone": "139****5678",
                                   "recipient_role": "grantor", "template": "binding_created",
                                   "binding_id": f"BND-{i}", "ignored": "x"})
    tally.delivery("SmsFailed", {"phone": "139****0000"})
    kept = tally.as_dict()["recent_sms"]
    assert [m["binding_id"] for m in kept] == [f"BND-{i}" for i in range(2, RECENT_SMS + 2)]
    assert tally.sms == {"sent": RECENT_SMS + 2, "failed": 1}
    assert sms_line(kept[-1]) == "10:00:06 → 139****5678 (grantor) binding_created, binding BND-6"
