"""Notify's part of issue 15 through the real broker and Redis, notify running as production runs
it (its local sink provider keeps every SMS in Redis, `ntf:sink`): the payment SMS carries the
payment's reference, and each new binding event (pause, resume, limit, dispute opened and decided)
gives the grantor one SMS, however often it is delivered. Binding's events are published here as
binding publishes them (I-4, I-5), so these tests need only notify. (The SMS uplink:
test_sms_uplink.py.)"""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from shared import topics as t
from shared.envelope import CHINA_TZ, seal
from shared.references import payment_reference
from tests.partners.town import TOWN_HOSPITAL as HOSPITAL, TOWN_HOSPITAL_NAME as HOSPITAL_NAME

pytestmark = pytest.mark.integration



def now() -> str:
    return datetime.now(CHINA_TZ).isoformat(timespec="seconds")


def settled(grantor: dict, patient: dict, amount: str = "128.50", with_reference: bool = True) -> tuple[bytes, str]:
    charge_id = f"C{uuid.uuid4().hex[:12]}"
    reference = payment_reference(HOSPITAL, charge_id, grantor["person_id"])
    line = {"source": "grantor", "person_id": grantor["person_id"], "region": "610100", "payment_order": 1,
            "amount": amount, "balance_after": "71.50", "binding_id": "B1"}
    if with_reference:
        line["reference"] = reference
    return seal("ChargeSettled", {
        "charge_id": charge_id, "patient_id": patient["person_id"], "institution_code": HOSPITAL,
        "individual_borne": amount, "charged_at": now(), "settled_at": now(), "lines": [line]}), reference


@pytest.mark.parametrize("with_reference", [True, False], ids=["given", "derived"])
async def test_a_payment_sms_carries_the_payments_reference(town, with_reference):
    grantor, patient = await town.person(), await town.person()
    event, reference = settled(grantor, patient, with_reference=with_reference)
    await town.bus.send(t.SETTLEMENT_RESULTS, event, key=patient["person_id"])
    [sent] = await town.outcomes(event)
    assert sent["event_type"] == "SmsSent" and sent["payload"]["template"] == "payment"
    assert sent["payload"]["segments"] <= 2
    [sms] = [s for s in await town.sink() if s["message_id"] == sent["payload"]["message_id"]]
    assert f"非本人授权请回复BF{reference}或致电12393" in sms["text"] and HOSPITAL_NAME in sms["text"]
    assert sms["params"]["reference"] == reference


def binding_event(event_type: str, grantor: dict, beneficiary: dict, **fields) -> bytes:
    payload = {"command_id": str(uuid.uuid4()), "binding_id": f"B{uuid.uuid4().hex[:12]}",
               "grantor_id": grantor["person_id"], "beneficiary_id": beneficiary["person_id"], **fields}
    return seal(event_type, payload)


def dispute(decided: str | None = None) -> dict:
    common = {"dispute_id": f"D{uuid.uuid4().hex[:12]}", "charge_id": f"C{uuid.uuid4().hex[:12]}",
              "institution_code": HOSPITAL, "amount": "128.50"}
    if decided is None:
        return common | {"reference": "7K2P9QXM", "channel": "sms", "opened_at": now()}
    return common | {"decision": decided, "decided_at": now()}


NEWS = [  # (event type, its fields, the grantor's template, the beneficiary's template or None)
    ("BindingPaused", {"cause": "grantor", "dispute_id": None}, "binding_paused_grantor", "binding_paused_beneficiary"),
    ("BindingResumed", {}, "binding_resumed_grantor", "binding_resumed_beneficiary"),
    ("GrantorLimitSet", {"monthly_limit": "500.00", "previous_limit": None}, "grantor_limit_set", None),
    ("GrantorLimitSet", {"monthly_limit": None, "previous_limit": "500.00"}, "grantor_limit_cleared", None),
    ("DisputeOpened", dispute(), "dispute_opened", None),
    ("DisputeResolved", dispute("upheld"), "dispute_upheld", None),
    ("DisputeResolved", dispute("dismissed"), "dispute_dismissed", None),
]


@pytest.mark.parametrize("event_type,fields,template,to_beneficiary", NEWS, ids=[n[2] for n in NEWS])
async def test_each_binding_news_gives_the_grantor_one_sms_however_often_it_is_delivered(
        town, event_type, fields, template, to_beneficiary):
    grantor, beneficiary = await town.person(), await town.person()
    event = binding_event(event_type, grantor, beneficiary, **fields)
    await town.bus.send(t.BINDING_EVENTS, event, key=beneficiary["person_id"])
    [first] = await town.outcomes(event, role="grantor")
    await town.bus.send(t.BINDING_EVENTS, event, key=beneficiary["person_id"])   # redelivered
    again = await town.outcomes(event, count=2, role="grantor")
    assert again[1] == first and first["event_type"] == "SmsSent"
    assert first["payload"]["template"] == template and first["payload"]["segments"] <= 2
    sent = [s for s in await town.sink() if s["template"] == template]
    assert len(sent) == 1 and sent[0]["message_id"] == first["payload"]["message_id"]
    if to_beneficiary:
        [told] = await town.outcomes(event, role="beneficiary")
        assert told["payload"]["template"] == to_beneficiary
    texts = " ".join(s["text"] for s in await town.sink())
    for secret in (grantor["person_id"], grantor["name"], grantor["phone"], beneficiary["name"]):
        assert secret not in texts


async def test_a_pause_for_a_dispute_is_told_to_the_grantor_by_the_dispute_alone(town):
    grantor, beneficiary = await town.person(), await town.person()
    opened = dispute()
    paused = binding_event("BindingPaused", grantor, beneficiary, cause="dispute", dispute_id=opened["dispute_id"])
    disputed = binding_event("DisputeOpened", grantor, beneficiary, **opened)
    await town.bus.send(t.BINDING_EVENTS, paused, key=beneficiary["person_id"])
    await town.bus.send(t.BINDING_EVENTS, disputed, key=beneficiary["person_id"])
    [told] = await town.outcomes(paused)     # the beneficiary's, without the cause
    [answer] = await town.outcomes(disputed)
    assert (told["payload"]["recipient_role"], told["payload"]["template"]) == ("beneficiary",
                                                                                "binding_paused_beneficiary")
    assert answer["payload"]["template"] == "dispute_opened"
    [sms] = [s for s in await town.sink() if s["template"] == "dispute_opened"]
    assert "7K2P9QXM" in sms["text"] and HOSPITAL_NAME in sms["text"]
    assert not [s for s in await town.sink() if s["template"] == "binding_paused_grantor"]
