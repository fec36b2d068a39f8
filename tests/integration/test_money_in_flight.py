"""Revocation with money in flight (issue 15), through the real broker and Redis with the binding
and settlement services running as processes: a refund of a charge a grantor paid returns the
money to that grantor's account even after the binding was revoked, and a charge made after the
revocation is no longer paid by that grantor.

"Ended" is not covered by a refund test: a binding may not start before today (China time) and
must end no earlier than it starts, and a binding is in force through its end date inclusive, so
no binding made through the contract has ended before tomorrow. The last test pins that premise;
faking an ended binding with Redis writes would test the fake, not the platform."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared import topics as t
from tests.partners.hospital import HOSPITAL, REGION, Family, lines
from tests.support import binding_form, china_today, payload_of

pytestmark = pytest.mark.integration


@pytest.fixture
async def family(bus, clean_redis, services):
    family = Family(bus, clean_redis)
    await family.hospital()
    return family


async def test_refund_after_revocation_returns_the_money_to_the_revoked_grantor(family):
    patient = await family.person(scheme="resident")            # no account of its own: grantors pay
    first, second = await family.person(balance="100.00"), await family.person(balance="50.00")
    revoked_id = await family.bind(first, patient, order=1)
    await family.bind(second, patient, order=2)

    charge, settled = await family.charge(patient, 3_000)
    assert lines(settled) == [("grantor", first["person_id"], 1, "30.00", "70.00"), ("cash", None, None, "0.00", None)]
    [debit] = await family.postings(charge["charge_id"], 1)
    assert (debit["person_id"], debit["direction"], debit["amount"], debit["account_seq"]) == (
        first["person_id"], "debit", "30.00", 1)

    await family.revoke(revoked_id, first, patient)
    assert revoked_id not in await family.payer_index(patient)   # settlement no longer sees it as a payer

    refunded = await family.refund(charge, "30.00")
    assert lines(refunded) == [("grantor", first["person_id"], 1, "30.00", "100.00")]
    postings = await family.postings(charge["charge_id"], 2)
    credit = next(p for p in postings if p["direction"] == "credit")
    assert (credit["person_id"], credit["amount"], credit["account_seq"], credit["refund_id"], credit["posting_id"],
            credit["region"], credit["beneficiary_id"]) == (
        first["person_id"], "30.00", 2, "R1", f"R:{HOSPITAL}:{charge['charge_id']}:R1:0", REGION, patient["person_id"])
    assert await family.balance(first) == "100.00"
    assert await family.balance(second) == "50.00"


async def test_partial_refunds_after_revocation_go_back_last_paid_first_to_both_grantors(family):
    """A charge paid by both grantors and cash; grantor 1's binding revoked; two refunds: cash
    first, then grantor 2, then grantor 1, each account credited with its next account_seq."""
    patient = await family.person(scheme="resident")
    first, second = await family.person(balance="40.00"), await family.person(balance="30.00")
    revoked_id = await family.bind(first, patient, order=1)
    await family.bind(second, patient, order=2)
    charge, settled = await family.charge(patient, 10_000)
    assert lines(settled) == [("grantor", first["person_id"], 1, "40.00", "0.00"),
                              ("grantor", second["person_id"], 2, "30.00", "0.00"),
                              ("cash", None, None, "30.00", None)]

    await family.revoke(revoked_id, first, patient)
    refunded = await family.refund(charge, "50.00", refund_id="R1")
    assert lines(refunded) == [("grantor", second["person_id"], 2, "20.00", "20.00"),
                               ("cash", None, None, "30.00", None)]
    refunded = await family.refund(charge, "50.00", refund_id="R2")
    assert lines(refunded) == [("grantor", first["person_id"], 1, "40.00", "40.00"),
                               ("grantor", second["person_id"], 2, "10.00", "30.00")]
    postings = await family.postings(charge["charge_id"], 5)    # 2 debits, 1 + 2 credits
    seqs = sorted((p["person_id"] == first["person_id"], p["direction"], p["account_seq"], p["amount"])
                  for p in postings)
    assert seqs == [(False, "credit", 2, "20.00"), (False, "credit", 3, "10.00"), (False, "debit", 1, "30.00"),
                    (True, "credit", 2, "40.00"), (True, "debit", 1, "40.00")]
    assert (await family.balance(first), await family.balance(second)) == ("40.00", "30.00")


async def test_after_revocation_a_new_charge_is_paid_by_the_other_grantor_then_cash(family):
    patient = await family.person(scheme="resident")
    first, second = await family.person(balance="100.00"), await family.person(balance="50.00")
    revoked_id = await family.bind(first, patient, order=1)
    await family.bind(second, patient, order=2)
    await family.revoke(revoked_id, first, patient)

    charge, settled = await family.charge(patient, 8_000)
    assert lines(settled) == [("grantor", second["person_id"], 2, "50.00", "0.00"),
                              ("cash", None, None, "30.00", None)]
    [debit] = await family.postings(charge["charge_id"], 1)
    assert (debit["person_id"], debit["account_seq"]) == (second["person_id"], 1)
    assert (await family.balance(first), await family.balance(second)) == ("100.00", "0.00")


async def test_after_revoking_the_only_binding_new_charges_pay_cash_and_old_ones_still_refund_to_it(family):
    patient = await family.person(balance="5.00")                  # an employee: own account first
    grantor = await family.person(balance="60.00")
    binding_id = await family.bind(grantor, patient, order=1)
    before, settled = await family.charge(patient, 2_500)
    assert lines(settled) == [("own", patient["person_id"], None, "5.00", "0.00"),
                              ("grantor", grantor["person_id"], 1, "20.00", "40.00"),
                              ("cash", None, None, "0.00", None)]
    await family.revoke(binding_id, grantor, patient)

    after, settled = await family.charge(patient, 1_500)
    assert lines(settled) == [("cash", None, None, "15.00", None)]
    refunded = await family.refund(before, "25.00")
    assert lines(refunded) == [("own", patient["person_id"], None, "5.00", "5.00"),
                               ("grantor", grantor["person_id"], 1, "20.00", "60.00")]
    [credit] = [p for p in await family.postings(before["charge_id"], 4) if p["direction"] == "credit"
                and p["person_id"] == grantor["person_id"]]
    assert (credit["amount"], credit["account_seq"]) == ("20.00", 2)
    assert (await family.balance(grantor), await family.balance(patient)) == ("60.00", "5.00")
    assert not family.bus.watchers[t.bureau_postings(REGION)].matching(
        lambda r: payload_of(r).get("charge_id") == after["charge_id"])


async def test_an_ended_binding_cannot_be_made_today_and_a_one_day_binding_is_in_force_all_day(family):
    """Why there is no refund-after-end test: the earliest a binding can end is today, and on
    its end day it still pays."""
    patient, grantor = await family.person(scheme="resident"), await family.person(balance="10.00")
    today = china_today()
    refused = await family.binding_command("CreateBinding", binding_form(
        grantor, patient, 1, start=today - timedelta(days=2), end=today - timedelta(days=1)), patient["person_id"])
    assert (refused["event_type"], refused["payload"]["reason_code"]) == ("BindingRejected", "INVALID_DATES")
    await family.bind(grantor, patient, order=1, start=today, end=today)
    _, settled = await family.charge(patient, 400)
    assert lines(settled) == [("grantor", grantor["person_id"], 1, "4.00", "6.00"), ("cash", None, None, "0.00", None)]
    assert await family.balance(grantor) == "6.00"
