"""Grantor limits and pause (共济限额, issue 15) on the settlement path, through the real broker and
Redis with the binding and settlement services running: the limit and the pause the binding
service records (SetGrantorLimit, PauseBinding) are checked inside the Function that debits."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared import envelope, topics as t
from tests.partners.hospital import lines
from tests.support import body, cached_balances, command, fen, payload_of

pytestmark = pytest.mark.integration


def this_month() -> str:
    return envelope.now().strftime("%Y%m")


async def set_limit(counter, binding_id, grantor, beneficiary, limit: str | None) -> dict:
    done = await counter.binding_outcome("SetGrantorLimit", binding_id, grantor, beneficiary, monthly_limit=limit)
    assert done["event_type"] == "GrantorLimitSet", done
    return done


async def test_concurrent_charges_of_two_beneficiaries_never_exceed_one_grantors_limits(counter):
    father = await counter.person(balance="1000.00")
    kids = [await counter.person(scheme="resident"), await counter.person(scheme="resident")]
    bindings = [await counter.bind(father, kid, order=1) for kid in kids]
    for b, kid in zip(bindings, kids):
        await set_limit(counter, b, father, kid, "150.00")

    charges = [counter.new_charge(kids[i % 2], 1_000 + (i * 37) % 1_500) for i in range(40)]
    await asyncio.gather(*(counter.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", c), key=c["patient_id"])
                           for c in charges))
    ids = {c["charge_id"] for c in charges}
    settled = [body(r) for r in await counter.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: payload_of(r).get("charge_id") in ids and body(r)["event_type"] == "ChargeSettled",
        count=len(charges), timeout=120)]
    paid = {b: 0 for b in bindings}
    for s in settled:
        for x in s["payload"]["lines"]:
            if x["source"] == "grantor":
                paid[x["binding_id"]] += fen(x["amount"])
    for b in bindings:
        assert paid[b] == 15_000                                      # the limit reached, never exceeded
        assert int(await counter.redis.hget(f"stl:used:{b}", this_month())) == paid[b]
    assert (await cached_balances(counter.redis, [father["person_id"]]))[father["person_id"]] == 100_000 - 30_000
    assert sum(fen(x["amount"]) for s in settled for x in s["payload"]["lines"]) == sum(
        fen(c["individual_borne"]) for c in charges)


async def test_a_paused_binding_pays_nothing_and_the_waterfall_goes_on_to_the_next_grantor(counter):
    patient = await counter.person(scheme="resident")
    father, sister = await counter.person(balance="100.00"), await counter.person(balance="100.00")
    b1 = await counter.bind(father, patient, order=1)
    b2 = await counter.bind(sister, patient, order=2)
    paused = await counter.binding_outcome("PauseBinding", b1, father, patient)
    assert paused["event_type"] == "BindingPaused", paused

    _, settled = await counter.charge(patient, 3_000)
    assert lines(settled) == [("grantor", sister["person_id"], 2, "30.00", "70.00"), ("cash", None, None, "0.00", None)]
    assert settled["payload"]["lines"][0]["binding_id"] == b2

    resumed = await counter.binding_outcome("ResumeBinding", b1, father, patient)
    assert resumed["event_type"] == "BindingResumed", resumed
    _, settled = await counter.charge(patient, 3_000)
    assert lines(settled)[0] == ("grantor", father["person_id"], 1, "30.00", "70.00")


async def test_a_refund_gives_the_limit_back_in_the_month_of_the_payment(counter):
    patient = await counter.person(scheme="resident")
    father = await counter.person(balance="100.00")
    b1 = await counter.bind(father, patient, order=1)
    await set_limit(counter, b1, father, patient, "50.00")

    charge, settled = await counter.charge(patient, 4_000)
    assert lines(settled)[0][3] == "40.00"
    _, capped = await counter.charge(patient, 4_000)
    assert lines(capped) == [("grantor", father["person_id"], 1, "10.00", "50.00"), ("cash", None, None, "30.00", None)]
    month = this_month()
    assert int(await counter.redis.hget(f"stl:used:{b1}", month)) == 5_000

    await counter.refund(charge, "25.00")
    assert int(await counter.redis.hget(f"stl:used:{b1}", month)) == 2_500
    assert await counter.redis.hget(f"stl:charge:{charge['institution_code']}:{charge['charge_id']}", "month") == \
        month.encode()                                               # the month the refund gives back in
    _, again = await counter.charge(patient, 4_000)
    assert lines(again)[0][3] == "25.00"                             # the limit given back is spent again


async def test_the_consumption_query_shows_each_beneficiarys_limit_used_and_left(counter):
    patient = await counter.person(scheme="resident")
    father = await counter.person(balance="100.00")
    b1 = await counter.bind(father, patient, order=1)
    await set_limit(counter, b1, father, patient, "50.00")
    await counter.charge(patient, 2_000)
    held = counter.new_charge(patient, 1_000)
    await counter.quote(held)                                        # a live hold counts as used

    query_id = str(uuid.uuid4())
    today = envelope.now().date().isoformat()
    await counter.bus.send("settlement.queries", command("QueryConsumption", {
        "grantor_id": father["person_id"], "date_from": today, "date_to": today}, query_id),
        key=father["person_id"], headers={"reply_to": "reply.tests", "correlation_id": query_id})
    [reply] = await counter.bus.watchers["reply.tests"].wait_for(
        lambda r: payload_of(r).get("command_id") == query_id, timeout=60)
    [group] = payload_of(reply)["beneficiaries"]
    assert (group["binding_id"], group["monthly_limit"], group["used_this_month"], group["left_this_month"],
            group["paused"]) == (b1, "50.00", "30.00", "20.00", False)
    assert group["total_paid"] == "20.00"
