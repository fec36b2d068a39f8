"""The settlement Redis Functions (storage/settlement.lua) against a real Valkey server.

Calls the Functions directly through SettlementStore, with accounts made by `register_person`
and payer-index entries written as the binding service writes them (shared/binding_index.py).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, replace
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from tests.oracle.waterfall import Account, Line, named_refund_plan, refund_plan, split
from services.settlement.storage.accounts import (ChargeToSettle, InstitutionRegistration, Movement, PersonState,
                                                  Registration, Reversal, SettlementStore, Transfer)
from shared.binding_index import Payer, decode_payers, encode_payer, in_force, payers_in_force, payers_key
from shared.state import person_bucket
from tests.ledger_calls import (AT, BAOJI, BEIJING, DAY, HOSPITAL, PROVINCES, REFUND_AT, XIAN, bind, bureau_movements,
                                charge, make_store, new_person, refund)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_store")]


class Family:
    """A patient with an own account and two grantors: order 1 in Xi'an, order 2 in Baoji."""

    def __init__(self, own: int | None, first: int, second: int):
        self.patient, self.father, self.sister = new_person(), new_person(), new_person()
        self.own, self.first, self.second = own, first, second

    async def register(self, store: SettlementStore, client: Redis) -> Family:
        await store.register([(self.patient, XIAN, "e" if self.own is not None else "r", self.own),
                              (self.father, XIAN, "e", self.first), (self.sister, BAOJI, "e", self.second)])
        # Order 2 is written first: the Function must sort by payment order, not index order.
        await bind(client, self.patient, self.sister, 2, BAOJI)
        await bind(client, self.patient, self.father, 1, XIAN)
        return self


def summary(lines: list[Line]) -> list[tuple]:
    return [(l.source, l.person_id, l.payment_order, l.amount, l.balance_after) for l in lines]


# --- settle ----------------------------------------------------------------------------------

async def test_settle_pays_own_then_grantor_1_then_grantor_2_then_cash(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)

    [applied] = await store.settle([charge(f.patient, 10_000)])

    assert applied.status == "SETTLED" and not applied.replay and applied.at == AT
    assert summary(applied.lines) == [("own", f.patient, None, 1_000, 0), ("grantor", f.father, 1, 2_000, 0),
                                      ("grantor", f.sister, 2, 3_000, 0), ("cash", None, None, 4_000, None)]
    assert [l.region for l in applied.lines] == [XIAN, XIAN, BAOJI, None]
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 0, 0]


async def test_settle_stops_at_the_first_grantor_that_covers_the_rest(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)

    [applied] = await store.settle([charge(f.patient, 4_500)])

    assert summary(applied.lines) == [("own", f.patient, None, 1_000, 0), ("grantor", f.father, 1, 2_000, 0),
                                      ("grantor", f.sister, 2, 1_500, 1_500), ("cash", None, None, 0, None)]
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 0, 1_500]
    [spent] = await store.spending(f.sister)
    assert (int(spent.day.strftime("%Y%m%d")), spent.beneficiary_id, spent.paid, spent.refunded, spent.settled_at) == (
        DAY, f.patient, 1_500, 0, AT)


async def test_a_resident_patient_is_paid_for_by_grantors_from_the_first_fen(store, client):
    f = await Family(own=None, first=2_000, second=3_000).register(store, client)

    [applied] = await store.settle([charge(f.patient, 2_500)])

    assert summary(applied.lines) == [("grantor", f.father, 1, 2_000, 0), ("grantor", f.sister, 2, 500, 2_500),
                                      ("cash", None, None, 0, None)]
    assert await store.balance(f.patient) == 0


async def test_a_payer_index_entry_that_does_not_cover_the_charge_day_is_ignored(store, client):
    patient, future, past, current = new_person(), new_person(), new_person(), new_person()
    await store.register([(patient, XIAN, "r", None), (future, XIAN, "e", 5_000), (past, XIAN, "e", 5_000),
                          (current, BAOJI, "e", 5_000)])
    await bind(client, patient, future, 1, XIAN, start=DAY + 1, end=20261231)
    await bind(client, patient, past, 1, XIAN, start=20250101, end=DAY - 1)
    await bind(client, patient, current, 2, BAOJI, start=DAY, end=DAY)

    [applied] = await store.settle([charge(patient, 3_000)])

    assert summary(applied.lines) == [("grantor", current, 2, 3_000, 2_000), ("cash", None, None, 0, None)]
    assert [await store.balance(p) for p in (future, past, current)] == [5_000, 5_000, 2_000]


async def test_the_same_charge_settled_twice_debits_once_and_replays_the_same_lines(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    first = charge(f.patient, 2_500, digest="same")
    again = charge(f.patient, 2_500, charge_id=first.charge_id, digest="same")

    [one] = await store.settle([first])
    [two] = await store.settle([again])

    assert one.status == two.status == "SETTLED"
    assert (one.replay, two.replay) == (False, True)
    assert two.lines == one.lines and two.at == one.at
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 500, 3_000]


