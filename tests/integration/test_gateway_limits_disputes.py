"""Limits, pause and resume, "not me" disputes and the SMS provider's uplink through the HTTP
API: the gateway, binding and settlement services as processes against the real broker and
Redis, driven over HTTP with httpx (I-4, I-6, I-7 of issue 15)."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import uuid

import httpx
import pytest

from shared import topics as t
from shared.envelope import seal
from shared.identity import mask_id_number
from shared.references import payment_reference
from tests.http_api import Family, app_token, auth, gateway_process, is_problem, window_token
from tests.support import (body, charge_submitted, command, eventually, institution_registered,
                           payload_of, person_registered, wait_registered)

pytestmark = pytest.mark.integration

UPLINK_KEY = "integration-tests-sms-uplink-key"
HOSPITAL, HOSPITAL_REGION = "H610300-GWD", "610300"
WINDOW = window_token("clerk-007", "610100")  # a clerk of Xi'an, where the grantors here are insured


@pytest.fixture(scope="module")
def platform(infra, bus, services, tmp_path_factory):
    """The session's platform (notify reads sms.uplink); a gateway with the SMS uplink key and one
    without it."""
    log_dir = tmp_path_factory.mktemp("gateway-limits")
    gateway, url = gateway_process(infra, log_dir, GATEWAY_SMS_UPLINK_KEY=UPLINK_KEY)
    unkeyed, unkeyed_url = gateway_process(infra, log_dir)
    try:
        for process in (gateway, unkeyed):
            process.start()
        yield {"url": url, "unkeyed_url": unkeyed_url}
    finally:
        for process in (unkeyed, gateway):
            process.stop()


@pytest.fixture
async def family(platform, bus, clean_redis):
    async with httpx.AsyncClient(base_url=platform["url"], timeout=30) as http, \
            httpx.AsyncClient(base_url=platform["unkeyed_url"], timeout=30) as unkeyed:
        family = Family(bus, clean_redis, http, impatient=http)
        family.unkeyed = unkeyed
        yield family


async def bound(family, grantor_balance="0.00", beneficiary_scheme="resident") -> tuple[dict, dict, str]:
    son = await family.person(balance=grantor_balance)
    father = await family.person(region=HOSPITAL_REGION, scheme=beneficiary_scheme)
    r = await family.bind(app_token(son), son, father)
    assert r.status_code == 201, r.json()
    return son, father, r.json()["outcome"]["binding_id"]


async def listed(family, person, binding_id) -> dict:
    r = await family.http.get(f"/v1/persons/{person['person_id']}/bindings", headers=auth(WINDOW))
    assert r.status_code == 200, r.json()
    return {b["binding_id"]: b for b in r.json()["bindings"]}[binding_id]


async def test_the_app_grantor_sets_changes_and_clears_a_monthly_limit_and_the_listing_shows_it(family):
    son, father, binding = await bound(family, beneficiary_scheme="employee")
    url, token = f"/v1/bindings/{binding}/limit", auth(app_token(son))
    r = await family.http.put(url, json={"monthly_limit": "500.00"}, headers=token)
    assert r.status_code == 200, r.json()
    assert (r.json()["status"], r.json()["event_type"]) == ("limit_set", "GrantorLimitSet")
    outcome = r.json()["outcome"]
    # Outcomes leave out what is null (the envelope's payloads do): no previous limit.
    assert (outcome["monthly_limit"], outcome.get("previous_limit")) == ("500.00", None)
    assert outcome["grantor_id"] == mask_id_number(son["person_id"])
    [sent] = await family.bus.watchers[t.BINDING_COMMANDS].wait_for(
        lambda m: body(m)["event_id"] == r.json()["command_id"])
    assert sent.key == binding.encode()
    assert payload_of(sent) == {"binding_id": binding, "monthly_limit": "500.00", "requested_by": son["person_id"],
                                "channel": "app"}
    assert (await listed(family, son, binding))["monthly_limit"] == "500.00"

    r = await family.http.put(url, json={"monthly_limit": "0"}, headers=token)
    assert r.json()["outcome"]["monthly_limit"] == "0.00" and r.json()["outcome"]["previous_limit"] == "500.00"
    r = await family.http.put(url, json={"monthly_limit": None}, headers=token)
    assert (r.json()["outcome"].get("monthly_limit"), r.json()["outcome"]["previous_limit"]) == (None, "0.00")
    assert (await listed(family, son, binding))["monthly_limit"] is None

    assert is_problem(await family.http.put(url, json={"monthly_limit": "1000000.01"}, headers=token), 422,
                      "INVALID_LIMIT")
    assert is_problem(await family.http.put(url, json={"monthly_limit": 500}, headers=token), 422, "INVALID_LIMIT")
    # The beneficiary (an employee, with a token of his own) is not the grantor.
    assert is_problem(await family.http.put(url, json={"monthly_limit": "1.00"}, headers=auth(app_token(father))),
                      403, "NOT_GRANTOR")
    assert is_problem(await family.http.put("/v1/bindings/BND-nothing/limit", json={"monthly_limit": "1.00"},
                                            headers=token), 404, "BINDING_NOT_FOUND")


async def test_a_window_pauses_and_resumes_for_the_grantor_each_refused_twice_and_audited(family):
    son, father, binding = await bound(family)
    grantor = {"requested_by": son["person_id"]}
    paused = await family.http.post(f"/v1/bindings/{binding}/pause", json=grantor, headers=auth(WINDOW))
    assert paused.status_code == 200, paused.json()
    assert paused.json()["status"] == "paused" and paused.json()["outcome"]["cause"] == "grantor"
    audit = await family.audited(paused.json()["command_id"])
    assert {k: audit["payload"][k] for k in ("clerk_id", "action", "outcome", "binding_id", "subject_id")} == {
        "clerk_id": "clerk-007", "action": "pause_binding", "outcome": "paused", "binding_id": binding,
        "subject_id": mask_id_number(son["person_id"])}
    [sent] = await family.bus.watchers[t.BINDING_COMMANDS].wait_for(
        lambda m: body(m)["event_id"] == paused.json()["command_id"])
    assert (payload_of(sent)["channel"], payload_of(sent)["clerk_id"]) == ("window", "clerk-007")
    assert (await listed(family, father, binding))["paused"] is True
    again = await family.http.post(f"/v1/bindings/{binding}/pause", json=grantor, headers=auth(WINDOW))
    assert is_problem(again, 409, "ALREADY_PAUSED")
    assert (await family.audited(again.json()["command_id"]))["payload"]["reason_code"] == "ALREADY_PAUSED"
    neighbour = await family.person()  # of the clerk's region, but not the grantor
    assert is_problem(await family.http.post(f"/v1/bindings/{binding}/resume", json={"requested_by": neighbour[
        "person_id"]}, headers=auth(WINDOW)), 403, "NOT_GRANTOR")
    assert is_problem(await family.http.post(f"/v1/bindings/{binding}/resume", json={"requested_by": father[
        "person_id"]}, headers=auth(WINDOW)), 403)  # a grantor of Baoji: not this clerk's to act for
    assert is_problem(await family.http.post(f"/v1/bindings/{binding}/resume", json={}, headers=auth(WINDOW)), 422,
                      "INVALID_COMMAND")

    resumed = await family.http.post(f"/v1/bindings/{binding}/resume", json=grantor, headers=auth(WINDOW))
    assert resumed.status_code == 200 and resumed.json()["status"] == "resumed"
    assert (await family.audited(resumed.json()["command_id"]))["payload"]["action"] == "resume_binding"
    assert (await listed(family, father, binding))["paused"] is False
    assert is_problem(await family.http.post(f"/v1/bindings/{binding}/resume", json={},
                                             headers=auth(app_token(son))), 409, "NOT_PAUSED")


async def settle(family, patient, fen) -> dict:
    charge = charge_submitted(patient, HOSPITAL, HOSPITAL_REGION, fen)
    await family.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=patient["person_id"])
    [settled] = await family.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: payload_of(r).get("charge_id") == charge["charge_id"])
    assert body(settled)["event_type"] == "ChargeSettled", payload_of(settled)
    return charge


async def hospital(family) -> None:
    await family.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", institution_registered(
        HOSPITAL, HOSPITAL_REGION, "宝鸡争议测试医院")), key=HOSPITAL)
    await eventually(lambda: family.redis.hget("stl:inst", HOSPITAL), 30, "the hospital registered")


async def test_a_grantor_disputes_a_payment_by_its_reference_which_pauses_the_binding_until_decided(family):
    await hospital(family)
    son, father, binding = await bound(family, grantor_balance="300.00")
    charge = await settle(family, father, 4560)
    reference = payment_reference(HOSPITAL, charge["charge_id"], son["person_id"])
    token = auth(app_token(son))

    typed = f"bf {reference[:4].lower()} {reference[4:].lower()}"   # as the SMS reply form, typed loosely
    r = await family.http.post("/v1/disputes", json={"reference": typed}, headers=token)
    assert r.status_code == 201, r.json()
    opened = r.json()["outcome"]
    assert (r.json()["status"], r.json()["event_type"]) == ("dispute_opened", "DisputeOpened")
    assert (opened["reference"], opened["binding_id"], opened["charge_id"], opened["amount"], opened["channel"]) == (
        reference, binding, charge["charge_id"], "45.60", "app")
    assert opened["beneficiary_id"] == mask_id_number(father["person_id"])
    [sent] = await family.bus.watchers[t.BINDING_COMMANDS].wait_for(
        lambda m: body(m)["event_id"] == r.json()["command_id"])
    assert sent.key == reference.encode() and payload_of(sent)["requested_by"] == son["person_id"]
    assert (await listed(family, son, binding))["paused"] is True

    assert is_problem(await family.http.post("/v1/disputes", json={"reference": reference}, headers=token), 409,
                      "ALREADY_DISPUTED")
    assert is_problem(await family.http.post(f"/v1/bindings/{binding}/resume", json={}, headers=token), 409,
                      "DISPUTE_OPEN")
    unknown = payment_reference(HOSPITAL, "C-never-charged", son["person_id"])
    assert is_problem(await family.http.post("/v1/disputes", json={"reference": unknown}, headers=token), 404,
                      "UNKNOWN_REFERENCE")
    # The reference is the son's: another grantor (were he to dispute it) has paid nothing by it.
    neighbour = await family.person()
    assert is_problem(await family.http.post("/v1/disputes", json={"reference": reference, "grantor_id": neighbour[
        "person_id"]}, headers=auth(WINDOW)), 404, "UNKNOWN_REFERENCE")

    mine = await family.http.get(f"/v1/persons/{son['person_id']}/disputes", headers=token)
    assert mine.status_code == 200, mine.json()
    [dispute] = mine.json()["disputes"]
    assert (dispute["dispute_id"], dispute["status"], dispute["reference"], dispute["amount"]) == (
        opened["dispute_id"], "open", reference, "45.60")
    assert dispute["beneficiary_id"] == mask_id_number(father["person_id"]) and dispute["decided_at"] is None
    assert is_problem(await family.http.get(f"/v1/persons/{son['person_id']}/disputes",
                                            headers=auth(app_token(father))), 403)
    by_window = await family.http.get(f"/v1/persons/{son['person_id']}/disputes", headers=auth(WINDOW))
    assert by_window.json()["disputes"] == mine.json()["disputes"]
    [audit] = await family.bus.watchers[t.GATEWAY_AUDIT].wait_for(
        lambda m: payload_of(m).get("action") == "list_disputes"
        and payload_of(m).get("subject_id") == mask_id_number(son["person_id"]))
    assert payload_of(audit)["outcome"] == "answered"


async def test_a_window_files_a_dispute_for_the_grantor_it_names(family):
    await hospital(family)
    son, father, binding = await bound(family, grantor_balance="100.00")
    charge = await settle(family, father, 1230)
    reference = payment_reference(HOSPITAL, charge["charge_id"], son["person_id"])
    assert is_problem(await family.http.post("/v1/disputes", json={"reference": reference}, headers=auth(WINDOW)),
                      422, "INVALID_COMMAND")
    r = await family.http.post("/v1/disputes", json={"reference": reference, "grantor_id": son["person_id"]},
                               headers=auth(WINDOW))
    assert r.status_code == 201, r.json()
    assert r.json()["outcome"]["channel"] == "window"
    audit = await family.audited(r.json()["command_id"])
    assert {k: audit["payload"][k] for k in ("action", "outcome", "binding_id", "subject_id")} == {
        "action": "dispute_payment", "outcome": "dispute_opened", "binding_id": binding,
        "subject_id": mask_id_number(son["person_id"])}


async def test_the_consumption_shows_each_beneficiarys_limit_used_and_left_this_month(family):
    await hospital(family)
    son, father, binding = await bound(family, grantor_balance="500.00")
    token = auth(app_token(son))
    assert (await family.http.put(f"/v1/bindings/{binding}/limit", json={"monthly_limit": "100.00"},
                                  headers=token)).status_code == 200
    await settle(family, father, 1230)
    view = (await family.http.get(f"/v1/grantors/{son['person_id']}/consumption", headers=token)).json()
    [beneficiary] = view["beneficiaries"]
    assert {k: beneficiary[k] for k in ("binding_id", "monthly_limit", "used_this_month", "left_this_month",
                                        "paused")} == {
        "binding_id": binding, "monthly_limit": "100.00", "used_this_month": "12.30", "left_this_month": "87.70",
        "paused": False}


def signed(raw: bytes, key: str = UPLINK_KEY) -> dict[str, str]:
    return {"X-Signature": hmac.new(key.encode(), raw, hashlib.sha256).hexdigest(),
            "content-type": "application/json"}


def sms_reply(**changes) -> bytes:
    return json.dumps({"message_id": f"up-{uuid.uuid4().hex[:12]}", "phone": "13812345678",
                       "text": "BF 7K2P9QXM", "received_at": "2026-11-20T10:20:00+08:00"} | changes,
                      ensure_ascii=False).encode()


async def test_the_sms_providers_signed_reply_is_put_on_sms_uplink(family):
    raw = sms_reply(text="bf7k2p9qxm 不是我")
    message_id = json.loads(raw)["message_id"]
    r = await family.http.post("/v1/sms/inbound", content=raw, headers=signed(raw))   # no bearer token
    assert r.status_code == 202, r.json()
    assert r.json() == {"message_id": message_id, "status": "accepted"}
    again = await family.http.post("/v1/sms/inbound", content=raw, headers=signed(raw))   # the provider retried
    assert again.status_code == 202
    records = await family.bus.watchers[t.SMS_UPLINK].wait_for(lambda m: m.key == message_id.encode(), count=2)
    assert {body(m)["event_id"] for m in records} == {body(records[0])["event_id"]}   # one event, twice
    assert body(records[0])["event_type"] == "SmsReplyReceived"
    assert payload_of(records[0]) == json.loads(raw)


async def test_a_grantors_sms_reply_through_the_uplink_disputes_the_payment_it_names(family):
    """The whole path of "回复BF{reference}": the provider's callback, notify (phone -> grantor),
    the binding service (the dispute opened, the binding paused)."""
    await hospital(family)
    # A phone of his own: notify reads a reply as its one registered person's.
    son = person_registered(balance="100.00", phone=f"139{random.randrange(10**8):08d}")
    await family.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", son), key=son["person_id"])
    await wait_registered(family.redis, [son["person_id"]], timeout=30)
    father = await family.person(region=HOSPITAL_REGION, scheme="resident")
    created = await family.bind(app_token(son), son, father)
    assert created.status_code == 201, created.json()
    binding = created.json()["outcome"]["binding_id"]
    charge = await settle(family, father, 999)
    reference = payment_reference(HOSPITAL, charge["charge_id"], son["person_id"])
    # Notify has told the grantor of the payment: it knows his phone.
    await family.bus.watchers[t.NOTIFY_DELIVERIES].wait_for(
        lambda m: payload_of(m).get("charge_id") == charge["charge_id"]
        and payload_of(m).get("recipient_role") == "grantor")
    raw = sms_reply(phone=son["phone"], text=f"BF{reference}")
    r = await family.http.post("/v1/sms/inbound", content=raw, headers=signed(raw))
    assert r.status_code == 202, r.json()
    [opened] = await family.bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda m: body(m)["event_type"] == "DisputeOpened" and payload_of(m).get("reference") == reference)
    assert (payload_of(opened)["binding_id"], payload_of(opened)["channel"]) == (binding, "sms")
    assert (await listed(family, son, binding))["paused"] is True
    [dispute] = (await family.http.get(f"/v1/persons/{son['person_id']}/disputes",
                                       headers=auth(app_token(son)))).json()["disputes"]
    assert (dispute["reference"], dispute["status"]) == (reference, "open")


async def test_an_uplink_call_badly_signed_too_large_or_malformed_is_refused_and_nothing_is_published(family):
    raw = sms_reply()
    refused = [("bad signature", raw, signed(raw, "another-uplink-key-entirely"), 401),
               ("no signature", raw, {"content-type": "application/json"}, 401),
               ("signature of another body", sms_reply(), signed(raw), 401)]
    big = sms_reply(text="x" * 4200)
    refused.append(("over 4 KiB", big, signed(big), 413))
    for bad in (sms_reply(text="x" * 161), sms_reply(phone="12345"), sms_reply(received_at=1763605200), b"{nope",
                raw[:-1] + b', "extra": 1}'):
        refused.append(("malformed", bad, signed(bad), 422))
    for why, content, headers, status in refused:
        r = await family.http.post("/v1/sms/inbound", content=content, headers=headers)
        assert is_problem(r, status), why
        assert "13812345678" not in r.text
    # Without GATEWAY_SMS_UPLINK_KEY the endpoint does not exist.
    assert is_problem(await family.unkeyed.post("/v1/sms/inbound", content=raw, headers=signed(raw)), 404)
    good = sms_reply()
    assert (await family.http.post("/v1/sms/inbound", content=good, headers=signed(good))).status_code == 202
    await family.bus.watchers[t.SMS_UPLINK].wait_for(lambda m: m.key == json.loads(good)["message_id"].encode())
    # Everything refused before it was published nothing.
    assert not family.bus.watchers[t.SMS_UPLINK].matching(lambda m: m.key == json.loads(raw)["message_id"].encode())
