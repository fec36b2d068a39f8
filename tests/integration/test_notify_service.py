"""The notify service through the real broker and Redis, its HTTP adapter pointed at a local
gateway that records every request, with the binding and settlement services beside it. (Its
at-most-once paths, driven with an injected clock, are in test_notify_at_most_once.py.)"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta

import pytest

from shared import topics as t
from shared.envelope import CHINA_TZ, seal
from services.notify.usecases import short_masked_name
from tests.partners.notified import NOTIFIED_HOSPITAL_NAME as HOSPITAL_NAME, NotifiedFamily as Family, notify_group, sms
from tests.support import Reply, body, china_today, handled, institution_registered, new_person_id, payload_of

pytestmark = pytest.mark.integration

UNAVAILABLE = Reply(503, json.dumps({"Code": "ServiceUnavailable", "Message": "try later"}).encode())


@pytest.fixture
async def family(bus, clean_redis, services):
    family = Family(bus, clean_redis)
    await family.institution()
    return family


async def test_a_payment_by_the_grantor_sends_one_sms_with_amount_and_balance(family, sms_gateway):
    mother = await family.person(scheme="resident")
    son = await family.person(balance="300.00")
    await family.bind(son, mother)
    settled = await family.charge(mother, "128.50")
    await sms_gateway.wait_for(son["phone"], count=2)  # the binding's SMS, then the payment's
    payment = [r for r in sms_gateway.to(son["phone"]) if r["TemplateCode"] == "payment"]
    assert len(payment) == 1
    params = json.loads(payment[0]["TemplateParam"])
    assert (params["amount"], params["balance"]) == ("128.50", "171.50")
    assert params["institution"] == HOSPITAL_NAME
    assert params["beneficiary"] == short_masked_name(mother["name"]) != mother["name"]
    assert payment[0]["signed"] and payment[0]["SignName"] == "陕西医保"
    [sent] = await family.deliveries(lambda b: b["payload"].get("source_event_id") == body(settled)["event_id"])
    assert sent["event_type"] == "SmsSent" and sent["payload"]["recipient_role"] == "grantor"
    assert sent["payload"]["phone"] == son["phone"][:3] + "****" + son["phone"][-4:]
    assert sent["payload"]["charge_id"] == payload_of(settled)["charge_id"] and sent["payload"]["segments"] <= 2


async def test_no_sms_when_only_the_own_account_and_cash_pay(family, sms_gateway, bus, services):
    patient = await family.person(balance="10.00")
    settled = await family.charge(patient, "25.00")
    assert [x["source"] for x in payload_of(settled)["lines"]] == ["own", "cash"]
    await handled(bus, notify_group(services, t.SETTLEMENT_RESULTS), settled)  # notify has read it
    assert sms_gateway.to(patient["phone"]) == []
    assert family.bus.watchers[t.NOTIFY_DELIVERIES].matching(
        lambda r: payload_of(r).get("source_event_id") == body(settled)["event_id"]) == []


async def test_the_same_event_delivered_twice_sends_once(family, sms_gateway, bus):
    mother, son = await family.person(scheme="resident"), await family.person(balance="50.00")
    await family.bind(son, mother)
    settled = await family.charge(mother, "5.00")
    await sms(sms_gateway, son["phone"], "payment")
    await bus.send(t.SETTLEMENT_RESULTS, settled.value, key=settled.key.decode())   # redelivery
    outcomes = await family.deliveries(lambda b: b["payload"].get("source_event_id") == body(settled)["event_id"],
                                       count=2)
    assert outcomes[0] == outcomes[1]
    assert len([r for r in sms_gateway.to(son["phone"]) if r["TemplateCode"] == "payment"]) == 1


async def test_a_gateway_failing_twice_then_succeeding_sends_once(family, sms_gateway):
    mother, son = await family.person(scheme="resident"), await family.person(balance="50.00")
    await family.bind(son, mother)
    await sms_gateway.wait_for(son["phone"])
    sms_gateway.plan[son["phone"]] = [UNAVAILABLE, UNAVAILABLE]
    settled = await family.charge(mother, "5.00")
    [sent] = await family.deliveries(lambda b: b["payload"].get("source_event_id") == body(settled)["event_id"])
    assert sent["event_type"] == "SmsSent"
    payment = [r for r in sms_gateway.to(son["phone"]) if r["TemplateCode"] == "payment"]
    assert len(payment) == 3 and len({r["OutId"] for r in payment}) == 1


async def test_a_gateway_that_keeps_failing_ends_in_sms_failed_and_the_consumer_goes_on(family, sms_gateway):
    mother, son = await family.person(scheme="resident"), await family.person(balance="50.00")
    await family.bind(son, mother)
    await sms_gateway.wait_for(son["phone"])
    sms_gateway.plan[son["phone"]] = [UNAVAILABLE] * 10
    settled = await family.charge(mother, "5.00")
    [failed] = await family.deliveries(lambda b: b["payload"].get("source_event_id") == body(settled)["event_id"])
    assert failed["event_type"] == "SmsFailed"
    assert (failed["payload"]["reason"], failed["payload"]["detail"]) == ("gateway_unavailable", "HTTP 503")
    assert failed["payload"]["attempts"] == 3
    father, daughter = await family.person(scheme="resident"), await family.person(balance="9.00")
    await family.bind(daughter, father)
    [created] = await sms_gateway.wait_for(daughter["phone"])
    assert created["TemplateCode"] == "binding_created_grantor"


async def test_binding_created_tells_the_grantor_and_a_beneficiary_with_a_phone(family, sms_gateway):
    mother, son = await family.person(scheme="resident"), await family.person(balance="1.00")
    await family.bind(son, mother)
    [to_son] = await sms_gateway.wait_for(son["phone"])
    [to_mother] = await sms_gateway.wait_for(mother["phone"])
    assert to_son["TemplateCode"] == "binding_created_grantor"
    assert to_mother["TemplateCode"] == "binding_created_beneficiary"


async def test_a_binding_ending_within_7_days_is_announced_once(family, sms_gateway):
    soon = china_today() + timedelta(days=3)
    mother, son = await family.person(scheme="resident"), await family.person(balance="1.00")
    await family.bind(son, mother, end=soon)
    await sms(sms_gateway, son["phone"], "binding_ending_grantor")
    # A second binding ending soon is announced by a later run of the check, a run that saw the
    # first binding again: it must not have been told twice. A run publishes its outcomes once
    # every SMS of it was sent: the daughter's outcome means that run is over.
    father, daughter = await family.person(scheme="resident"), await family.person(balance="1.00")
    created = await family.bind(daughter, father, end=soon)
    await family.deliveries(lambda b: b["payload"]["binding_id"] == created["payload"]["binding_id"]
                            and b["payload"]["template"] == "binding_ending_grantor")
    for grantor in (son, daughter):
        assert [r["TemplateCode"] for r in sms_gateway.to(grantor["phone"])].count("binding_ending_grantor") == 1


async def test_no_full_name_id_number_or_phone_reaches_a_log_or_an_sms(family, sms_gateway, services):
    mother, son = await family.person(scheme="resident"), await family.person(balance="80.00")
    await family.bind(son, mother)
    settled = await family.charge(mother, "20.00")
    await sms(sms_gateway, son["phone"], "payment")
    # Every service done with what it was sent, its log lines about it written: each commits a
    # record after handling it.
    [bound] = await family.bus.watchers[t.BINDING_COMMANDS].wait_for(
        lambda r: payload_of(r)["beneficiary"]["id_number"] == mother["person_id"])
    [charged] = await family.bus.watchers[t.HIS_CHARGES].wait_for(
        lambda r: payload_of(r)["charge_id"] == payload_of(settled)["charge_id"])
    await handled(family.bus, f"binding.{t.BINDING_COMMANDS}", bound)
    await handled(family.bus, f"settlement.{t.HIS_CHARGES}", charged)
    await handled(family.bus, notify_group(services, t.SETTLEMENT_RESULTS), settled)
    logs = "".join(s.log_text() for s in services.values())
    texts = json.dumps([json.loads(r["TemplateParam"]) for r in sms_gateway.requests], ensure_ascii=False)
    for p in family.people:
        for secret in (p["person_id"], p["name"], p.get("phone")):
            if secret:
                assert secret not in logs
                assert secret not in texts


async def test_a_beneficiary_without_a_phone_gets_nothing_and_no_failure_is_reported(family, sms_gateway, services):
    child, parent = await family.person(scheme="resident", phone=False), await family.person(balance="1.00")
    created = await family.bind(parent, child)
    [to_parent] = await family.deliveries(lambda b: b["payload"].get("source_event_id") == created["event_id"])
    assert to_parent["payload"]["recipient_role"] == "grantor"
    await handled(family.bus, notify_group(services, t.BINDING_EVENTS), family.records[created["event_id"]])
    assert family.bus.watchers[t.NOTIFY_DELIVERIES].matching(
        lambda r: payload_of(r).get("source_event_id") == created["event_id"]
        and payload_of(r)["recipient_role"] == "beneficiary") == []


async def test_after_a_restart_with_a_backlog_notify_reads_people_and_institutions_before_answering(
        family, sms_gateway, services, bus):
    notify = services["notify"]
    original = dict(notify.env)
    notify.stop()
    try:
        # No patience for unknown people: only reading the projections first keeps this payment
        # from ending as `no_phone`.
        notify.env = {**original, "NOTIFY_UNKNOWN_PERSON_WAIT_SECONDS": "0"}
        code = f"H{random.randrange(10**8):08d}"
        await bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", institution_registered(
            code, "610100", name="渭南市中医医院")), key=code)
        people = [{"person_id": new_person_id(), "name": f"测试{i % 10}明", "region": "610100",
                   "scheme": "employee", "employer": "单位", "balance": "9.00",
                   "phone": f"136{random.randrange(10**8):08d}"} for i in range(400)]
        for p in people:  # a backlog on bureau.accounts, the grantor and the patient at its end
            await bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
        grantor, patient = people[-1], people[-2]
        now = datetime.now(CHINA_TZ).isoformat(timespec="seconds")
        settled = seal("ChargeSettled", {
            "charge_id": f"C{uuid.uuid4().hex[:12]}", "patient_id": patient["person_id"], "individual_borne": "3.00",
            "institution_code": code, "charged_at": now, "settled_at": now, "lines": [
                {"source": "grantor", "person_id": grantor["person_id"], "region": "610100", "payment_order": 1,
                 "amount": "3.00", "balance_after": "6.00"}]})
        await bus.send(t.SETTLEMENT_RESULTS, settled, key=patient["person_id"])
        notify.start()
        event_id = json.loads(settled)["event_id"]
        [outcome] = await family.deliveries(lambda b: b["payload"].get("source_event_id") == event_id)
        assert (outcome["event_type"], outcome["payload"].get("reason")) == ("SmsSent", None)
        [request] = sms_gateway.to(grantor["phone"])
        params = json.loads(request["TemplateParam"])
        assert (params["institution"], params["beneficiary"]) == ("渭南市中医医院", short_masked_name(patient["name"]))
    finally:
        notify.stop()
        notify.env = original
        notify.start()
