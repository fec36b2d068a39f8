"""The binding service's reference projection of settlement.results, through the real broker and
Redis: the ChargeSettled events are published here as settlement publishes them (settlement
never reads its own results, so the platform's settlement running beside binding changes nothing). A dispute is never answered UNKNOWN_REFERENCE off a projection that is behind,
and a payment older than the dispute window is not disputable."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from shared import envelope, topics as t
from shared.envelope import seal
from shared.references import payment_reference
from tests.partners.grantors import Grantors

pytestmark = pytest.mark.integration

HOSPITAL = "H610100-REF"


@pytest.fixture
async def desk(bus, clean_redis, binding_service):
    return Grantors(bus, clean_redis)


def charge_settled(son: dict, father: dict, binding_id: str, charged_at, with_reference: bool = True) -> dict:
    charge_id = f"C{uuid.uuid4().hex[:16]}"
    line = {"source": "grantor", "person_id": son["person_id"], "region": "610100", "payment_order": 1,
            "amount": "42.00", "balance_after": "58.00", "binding_id": binding_id,
            "reference": payment_reference(HOSPITAL, charge_id, son["person_id"])}
    if not with_reference:  # as settlement wrote lines before they named binding and reference
        line = {k: v for k, v in line.items() if k not in ("binding_id", "reference")}
    return {"charge_id": charge_id, "patient_id": father["person_id"], "individual_borne": "42.00",
            "lines": [line, {"source": "cash", "amount": "0.00"}], "institution_code": HOSPITAL,
            "settled_at": envelope.now().isoformat(timespec="seconds"),
            "charged_at": charged_at.isoformat(timespec="seconds")}


async def settle(desk: Grantors, payload: dict) -> str:
    """Publish the ChargeSettled; the grantor's reference of it."""
    await desk.bus.send(t.SETTLEMENT_RESULTS, seal("ChargeSettled", payload), key=payload["charge_id"])
    return payment_reference(HOSPITAL, payload["charge_id"], payload["lines"][0]["person_id"])


@pytest.mark.parametrize("with_reference", [True, False], ids=["line-names-it", "computed"])
async def test_a_dispute_sent_the_moment_its_payment_settles_waits_for_the_projection(desk, with_reference):
    son, father = await desk.person(), await desk.person(scheme="resident")
    binding_id = await desk.bind(son, father)
    reference = await settle(desk, charge_settled(son, father, binding_id, envelope.now(), with_reference))
    opened = await desk.send("DisputePayment", {"reference": reference, "requested_by": son["person_id"],
                                                "channel": "app"}, reference)     # no wait in between
    assert opened["event_type"] == "DisputeOpened", opened["payload"]
    assert (opened["payload"]["binding_id"], opened["payload"]["amount"]) == (binding_id, "42.00")
    assert (await desk.payer(father, binding_id))[0].paused


async def test_a_payment_older_than_the_dispute_window_is_not_disputable(desk):
    son, father = await desk.person(), await desk.person(scheme="resident")
    binding_id = await desk.bind(son, father)
    old = await settle(desk, charge_settled(son, father, binding_id, envelope.now() - timedelta(days=91)))
    recent = await settle(desk, charge_settled(son, father, binding_id, envelope.now() - timedelta(days=89)))
    refused = await desk.send("DisputePayment", {"reference": old, "requested_by": son["person_id"],
                                                 "channel": "app"}, old)
    assert (refused["event_type"], refused["payload"]["reason_code"]) == ("BindingRejected", "UNKNOWN_REFERENCE")
    ttl = await desk.redis.ttl(f"bnd:ref:{son['person_id']}:{recent}")
    assert 0 < ttl <= 86_400 + 60                                      # what is left of the 90 days
