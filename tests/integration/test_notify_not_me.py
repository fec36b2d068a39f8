"""非本人授权 end to end, the SMS way, with binding, settlement and notify running as processes and
notify's HTTP adapter pointed at a gateway that records every request (the session's, tests/integration/conftest.py):
the payment SMS carries the reference, the grantor replies "bf <reference>" from the registered
phone, binding opens the dispute and pauses the binding, and the grantor hears of each step by SMS
(the beneficiary hears of the pause); the bureau's decision is told too."""

from __future__ import annotations

import json
import uuid

import pytest

from shared import envelope, topics as t
from shared.envelope import seal
from tests.partners.notified import NotifiedFamily, notify_group, sms
from tests.support import body, command, handled, payload_of

pytestmark = pytest.mark.integration


@pytest.fixture
async def family(bus, clean_redis, services):
    family = NotifiedFamily(bus, clean_redis)
    await family.institution()
    return family


async def test_a_grantor_disputes_a_payment_by_replying_to_its_sms_and_hears_of_each_step(family, sms_gateway, services):
    mother, son = await family.person(scheme="resident"), await family.person(balance="300.00")
    await family.bind(son, mother)
    settled = await family.charge(mother, "128.50")
    [line] = [x for x in payload_of(settled)["lines"] if x["source"] == "grantor"]
    [payment] = await sms(sms_gateway, son["phone"], "payment")
    reference = json.loads(payment["TemplateParam"])["reference"]
    assert reference == line["reference"]

    reply = seal("SmsReplyReceived", {"message_id": f"up-{uuid.uuid4().hex[:12]}", "phone": son["phone"],
                                      "text": f"bf {reference.lower()}",
                                      "received_at": envelope.now().isoformat(timespec="seconds")})
    await family.bus.send(t.SMS_UPLINK, reply, key="up")
    [opened] = await family.bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: body(r)["event_type"] == "DisputeOpened" and payload_of(r)["grantor_id"] == son["person_id"])
    assert payload_of(opened)["channel"] == "sms" and payload_of(opened)["reference"] == reference

    [to_son] = await sms(sms_gateway, son["phone"], "dispute_opened")
    assert json.loads(to_son["TemplateParam"])["reference"] == reference
    # The pause is told to the beneficiary; the grantor, who asked for it, hears of the dispute
    # only: asserted once notify has handled the BindingPaused (committed past it).
    [paused] = await family.bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: body(r)["event_type"] == "BindingPaused"
        and payload_of(r).get("dispute_id") == payload_of(opened)["dispute_id"])
    await handled(family.bus, notify_group(services, t.BINDING_EVENTS), paused)
    assert "binding_paused_grantor" not in [r["TemplateCode"] for r in sms_gateway.to(son["phone"])]
    told = [r["TemplateCode"] for r in sms_gateway.to(mother["phone"])]
    assert told == ["binding_created_beneficiary", "binding_paused_beneficiary"]

    decided = {"dispute_id": payload_of(opened)["dispute_id"], "region": son["region"], "decision": "upheld",
               "decided_at": envelope.now().isoformat(timespec="seconds")}
    await family.bus.send(t.BUREAU_DISPUTES, command("DisputeDecided", decided), key=decided["dispute_id"])
    upheld = await sms(sms_gateway, son["phone"], "dispute_upheld")
    assert len(upheld) == 1 and json.loads(upheld[0]["TemplateParam"])["reference"] == reference