async def test_the_same_charge_id_with_another_digest_is_a_conflict(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    first = charge(f.patient, 2_500, digest="original")
    [one] = await store.settle([first])

    [two] = await store.settle([charge(f.patient, 9_999, charge_id=first.charge_id, digest="tampered")])

    assert one.status == "SETTLED" and two.status == "CONFLICT"
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 500, 3_000]


async def test_an_unknown_patient_is_refused_but_not_for_good(store, client):
    patient = new_person()
    event = charge(patient, 1_000)
    [first] = await store.settle([event])
    assert (first.status, first.reason) == ("REJECTED", "UNKNOWN_PATIENT")
    assert not await client.exists(f"stl:rej:{HOSPITAL}:{event.event_id}")

    await store.register([(patient, XIAN, "e", 5_000)])
    [again] = await store.settle([event])  # the same message, redelivered once the registration landed

    assert again.status == "SETTLED"
    assert await store.balance(patient) == 4_000


async def test_a_charge_for_a_patient_insured_outside_the_province_is_rejected(store, client):
    patient = new_person()
    await store.register([(patient, BEIJING, "e", 5_000)])

    [applied] = await store.settle([charge(patient, 1_000)])

    assert (applied.status, applied.reason) == ("REJECTED", "OUTSIDE_PROVINCE")
    assert await store.balance(patient) == 5_000


async def test_a_recorded_refusal_stays_when_the_same_message_comes_again(store, client):
    patient = new_person()
    await store.register([(patient, BEIJING, "e", 5_000)])
    event = charge(patient, 1_000)
    [first] = await store.settle([event])
    await store.register([(patient, XIAN, "e", 5_000)])

    [again] = await store.settle([event])

    assert first.reason == again.reason == "OUTSIDE_PROVINCE"
    assert await store.balance(patient) == 5_000


async def test_a_charge_from_an_undesignated_institution_is_refused_until_it_is_registered(store, client):
    patient = new_person()
    await store.register([(patient, XIAN, "e", 5_000)])
    event = charge(patient, 1_000, institution="H-unregistered", institution_region=XIAN)

    [first] = await store.settle([event])
    await store.register_institutions([("H-unregistered", XIAN, "clinic")])
    [again] = await store.settle([event])

    assert (first.status, first.reason) == ("REJECTED", "UNKNOWN_INSTITUTION")
    assert again.status == "SETTLED"
    assert await store.balance(patient) == 4_000


async def test_an_institution_never_moves_region_and_only_its_bureau_changes_its_keys(store, client):
    """A charge naming another region than the institution's is refused, and no registration moves
    it there: one signed by the other region's bureau changes nothing (NOT_SIGNERS); its own
    region's bureau replaces its key list."""
    patient = new_person()
    await store.register([(patient, XIAN, "e", 5_000)])
    event = charge(patient, 1_000, institution_region=BAOJI)
    keys = [{"key_id": f"his:{HOSPITAL}:k2", "public_key": "A" * 44}]
    moved, kept = await store.institutions_registered([
        InstitutionRegistration(HOSPITAL, BAOJI, "clinic", keys, BAOJI),
        InstitutionRegistration(HOSPITAL, XIAN, "clinic", keys, XIAN)])
    [refused] = await store.settle([event])

    assert (moved, kept) == ("NOT_SIGNERS", "OK")
    assert (refused.status, refused.reason) == ("REJECTED", "UNKNOWN_INSTITUTION")
    assert await client.hget("stl:inst", HOSPITAL) == f"{XIAN}|clinic".encode()
    assert json.loads(await client.hget("stl:ikeys", HOSPITAL)) == {"region": XIAN, "keys": keys}


async def test_a_transfer_lasts_until_the_region_it_names_registers_the_person(store, client):
    """stl:moving (contract version 3): the region a person's own bureau let register him; a
    registration by his own region keeps it, the one by that region ends it. Events of one batch
    apply in their order."""
    person, other = new_person(), new_person()
    await store.bureau_events([Registration(person, XIAN, "e", 5_000), Transfer(person, BAOJI),
                               Registration(person, XIAN, "e", 5_000)])
    assert await store.people([person, other]) == {person: PersonState(XIAN, BAOJI), other: PersonState(None, None)}
    await store.bureau_events([Registration(person, BAOJI, "e", 0)])
    assert await store.people([person]) == {person: PersonState(BAOJI, None)}
    assert await store.balance(person) == 5_000  # the account moves with him: the platform's balance is kept


