"""Quotes with holds (预结算, issue 15) through the real broker and Redis, with the binding and
settlement services running as processes: the whole split held, posted or released as one unit.

The hold is shortened to HOLD seconds (SETTLEMENT_QUOTE_HOLD_SECONDS) and the sweep runs often, so
expiry is seen within a test; every wait is on a condition with a deadline."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from shared import envelope, topics as t
from shared.envelope import seal
from shared.references import payment_reference
from services.settlement.domain.ids import quote_id as quote_id_of
from tests.partners.hospital import HOSPITAL, lines
from tests.support import body, cached_balances, command, eventually, payload_of

pytestmark = pytest.mark.integration

HOLD = 20  # seconds a quote holds in these tests


@pytest.fixture(scope="module")
def services(infra, platform_pool):
    env = {**infra.env(), "LOG_LEVEL": "INFO", "SETTLEMENT_QUOTE_HOLD_SECONDS": str(HOLD),
           "SETTLEMENT_QUOTE_SWEEP_SECONDS": "0.2"}
    with platform_pool.alone(("binding", "settlement"), env) as services:
        yield services



async def test_settling_a_quote_posts_exactly_the_held_split_after_the_bureau_debited_the_account(counter):
    patient = await counter.person(scheme="resident")
    father = await counter.person(balance="100.00")
    binding_id = await counter.bind(father, patient, order=1)
    charge = counter.new_charge(patient, 6_000)

    quoted = await counter.quote(charge)
    q = quoted["payload"]
    assert q["quote_id"] == quote_id_of(HOSPITAL, charge["charge_id"])
    assert lines(quoted) == [("grantor", father["person_id"], 1, "60.00", "40.00"), ("cash", None, None, "0.00", None)]
    assert q["lines"][0]["binding_id"] == binding_id
    assert q["lines"][0]["reference"] == payment_reference(HOSPITAL, charge["charge_id"], father["person_id"])
    held_until = datetime.fromisoformat(q["held_until"])
    assert HOLD - 5 <= (held_until - datetime.fromisoformat(q["quoted_at"])).total_seconds() <= HOLD
    assert (await counter.account(father))["held"] == "60.00"

    # The bureau debits 80.00 the grantor spent at its own counter: the balance falls below the hold.
    await counter.bus.send(t.BUREAU_ACCOUNTS, seal("AccountDebitedLocally", {
        "person_id": father["person_id"], "region": "610100", "amount": "80.00", "bureau_seq": 1}),
        key=father["person_id"])
    await eventually(lambda: _balance_is(counter, father, 2_000), 30, "the bureau's debit in the cache")

    settled = await counter.settle(charge, q["quote_id"])
    assert lines(settled) == [("grantor", father["person_id"], 1, "60.00", "-40.00"), ("cash", None, None, "0.00", None)]
    assert settled["payload"]["lines"][0]["reference"] == q["lines"][0]["reference"]
    [debit] = await counter.postings(charge["charge_id"], 1)
    assert (debit["amount"], debit["direction"], debit["account_seq"]) == ("60.00", "debit", 1)
    after = await counter.account(father)
    assert (after["balance"], after["held"]) == ("-40.00", "0.00")      # never clamped; nothing held


async def _balance_is(counter, person, fen: int) -> bool:
    return (await cached_balances(counter.redis, [person["person_id"]]))[person["person_id"]] == fen


async def test_a_second_charge_cannot_spend_held_money_and_two_charges_with_one_quote_post_once(counter):
    patient = await counter.person(scheme="resident")
    father = await counter.person(balance="100.00")
    await counter.bind(father, patient, order=1)
    held = counter.new_charge(patient, 6_000)
    q = (await counter.quote(held))["payload"]

    other, settled = await counter.charge(patient, 8_000)            # another charge meanwhile
    assert lines(settled) == [("grantor", father["person_id"], 1, "40.00", "60.00"), ("cash", None, None, "40.00", None)]

    for _ in range(2):   # the HIS sends the charge twice (a retry): one posting
        payload = held | {"quote_id": q["quote_id"]}
        await counter.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", payload), key=patient["person_id"])
    results = await counter.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: payload_of(r).get("charge_id") == held["charge_id"] and body(r)["event_type"] == "ChargeSettled",
        count=2, timeout=60)
    assert len({body(r)["event_id"] for r in results}) == 1
    assert lines(body(results[0])) == [("grantor", father["person_id"], 1, "60.00", "0.00"),
                                       ("cash", None, None, "0.00", None)]
    account = await counter.account(father)
    assert (account["balance"], account["held"]) == ("0.00", "0.00")
    assert len(await counter.postings(held["charge_id"], 1)) == 1


async def test_a_resent_quote_request_answers_the_same_quote_and_a_settled_charge_is_not_quoted(counter):
    patient = await counter.person(scheme="resident")
    father = await counter.person(balance="100.00")
    await counter.bind(father, patient, order=1)
    charge = counter.new_charge(patient, 3_000)
    event_id = str(uuid.uuid4())
    first = await counter.quote(charge, event_id)
    await counter.bus.send(t.HIS_CHARGES, command("ChargeQuoteRequested", charge, event_id), key=patient["person_id"])
    quotes = await counter.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: payload_of(r).get("charge_id") == charge["charge_id"] and body(r)["event_type"] == "ChargeQuoted",
        count=2, timeout=60)
    assert all(body(r) == first for r in quotes)                  # the same bytes, the same event id
    assert (await counter.account(father))["held"] == "30.00"     # held once

    done, _ = await counter.charge(patient, 1_000)
    await counter.bus.send(t.HIS_CHARGES, command("ChargeQuoteRequested", done), key=patient["person_id"])
    refused = await counter.rejected(done, "ALREADY_SETTLED")
    assert refused["payload"]["institution_code"] == HOSPITAL


async def test_cancelling_a_quote_releases_every_hold_of_the_split_together(counter):
    patient = await counter.person(balance="10.00")
    father, sister = await counter.person(balance="20.00"), await counter.person(balance="50.00")
    await counter.bind(father, patient, order=1)
    await counter.bind(sister, patient, order=2)
    charge = counter.new_charge(patient, 5_000)
    q = (await counter.quote(charge))["payload"]
    assert [x["amount"] for x in q["lines"]] == ["10.00", "20.00", "20.00", "0.00"]
    assert [(await counter.account(p))["held"] for p in (patient, father, sister)] == ["10.00", "20.00", "20.00"]

    released = await counter.cancel(charge, q["quote_id"])
    assert released["payload"]["reason"] == "cancelled" and released["payload"]["quote_id"] == q["quote_id"]
    assert [x["amount"] for x in released["payload"]["lines"]] == ["10.00", "20.00", "20.00", "0.00"]
    for person, balance in ((patient, "10.00"), (father, "20.00"), (sister, "50.00")):
        account = await counter.account(person)
        assert (account["balance"], account["held"]) == (balance, "0.00")

    await counter.settle(charge, q["quote_id"], expect="ChargeRejected")
    await counter.rejected(charge, "QUOTE_RELEASED")


async def test_an_expired_quote_is_released_whole_by_the_sweep_and_announced(counter):
    patient, father, sister, _ = await counter.family_of_two()
    charge = counter.new_charge(patient, 3_000)
    q = (await counter.quote(charge))["payload"]

    released = await counter.released(charge, timeout=HOLD + 60)
    assert released["payload"]["reason"] == "expired" and released["payload"]["quote_id"] == q["quote_id"]
    assert datetime.fromisoformat(released["payload"]["released_at"]) >= datetime.fromisoformat(q["held_until"])
    assert [(await counter.account(p))["held"] for p in (father, sister)] == ["0.00", "0.00"]
    assert not await counter.redis.llen("stl:quote:outbox")        # announced, then removed

    await counter.settle(charge, q["quote_id"], expect="ChargeRejected")
    await counter.rejected(charge, "QUOTE_EXPIRED")


async def test_a_quote_expiring_while_it_is_settled_is_posted_or_released_whole(counter):
    patient, father, sister, _ = await counter.family_of_two()
    charge = counter.new_charge(patient, 3_000)
    q = (await counter.quote(charge))["payload"]
    until = datetime.fromisoformat(q["held_until"])
    # The HIS settles at the very end of the hold: the platform's clock decides, for the whole split.
    await eventually(lambda: (until - envelope.now()).total_seconds() < 0.3, HOLD + 10, "the end of the hold")
    payload = charge | {"quote_id": q["quote_id"]}
    await counter.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", payload), key=patient["person_id"])
    [r] = await counter.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: payload_of(r).get("charge_id") == charge["charge_id"]
        and body(r)["event_type"] in ("ChargeSettled", "ChargeRejected"), timeout=60)
    father_after, sister_after = await counter.account(father), await counter.account(sister)
    if body(r)["event_type"] == "ChargeSettled":
        assert lines(body(r))[:2] == [("grantor", father["person_id"], 1, "20.00", "0.00"),
                                      ("grantor", sister["person_id"], 2, "10.00", "40.00")]
        assert (father_after["balance"], sister_after["balance"]) == ("0.00", "40.00")
    else:
        assert payload_of(r)["reason_code"] == "QUOTE_EXPIRED"
        assert (await counter.released(charge))["payload"]["reason"] == "expired"
        assert (father_after["balance"], sister_after["balance"]) == ("20.00", "50.00")
    assert (father_after["held"], sister_after["held"]) == ("0.00", "0.00")


async def test_a_hold_is_released_when_its_binding_is_paused_or_revoked(counter):
    patient, father, sister, (b1, b2) = await counter.family_of_two()
    first = counter.new_charge(patient, 3_000)
    await counter.quote(first)

    paused = await counter.binding_outcome("PauseBinding", b1, father, patient)
    assert paused["event_type"] == "BindingPaused", paused
    released = await counter.released(first)
    assert released["payload"]["reason"] == "binding_paused"
    assert [(await counter.account(p))["held"] for p in (father, sister)] == ["0.00", "0.00"]

    second = counter.new_charge(patient, 3_000)
    q = (await counter.quote(second))["payload"]                   # the paused binding pays nothing
    assert [(x["source"], x.get("binding_id"), x["amount"]) for x in q["lines"]] == [
        ("grantor", b2, "30.00"), ("cash", None, "0.00")]
    await counter.revoke(b2, sister, patient)
    assert (await counter.released(second))["payload"]["reason"] == "binding_revoked"
    assert (await counter.account(sister))["held"] == "0.00"
    await counter.settle(second, q["quote_id"], expect="ChargeRejected")
    await counter.rejected(second, "QUOTE_RELEASED")


# --- one answer per message (issue 21) --------------------------------------------------------

async def test_a_plain_charge_whose_quote_a_pause_released_is_answered_alike_when_redelivered_and_resent(counter):
    """The HIS quotes, the grantor pauses, the HIS sends the charge without its quote_id at once
    (settlement may or may not have read the BindingPaused yet): the charge settles as a plain
    charge the paused binding pays nothing of, and its redelivery (the same bytes, the same
    event_id) and the HIS's resend (the same body, a new event_id) get the same ChargeSettled,
    byte for byte, with nothing posted twice."""
    patient, father, sister, (b1, b2) = await counter.family_of_two()
    charge = counter.new_charge(patient, 3_000)
    q = (await counter.quote(charge))["payload"]
    assert [(x.get("binding_id"), x["amount"]) for x in q["lines"]][:2] == [(b1, "20.00"), (b2, "10.00")]

    paused = await counter.binding_outcome("PauseBinding", b1, father, patient)
    assert paused["event_type"] == "BindingPaused", paused
    message = command("ChargeSubmitted", charge)                     # no quote_id
    await counter.bus.send(t.HIS_CHARGES, message, key=patient["person_id"])
    first = await counter.result(charge["charge_id"], "ChargeSettled")
    assert lines(first) == [("grantor", sister["person_id"], 2, "30.00", "20.00"), ("cash", None, None, "0.00", None)]
    assert (await counter.released(charge))["payload"]["reason"] == "binding_paused"

    await counter.bus.send(t.HIS_CHARGES, message, key=patient["person_id"])                      # redelivered
    await counter.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=patient["person_id"])  # resent
    answers = await counter.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: payload_of(r).get("charge_id") == charge["charge_id"]
        and body(r)["event_type"] in ("ChargeSettled", "ChargeRejected"), count=3, timeout=60)
    assert [body(r)["event_type"] for r in answers] == ["ChargeSettled"] * 3
    assert len({r.value for r in answers}) == 1                      # byte for byte
    for person, balance in ((father, "20.00"), (sister, "20.00")):
        account = await counter.account(person)
        assert (account["balance"], account["held"]) == (balance, "0.00")
    [debit] = await counter.postings(charge["charge_id"], 1)
    assert (debit["person_id"], debit["amount"], debit["account_seq"]) == (sister["person_id"], "30.00", 1)


async def test_a_cancelled_quote_quoted_again_with_corrected_amounts_is_held_and_settles_with_them(counter):
    patient, father, sister, (b1, b2) = await counter.family_of_two()
    charge = counter.new_charge(patient, 5_000)
    q1 = (await counter.quote(charge))["payload"]
    assert [x["amount"] for x in q1["lines"]] == ["20.00", "30.00", "0.00"]
    await counter.cancel(charge, q1["quote_id"])

    corrected = charge | {"total": "130.00", "individual_borne": "30.00"}     # fund 100.00 as before
    await counter.bus.send(t.HIS_CHARGES, command("ChargeQuoteRequested", corrected), key=patient["person_id"])
    [r] = await counter.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: payload_of(r).get("charge_id") == charge["charge_id"]
        and body(r)["event_type"] in ("ChargeQuoted", "ChargeRejected")
        and payload_of(r).get("quote_id") != q1["quote_id"], timeout=60)
    assert body(r)["event_type"] == "ChargeQuoted", body(r)
    q2 = payload_of(r)
    assert q2["quote_id"] == q1["quote_id"] + ".2" and q2["individual_borne"] == "30.00"
    assert [(x.get("binding_id"), x["amount"]) for x in q2["lines"]] == [(b1, "20.00"), (b2, "10.00"), (None, "0.00")]
    assert [(await counter.account(p))["held"] for p in (father, sister)] == ["20.00", "10.00"]

    settled = await counter.settle(corrected, q2["quote_id"])
    assert settled["payload"]["individual_borne"] == "30.00"
    assert lines(settled) == [("grantor", father["person_id"], 1, "20.00", "0.00"),
                              ("grantor", sister["person_id"], 2, "10.00", "40.00"),
                              ("cash", None, None, "0.00", None)]
    for person, balance in ((father, "0.00"), (sister, "40.00")):
        account = await counter.account(person)
        assert (account["balance"], account["held"]) == (balance, "0.00")