async def test_two_institutions_may_use_the_same_charge_id(store, client):
    await store.register_institutions([("H2", XIAN, "pharmacy")])
    patient = new_person()
    await store.register([(patient, XIAN, "e", 5_000)])

    [one] = await store.settle([charge(patient, 1_000, charge_id="C-1", digest="a")])
    [two] = await store.settle([charge(patient, 700, charge_id="C-1", digest="b", institution="H2")])

    assert (one.status, one.replay, two.status, two.replay) == ("SETTLED", False, "SETTLED", False)
    assert await store.balance(patient) == 3_300
    [wrong] = await store.refund([refund("C-1", 700, institution="H3")])
    assert (wrong.status, wrong.reason) == ("REJECTED", "UNKNOWN_CHARGE")
    [right] = await store.refund([refund("C-1", 700, institution="H2")])
    assert right.status == "REFUNDED"
    assert await store.balance(patient) == 4_000


async def test_postings_number_each_account_one_two_three_across_charges_and_refunds(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    first = charge(f.patient, 2_500)      # own 1000 (seq 1), father 1500 (seq 1)
    [a] = await store.settle([first])
    [b] = await store.refund([refund(first.charge_id, 2_000)])  # father 1500 back (2), own 500 back (2)
    [c] = await store.settle([charge(f.patient, 4_000)])        # own 500 (3), father 2000 (3), sister 1500 (1)
    [d] = await store.settle([charge(f.patient, 4_000, charge_id=first.charge_id, digest="digest-1")])  # replay

    def seqs(applied):
        return [(l.person_id, l.account_seq) for l in applied.lines if l.source != "cash"]
    assert seqs(a) == [(f.patient, 1), (f.father, 1)]
    assert seqs(b) == [(f.patient, 2), (f.father, 2)]
    assert seqs(c) == [(f.patient, 3), (f.father, 3), (f.sister, 1)]
    assert d.replay and seqs(d) == seqs(a)
    assert [await store.account_seq(p) for p in (f.patient, f.father, f.sister)] == [3, 3, 1]


async def test_refund_postings_are_dated_by_the_platform_clock(store, client):
    patient = new_person()
    await store.register([(patient, XIAN, "e", 5_000)])
    paid = charge(patient, 1_000)
    await store.settle([paid])
    [back] = await store.refund([refund(paid.charge_id, 400, refund_id="R1")])

    assert back.at == REFUND_AT
    posted = await store.postings_of(XIAN, "20260602")
    assert posted == {f"R:{HOSPITAL}:{paid.charge_id}:R1:0": ("credit", 400, patient)}


# --- refund ----------------------------------------------------------------------------------

async def test_partial_refunds_give_back_cash_then_grantor_2_then_grantor_1_then_the_own_account(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    paid = charge(f.patient, 10_000)
    await store.settle([paid])  # own 1000, grantor 1 2000, grantor 2 3000, cash 4000

    [first] = await store.refund([refund(paid.charge_id, 5_000)])
    assert first.status == "REFUNDED" and not first.replay
    assert summary(first.lines) == [("grantor", f.sister, 2, 1_000, 1_000), ("cash", None, None, 4_000, None)]
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 0, 1_000]

    [second] = await store.refund([refund(paid.charge_id, 4_500)])
    assert summary(second.lines) == [("own", f.patient, None, 500, 500), ("grantor", f.father, 1, 2_000, 2_000),
                                     ("grantor", f.sister, 2, 2_000, 3_000)]
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [500, 2_000, 3_000]
    [spent] = await store.spending(f.father)
    paid_by_father, back_to_father = spent.paid, spent.refunded
    assert (paid_by_father, back_to_father) == (2_000, 2_000)


async def test_a_refund_above_what_remains_is_rejected(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    paid = charge(f.patient, 10_000)
    await store.settle([paid])
    await store.refund([refund(paid.charge_id, 9_000)])

    [applied] = await store.refund([refund(paid.charge_id, 1_001)])

    assert (applied.status, applied.reason) == ("REJECTED", "REFUND_EXCEEDS_PAID")
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 2_000, 3_000]
    [rest] = await store.refund([refund(paid.charge_id, 1_000)])
    assert summary(rest.lines) == [("own", f.patient, None, 1_000, 1_000)]


async def test_a_refund_naming_its_lines_returns_exactly_those(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    paid = charge(f.patient, 10_000)
    await store.settle([paid])  # own 1000, grantor 1 2000, grantor 2 3000, cash 4000

    [named] = await store.refund([refund(paid.charge_id, 2_500, lines="grantor_1:2000,own:500")])

    assert summary(named.lines) == [("own", f.patient, None, 500, 500), ("grantor", f.father, 1, 2_000, 2_000)]
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [500, 2_000, 0]
    # without lines, last paid first, of what is left: cash
    [plain] = await store.refund([refund(paid.charge_id, 4_000)])
    assert summary(plain.lines) == [("cash", None, None, 4_000, None)]


@pytest.mark.parametrize("named", ["grantor_1:2001", "grantor_2:3000,own:1001", "cash:4001"])
async def test_a_named_line_above_what_that_payer_has_left_is_refused(store, client, named):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    paid = charge(f.patient, 10_000)
    await store.settle([paid])
    amount = sum(int(x.split(":")[1]) for x in named.split(","))

    [applied] = await store.refund([refund(paid.charge_id, amount, lines=named)])

    assert (applied.status, applied.reason) == ("REJECTED", "REFUND_EXCEEDS_PAID")
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 0, 0]


async def test_a_named_payer_the_charge_has_not_is_refused(store, client):
    f = await Family(own=1_000, first=5_000, second=3_000).register(store, client)
    paid = charge(f.patient, 3_000)  # own 1000, grantor 1 2000: grantor 2 paid nothing
    await store.settle([paid])

    [applied] = await store.refund([refund(paid.charge_id, 100, lines="grantor_2:100")])

    assert (applied.status, applied.reason) == ("REJECTED", "REFUND_EXCEEDS_PAID")


# --- upheld disputes (issue 21) ----------------------------------------------------------------

def reversal(paid: ChargeToSettle, grantor: str, dispute_id: str = "DSP-1", at: str = REFUND_AT) -> Reversal:
    return Reversal(dispute_id, paid.institution_code, paid.charge_id, grantor, "", at)


async def test_an_upheld_dispute_gives_back_what_refunds_left_of_the_line_once(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    paid = charge(f.patient, 10_000)
    await store.settle([paid])
    await store.refund([refund(paid.charge_id, 500, lines="grantor_1:500")])

    [done] = await store.reverse([reversal(paid, f.father)])

    assert (done.status, done.paid, done.refunded_before, done.replay) == ("REVERSED", 2_000, 500, False)
    assert summary(done.lines) == [("grantor", f.father, 1, 1_500, 2_000)]
    assert done.lines[0].account_seq == 3          # debit 1, refund credit 2, reversal 3
    assert await store.balance(f.father) == 2_000  # what it held before the payment
    posted = await store.postings_of(XIAN, "20260602")
    assert posted[f"V:{HOSPITAL}:{paid.charge_id}:DSP-1:0"] == ("credit", 1_500, f.father)
    [spent] = await store.spending(f.father)
    assert (spent.paid, spent.refunded) == (2_000, 2_000)

    [again] = await store.reverse([reversal(paid, f.father)])
    assert (again.status, again.replay, summary(again.lines), again.at) == (
        "REVERSED", True, summary(done.lines), done.at)
    assert await store.balance(f.father) == 2_000 and await store.account_seq(f.father) == 3

    # the reversed line is out of reach: a refund naming it is refused, a plain one skips it
    [named] = await store.refund([refund(paid.charge_id, 1, lines="grantor_1:1")])
    assert (named.status, named.reason) == ("REJECTED", "REFUND_EXCEEDS_PAID")
    [rest] = await store.refund([refund(paid.charge_id, 8_000)])
    assert [x.source for x in rest.lines] == ["own", "grantor", "cash"]
    assert {x.person_id for x in rest.lines if x.source == "grantor"} == {f.sister}
    assert await store.balance(f.father) == 2_000


async def test_a_reversal_gives_the_monthly_limit_back_in_the_charges_month(store, client):
    patient, grantor = new_person(), new_person()
    await store.register([(patient, XIAN, "r", None), (grantor, XIAN, "e", 10_000)])
    binding_id = await bind(client, patient, grantor, 1, XIAN, limit=5_000)
    paid = charge(patient, 3_000)
    await store.settle([paid])
    assert await store.used(binding_id, "202606") == 3_000

    [done] = await store.reverse([Reversal("DSP-2", HOSPITAL, paid.charge_id, grantor, binding_id, REFUND_AT)])

    assert done.status == "REVERSED" and await store.used(binding_id, "202606") == 0


async def test_a_fully_refunded_line_reverses_nothing_and_an_unknown_charge_or_line_changes_nothing(store, client):
    f = await Family(own=0, first=2_000, second=0).register(store, client)
    paid = charge(f.patient, 2_000)
    await store.settle([paid])
    await store.refund([refund(paid.charge_id, 2_000)])

    [done] = await store.reverse([reversal(paid, f.father)])
    assert (done.status, done.lines, done.paid, done.refunded_before) == ("REVERSED", [], 2_000, 2_000)
    assert await store.balance(f.father) == 2_000 and await store.account_seq(f.father) == 2

    [unknown] = await store.reverse([Reversal("DSP-3", HOSPITAL, "no-such-charge", f.father, "", REFUND_AT)])
    [no_line] = await store.reverse([reversal(paid, f.sister, "DSP-4")])
    assert (unknown.status, no_line.status) == ("UNKNOWN_CHARGE", "UNKNOWN_LINE")


async def test_a_refund_of_an_unknown_charge_is_rejected(store, client):
    [applied] = await store.refund([refund(str(uuid.uuid4()), 100)])
    assert (applied.status, applied.reason) == ("REJECTED", "UNKNOWN_CHARGE")


async def test_the_same_refund_twice_credits_once(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    paid = charge(f.patient, 3_000)  # own 1000, grantor 1 2000
    await store.settle([paid])
    once = refund(paid.charge_id, 1_500, digest="r1")
    twice = refund(paid.charge_id, 1_500, refund_id=once.refund_id, digest="r1")

    [one] = await store.refund([once])
    [two] = await store.refund([twice])

    assert (one.status, two.status) == ("REFUNDED", "REFUNDED")
    assert (one.replay, two.replay) == (False, True)
    assert two.lines == one.lines and two.at == one.at
    assert [await store.balance(p) for p in (f.patient, f.father)] == [0, 1_500]
    [other] = await store.refund([refund(paid.charge_id, 1, refund_id=once.refund_id, digest="r2")])
    assert other.status == "CONFLICT"


# --- batches: one Function call per batch, each item under its own pcall ---------------------

async def test_a_defective_charge_costs_only_itself_in_its_batch(store, client):
    from shared.state import person_bucket
    fine, broken = new_person(), new_person()
    await store.register([(fine, XIAN, "e", 5_000), (broken, XIAN, "e", 5_000)])
    await client.hset(f"stl:acct:{person_bucket(broken)}", broken, "garbage")
    before, bad, after = charge(fine, 1_000), charge(broken, 1_000), charge(fine, 2_000)

    answers = await store.settle([before, bad, after])

    assert [a.status for a in answers] == ["SETTLED", "ERROR", "SETTLED"]
    assert "nil value" in answers[1].reason
    assert await store.balance(fine) == 2_000
    [again] = await store.settle([before])
    assert (again.status, again.replay, again.lines) == ("SETTLED", True, answers[0].lines)


async def test_a_defective_refund_costs_only_itself_in_its_batch(store, client):
    from shared.state import person_bucket
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    other = await Family(own=1_000, first=0, second=0).register(store, client)
    paid, lost = charge(f.patient, 500), charge(other.patient, 500)
    await store.settle([paid, lost])
    await client.hset(f"stl:acct:{person_bucket(other.patient)}", other.patient, "garbage")

    answers = await store.refund([refund(lost.charge_id, 100), refund(paid.charge_id, 200)])

    assert [a.status for a in answers] == ["ERROR", "REFUNDED"]
    assert answers[1].patient_id == f.patient and await store.balance(f.patient) == 700


async def test_a_batch_larger_than_one_call_answers_every_charge_in_order(store, client):
    from services.settlement.storage import accounts
    patient = new_person()
    await store.register([(patient, XIAN, "e", 1_000_000)])
    todo = [charge(patient, n + 1) for n in range(2 * accounts.CALL_ITEMS + 7)]

    answers = await store.settle(todo)

    assert [a.status for a in answers] == ["SETTLED"] * len(todo)
    assert [a.lines[0].amount for a in answers] == [c.borne for c in todo]
    assert [a.lines[0].account_seq for a in answers] == list(range(1, len(todo) + 1))
    assert await store.balance(patient) == 1_000_000 - sum(c.borne for c in todo)


async def test_a_batch_settles_after_the_function_library_disappears(store, client):
    patient = new_person()
    await store.register([(patient, XIAN, "e", 5_000)])
    await client.function_flush()

    [applied] = await store.settle([charge(patient, 1_000)])

    assert applied.status == "SETTLED" and await store.balance(patient) == 4_000


# --- bureau movements ------------------------------------------------------------------------

def move(person, kind, amount, seq, region=XIAN, through=0) -> Movement:
    return Movement(person, kind, amount, seq, region, through)


async def test_bureau_movements_apply_once_per_bureau_seq(store, client):
    person = new_person()
    await store.register([(person, XIAN, "e", 1_000)])

    assert await bureau_movements(store, [move(person, "credit", 500, 1)]) == [("APPLIED", 1_500)]
    assert await bureau_movements(store, [move(person, "credit", 500, 1)]) == [("STALE", 1_500)]
    assert await bureau_movements(store, [move(person, "debit", 200, 2)]) == [("APPLIED", 1_300)]
    assert await bureau_movements(store, [move(person, "debit", 200, 2)]) == [("STALE", 1_300)]
    assert await bureau_movements(store, [move(person, "snapshot", 9_000, 5)]) == [("APPLIED", 9_000)]
    assert await bureau_movements(store, [move(person, "snapshot", 9_000, 5)]) == [("STALE", 9_000)]
    assert await bureau_movements(store, [move(person, "credit", 100, 4)]) == [("STALE", 9_000)]
    assert await store.balance(person) == 9_000


async def test_a_bureau_debit_above_the_balance_leaves_a_deficit_that_pays_nothing(store, client):
    person = new_person()
    await store.register([(person, XIAN, "e", 1_000)])

    assert await bureau_movements(store, [move(person, "debit", 1_001, 1)]) == [("NEGATIVE", -1)]
    [paid] = await store.settle([charge(person, 500)])
    assert summary(paid.lines) == [("cash", None, None, 500, None)]
    assert await bureau_movements(store, [move(person, "credit", 50, 2)]) == [("APPLIED", 49)]
    [then] = await store.settle([charge(person, 500)])
    assert summary(then.lines) == [("own", person, None, 49, 0), ("cash", None, None, 451, None)]


async def test_bureau_events_from_another_region_or_for_nobody_are_refused_and_keep_the_seq(store, client):
    person, nobody = new_person(), new_person()
    await store.register([(person, XIAN, "e", 1_000)])

    assert await bureau_movements(store, [move(person, "credit", 500, 7, region=BAOJI)]) == [("FOREIGN_REGION", 1_000)]
    assert await bureau_movements(store, [move(person, "snapshot", 0, 8, region=BAOJI)]) == [("FOREIGN_REGION", 1_000)]
    assert await bureau_movements(store, [move(nobody, "credit", 700, 1)]) == [("UNREGISTERED", 0)]
    assert await bureau_movements(store, [move(person, "credit", 5, 1)]) == [("APPLIED", 1_005)]
    assert await store.balance(nobody) is None


async def test_a_snapshot_taken_before_the_bureau_applied_a_platform_debit_does_not_undo_it(store, client):
    person = new_person()
    await store.register([(person, XIAN, "e", 10_000)])
    await store.settle([charge(person, 3_000)])                       # seq 1: 7000 left
    await store.settle([charge(person, 1_000)])                       # seq 2: 6000 left

    # The bureau's 10000 includes neither posting; then 9000 includes the first only.
    assert await bureau_movements(store, [move(person, "snapshot", 10_000, 1, through=0)]) == [("APPLIED", 6_000)]
    assert await bureau_movements(store, [move(person, "snapshot", 7_500, 2, through=1)]) == [("APPLIED", 6_500)]
    assert await client.lrange(f"stl:pp:{person}", 0, -1) == [b"2|-1000"]
    # A snapshot that would undo the first posting again, or names one never made, is refused.
    assert await bureau_movements(store, [move(person, "snapshot", 10_000, 3, through=0)]) == [
        ("WATERMARK_BEHIND", 6_500)]
    assert await bureau_movements(store, [move(person, "snapshot", 10_000, 3, through=3)]) == [
        ("WATERMARK_AHEAD", 6_500)]
    assert await bureau_movements(store, [move(person, "snapshot", 6_400, 3, through=2)]) == [("APPLIED", 6_400)]
    assert not await client.exists(f"stl:pp:{person}")


# --- the Function agrees with the pure waterfall -------------------------------------------

@dataclass(frozen=True)
class Grantor:
    order: int
    kind: str           # employee | resident (no account to pay from) | unregistered
    balance: int
    region: str
    in_force: bool      # the binding covers the charge's day
    limit: int | None = None  # the binding's monthly limit (fen), None = no limit
    used: int = 0       # already used this month
    paused: bool = False
    held: int = 0       # held on the account by another quote


@st.composite
def cases(draw):
    """A patient (employee, possibly with a deficit, or resident), up to two grantors of every
    kind, a charge of any size up to a trillion yuan, perhaps resent, then refunds (some too large)."""
    big = st.integers(0, 10**14)
    own = draw(st.one_of(st.none(), st.integers(-100_000, 0), st.integers(0, 1_000_000), big))
    orders = draw(st.permutations([1, 2]))[: draw(st.integers(0, 2))]
    grantors = [Grantor(order, draw(st.sampled_from(["employee", "employee", "resident", "unregistered"])),
                        draw(st.one_of(st.integers(-1_000, 1_000_000), big)), draw(st.sampled_from(PROVINCES)),
                        draw(st.booleans()), draw(st.one_of(st.none(), st.integers(0, 1_000_000))),
                        draw(st.integers(0, 500_000)), draw(st.booleans()), draw(st.integers(0, 500_000)))
                for order in orders]
    total = max(own or 0, 0) + sum(max(g.balance, 0) for g in grantors)
    borne = draw(st.one_of(st.integers(0, total + 10), st.just(total), big))
    resend = draw(st.booleans())
    some = st.one_of(st.integers(0, 1_000), st.integers(0, borne + 1), st.just(borne))
    # a refund is an amount (last paid first) or the payer lines it names (issue 21), some of them a
    # payer the charge has not or more than that payer has left
    named = st.dictionaries(st.sampled_from(["own", "grantor_1", "grantor_2", "cash"]), some, min_size=1, max_size=4)
    refunds = draw(st.lists(st.one_of(some, named), max_size=4))
    quoted = draw(st.booleans())
    return own, grantors, borne, resend, refunds, quoted


async def set_held(client: Redis, person: str, held: int) -> None:
    """An account entry with `held` fen held by some other quote (7th field)."""
    key = f"stl:acct:{person_bucket(person)}"
    fields = (await client.hget(key, person)).decode().split("|")[:6]
    await client.hset(key, person, "|".join([*fields, str(held)]))


def test_the_functions_settle_and_refund_exactly_as_the_oracle(valkey, store):
    loop = asyncio.new_event_loop()  # private: the session loop belongs to pytest-asyncio
    client = Redis.from_url(valkey.url)
    local = make_store(client)

    async def one(own, grantors, borne, resend, refund_amounts, quoted):
        await client.flushdb()
        await local.register_institutions([(HOSPITAL, XIAN, "hospital")])
        patient = new_person()
        people = [(patient, XIAN, "r" if own is None else "e", own)]
        expected_balance = {patient: 0 if own is None else own}
        payers = []
        for g in grantors:
            person = new_person()
            if g.kind != "unregistered":
                people.append((person, g.region, g.kind[0], g.balance if g.kind == "employee" else None))
                expected_balance[person] = g.balance if g.kind == "employee" else 0
            else:
                expected_balance[person] = None
            start, end = (20260101, 20261231) if g.in_force else (DAY + 1, DAY + 30)
            binding = await bind(client, patient, person, g.order, g.region, start=start, end=end,
                                 limit=g.limit, paused=g.paused)
            if g.used:
                await client.hset(f"stl:used:{binding}", str(DAY // 100), g.used)
            if g.kind == "employee" and g.in_force:
                payers.append(Account(person, g.region, g.balance, g.order, held=g.held, paused=g.paused,
                                      limit_left=None if g.limit is None else g.limit - g.used, binding_id=binding))
        await local.register(people)
        for g, a in zip([g for g in grantors if g.kind == "employee" and g.in_force], payers):
            if g.held:
                await set_held(client, a.person_id, g.held)
        seq = dict.fromkeys(expected_balance, 0)

        def numbered(lines):
            out = []
            for line in lines:
                if line.source != "cash":
                    seq[line.person_id] += 1
                    line = replace(line, account_seq=seq[line.person_id])
                out.append(line)
            return out

        paid = charge(patient, borne)
        own_account = None if own is None else Account(patient, XIAN, own)
        if quoted:
            # 预结算 first: the quote holds exactly the split, its lines telling what is left to spend;
            # settling it then posts exactly the held split.
            [held] = await local.settle([replace(paid, op="Q", quote_id="Q1")], now_ms=1)
            assert (held.status, held.lines) == ("QUOTED", split(borne, own_account, payers, held=True))
        [applied] = await local.settle([paid], now_ms=2)
        expected = numbered(split(borne, own_account, payers))
        assert applied.status == "SETTLED"
        assert applied.lines == expected
        for line in expected[:-1]:
            expected_balance[line.person_id] -= line.amount
        if resend:
            [again] = await local.settle([charge(patient, borne, charge_id=paid.charge_id)])
            assert (again.status, again.replay, again.lines) == ("SETTLED", True, expected)

        back = [0] * len(expected)
        for amount in refund_amounts:
            named = amount if isinstance(amount, dict) else None
            if named is not None:
                amount = sum(named.values())
            [done] = await local.refund([refund(paid.charge_id, amount, lines=",".join(
                f"{payer}:{fen}" for payer, fen in (named or {}).items()))])
            try:
                plan = refund_plan(expected, back, amount) if named is None else \
                    named_refund_plan(expected, back, amount, named)
            except ValueError:
                assert (done.status, done.reason) == ("REJECTED", "REFUND_EXCEEDS_PAID")
                continue
            lines = []
            for i, give in enumerate(plan):
                if give:
                    line = expected[i]
                    after = None
                    if line.source != "cash":
                        expected_balance[line.person_id] += give
                        after = expected_balance[line.person_id]
                    lines.append(replace(line, amount=give, balance_after=after, account_seq=None))
                    back[i] += give
            assert done.status == "REFUNDED"
            assert done.lines == numbered(lines)
        for g, a in zip([g for g in grantors if g.kind == "employee" and g.in_force], payers):
            # what the binding paid less what came back, in the month of the charge
            net = sum(l.amount - b for l, b in zip(expected, back) if l.binding_id == a.binding_id)
            assert await local.used(a.binding_id, str(DAY // 100)) == g.used + net
        for person, balance in expected_balance.items():
            assert await local.balance(person) == balance
            if balance is not None:
                assert await local.account_seq(person) == seq[person]

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(cases())
    def check(case):
        loop.run_until_complete(one(*case))

    try:
        check()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


# --- the payer index: one codec (shared/binding_index.py), read alike by the settle Function ---

CHARGE_DAY = date(2026, 6, 1)  # DAY as a date


@st.composite
def index_entries(draw):
    """Up to three bindings of one patient written through the codec, each with its own grantor:
    either payment order, dates ending before, covering (from one day to a year) or starting after
    the charge's day, any limit or none, paused or not, some cut to the old 5-field value. At most
    one binding of each order is in force on the day (as the binding service keeps them)."""
    entries = []
    for n in range(draw(st.integers(1, 3))):
        start = CHARGE_DAY + timedelta(days=draw(st.sampled_from([-400, -30, -1, 0, 1, 30])))
        end = start + timedelta(days=draw(st.sampled_from([0, 1, 30, 365])))
        payer = Payer(f"BND-{n}-{uuid.uuid4().hex[:8]}", new_person(), draw(st.sampled_from([1, 2])), start, end,
                      draw(st.sampled_from(PROVINCES)), draw(st.none() | st.integers(0, 15_000)), draw(st.booleans()))
        entries.append((payer, draw(st.booleans())))
    orders = [p.payment_order for p, _ in entries if in_force(p, CHARGE_DAY)]
    assume(len(orders) == len(set(orders)))
    return entries


def test_a_payer_written_through_the_codec_pays_through_the_function_as_the_codec_reads_it_back(valkey):
    """encode_payer -> bnd:pay -> FCALL settle pays exactly the bindings payers_in_force chooses
    (dates, order, limit, pause, the old 5-field value), and decode_payers reads back what was written."""
    loop = asyncio.new_event_loop()  # private: the session loop belongs to pytest-asyncio
    client = Redis.from_url(valkey.url)
    local = make_store(client)
    balance = 10_000

    async def one(entries):
        await client.flushdb()
        await local.register_institutions([(HOSPITAL, XIAN, "hospital")])
        patient = new_person()
        await local.register([(patient, XIAN, "r", None)] + [(p.grantor_id, p.grantor_region, "e", balance)
                                                              for p, _ in entries])
        written = []
        for payer, old in entries:
            value = encode_payer(payer)
            if old:  # the value written before limits and pause: its first five fields
                value = "|".join(value.split("|")[:5])
                payer = replace(payer, monthly_limit_fen=None, paused=False)
            await client.hset(payers_key(patient), payer.binding_id, value)
            written.append(payer)

        # back: the codec reads the index as written, from Redis and from the store settlement reads it with
        expected_index = sorted(written, key=lambda p: (p.payment_order, p.binding_id))
        assert decode_payers(await client.hgetall(payers_key(patient))) == expected_index
        assert decode_payers(await local.payers(patient)) == expected_index

        [applied] = await local.settle([charge(patient, 1_000_000)])

        chosen = payers_in_force(await local.payers(patient), CHARGE_DAY)
        amounts = [(p, min(balance, balance if p.monthly_limit_fen is None else p.monthly_limit_fen))
                   for p in chosen if not p.paused]
        expected = [("grantor", p.grantor_id, p.payment_order, amount, balance - amount)
                    for p, amount in amounts if amount > 0]
        grantor_lines = [l for l in applied.lines if l.source == "grantor"]
        assert summary(grantor_lines) == expected
        assert [l.binding_id for l in grantor_lines] == [p.binding_id for p, amount in amounts if amount > 0]
        for payer in written:
            paid = sum(l.amount for l in grantor_lines if l.binding_id == payer.binding_id)
            assert await local.balance(payer.grantor_id) == balance - paid
            assert await local.used(payer.binding_id, "202606") == paid

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(index_entries())
    def check(entries):
        loop.run_until_complete(one(entries))

    try:
        check()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


# --- concurrency -----------------------------------------------------------------------------

async def test_concurrent_settlements_against_one_grantor_never_overdraw(store, client):
    initial = 100_000
    grantor = new_person()
    patients = [new_person() for _ in range(20)]
    await store.register([(grantor, BAOJI, "e", initial)] + [(p, XIAN, "r", None) for p in patients])
    for p in patients:
        await bind(client, p, grantor, 1, BAOJI)
    charges = [charge(patients[i % len(patients)], 300 + (i * 37) % 900) for i in range(200)]
    total_borne = sum(c.borne for c in charges)
    assert total_borne > initial

    batches = [charges[i:i + 10] for i in range(0, len(charges), 10)]
    results = [a for batch in await asyncio.gather(*(store.settle(b) for b in batches)) for a in batch]

    assert all(a.status == "SETTLED" for a in results)
    debited = sum(l.amount for a in results for l in a.lines if l.source == "grantor")
    cash = sum(l.amount for a in results for l in a.lines if l.source == "cash")
    assert debited == min(initial, total_borne)
    assert debited + cash == total_borne
    assert all(l.balance_after >= 0 for a in results for l in a.lines if l.source == "grantor")
    assert await store.balance(grantor) == initial - debited == 0
    assert sorted(r.paid for r in await store.spending(grantor)) == sorted(
        l.amount for a in results for l in a.lines if l.source == "grantor")
