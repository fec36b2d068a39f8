"""Limits, pause and resume, disputes and the SMS uplink at the gateway's HTTP edge, without
Kafka: what each request sends (I-4, I-6), how the binding service's answers become statuses,
and the uplink's signature and bounds. The broker is tests/gateway_stand_in.py's; the real
services: tests/integration/test_gateway_limits_disputes.py."""

import json

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.gateway.app import http_api
from services.gateway.config import GatewaySettings
from services.gateway.domain import uplink
from services.gateway.metrics import GatewayMetrics
from services.gateway.replies import PendingReplies, Requests
from services.gateway.usecases import GatewayService
from tests.gateway_stand_in import APP, FATHER, ISSUERS, ME, OTHER, UNREAD, WINDOW, Broker, problem

UPLINK_KEY = b"unit-tests-sms-uplink-key"
REPLY = {"message_id": "up-000123", "phone": "13812345678", "text": "BF 7K2P9QXM",
         "received_at": "2026-11-20T10:20:00+08:00"}


async def gateway(uplink_key: bytes | None):
    settings = GatewaySettings(gateway_token_issuers=UNREAD)
    pending = PendingReplies()
    broker = Broker(pending)
    service = GatewayService(Requests(broker, pending, "reply.gateway.unit"), broker, command_timeout=0.2,
                             query_timeout=0.2, uplink_key=uplink_key)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=http_api(settings, service, GatewayMetrics(
        CollectorRegistry()), ISSUERS.trusted())), base_url="http://gateway")
    client.broker = broker
    return client


@pytest.fixture
async def api():
    async with await gateway(UPLINK_KEY) as client:
        yield client


@pytest.fixture
async def closed():
    async with await gateway(None) as client:
        yield client


def outcome(event_type, **fields):
    return lambda p: (event_type, {"binding_id": p.get("binding_id", "BND-1"), "grantor_id": ME,
                                   "beneficiary_id": FATHER, **fields})


@pytest.mark.parametrize("limit", ["500.00", "0", "0.00", "1000000.00", "12.5", None])
async def test_a_limit_is_sent_as_set_grantor_limit_keyed_by_the_binding(api, limit):
    api.broker.answers["SetGrantorLimit"] = outcome("GrantorLimitSet", monthly_limit=limit, previous_limit=None)
    r = await api.put("/v1/bindings/BND-1/limit", json={"monthly_limit": limit}, headers=APP)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "limit_set" and r.json()["event_type"] == "GrantorLimitSet"
    [(topic, key, sent)] = api.broker.sent
    assert (topic, key, sent["event_type"]) == ("binding.commands", b"BND-1", "SetGrantorLimit")
    expected = None if limit is None else {"0": "0.00", "12.5": "12.50"}.get(limit, limit)
    assert sent["payload"] == {"binding_id": "BND-1", "monthly_limit": expected, "requested_by": ME,
                               "channel": "app"}


@pytest.mark.parametrize("limit", ["1000000.01", "-1.00", "12.345", 500, "5e2", "", True])
async def test_a_limit_out_of_bounds_or_not_a_yuan_string_is_invalid_limit_and_nothing_is_sent(api, limit):
    r = await api.put("/v1/bindings/BND-1/limit", json={"monthly_limit": limit}, headers=APP)
    body = problem(r, 422, "INVALID_LIMIT")
    assert body["message_zh"] and body["message_en"] and api.broker.sent == []


async def test_a_limit_must_be_given_even_as_null(api):
    problem(await api.put("/v1/bindings/BND-1/limit", json={}, headers=APP), 422, "INVALID_COMMAND")


@pytest.mark.parametrize("path,command,answer,status", [
    ("pause", "PauseBinding", "BindingPaused", "paused"), ("resume", "ResumeBinding", "BindingResumed", "resumed")])
async def test_a_window_pauses_and_resumes_for_the_grantor_it_names_and_is_audited(api, path, command, answer,
                                                                                    status):
    api.broker.answers[command] = outcome(answer, cause="grantor", dispute_id=None)
    problem(await api.post(f"/v1/bindings/BND-1/{path}", json={}, headers=WINDOW), 422, "INVALID_COMMAND")
    r = await api.post(f"/v1/bindings/BND-1/{path}", json={"requested_by": ME}, headers=WINDOW)
    assert r.status_code == 200 and r.json()["status"] == status
    [(_, key, sent), (audit_topic, clerk, audit)] = api.broker.commands()
    assert key == b"BND-1" and sent["event_type"] == command
    assert sent["payload"] == {"binding_id": "BND-1", "requested_by": ME, "channel": "window", "clerk_id": "clerk-1"}
    assert (audit_topic, clerk) == ("gateway.audit", b"clerk-1")
    assert {k: audit["payload"][k] for k in ("action", "outcome", "binding_id", "subject_id")} == {
        "action": f"{path}_binding", "outcome": status, "binding_id": "BND-1", "subject_id": "610***********0018"}


async def test_an_app_token_pauses_only_as_its_own_person(api):
    problem(await api.post("/v1/bindings/BND-1/pause", json={"requested_by": OTHER}, headers=APP), 403)
    problem(await api.put("/v1/bindings/BND-1/limit", json={"monthly_limit": None, "requested_by": OTHER},
                          headers=APP), 403)
    problem(await api.post("/v1/disputes", json={"reference": "7K2P9QXM", "grantor_id": OTHER}, headers=APP), 403)
    problem(await api.get(f"/v1/persons/{OTHER}/disputes", headers=APP), 403)
    assert api.broker.sent == []


@pytest.mark.parametrize("reason,status", [
    ("ALREADY_PAUSED", 409), ("NOT_PAUSED", 409), ("DISPUTE_OPEN", 409), ("ALREADY_DISPUTED", 409),
    ("UNKNOWN_REFERENCE", 404), ("INVALID_LIMIT", 422), ("NOT_GRANTOR", 403), ("BINDING_NOT_FOUND", 404)])
async def test_the_binding_services_new_refusals_have_their_statuses(api, reason, status):
    refuse = lambda p: ("BindingRejected", {"reason_code": reason, "message_zh": "中文", "message_en": "English"})
    api.broker.answers["ResumeBinding"] = api.broker.answers["DisputePayment"] = refuse
    body = problem(await api.post("/v1/bindings/BND-1/resume", json={}, headers=APP), status, reason)
    assert (body["message_zh"], body["message_en"]) == ("中文", "English") and body["command_id"]
    problem(await api.post("/v1/disputes", json={"reference": "7K2P9QXM"}, headers=APP), status, reason)


@pytest.mark.parametrize("typed", ["7K2P9QXM", "bf 7k2p9qxm", "BF7K2P9QXM", " 7K2P 9QXM "])
async def test_a_dispute_reads_the_reference_as_the_sms_printed_it_and_is_keyed_by_it(api, typed):
    api.broker.answers["DisputePayment"] = lambda p: ("DisputeOpened", {
        "dispute_id": "DSP-1", "reference": p["reference"], "binding_id": "BND-1", "grantor_id": ME,
        "beneficiary_id": FATHER, "charge_id": "C1", "institution_code": "H1", "amount": "12.30",
        "channel": p["channel"], "opened_at": "2026-11-20T10:20:01+08:00"})
    r = await api.post("/v1/disputes", json={"reference": typed}, headers=APP)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "dispute_opened" and r.json()["outcome"]["beneficiary_id"] == "610***********0031"
    [(_, key, sent)] = api.broker.sent
    assert key == b"7K2P9QXM"
    assert sent["payload"] == {"reference": "7K2P9QXM", "requested_by": ME, "channel": "app"}


async def test_a_window_dispute_names_the_grantor_and_a_malformed_reference_is_refused(api):
    problem(await api.post("/v1/disputes", json={"reference": "7K2P9QXM"}, headers=WINDOW), 422, "INVALID_COMMAND")
    for bad in ("7K2P9QX", "7K2P9QXU", 12345678, "x" * 40):
        problem(await api.post("/v1/disputes", json={"reference": bad, "grantor_id": ME}, headers=WINDOW), 422,
                "INVALID_COMMAND")
    assert api.broker.sent == []
    r = await api.post("/v1/disputes", json={"reference": "7K2P9QXM", "grantor_id": ME}, headers=WINDOW)
    assert r.status_code == 202  # no answer from the stand-in: pending
    sent = api.broker.commands()
    assert sent[0][2]["payload"] == {"reference": "7K2P9QXM", "requested_by": ME, "channel": "window",
                                     "clerk_id": "clerk-1"}
    assert sent[1][2]["payload"]["action"] == "dispute_payment"


async def test_a_paused_binding_answered_before_the_dispute_leaves_the_command_pending(api):
    api.broker.answers["DisputePayment"] = outcome("BindingPaused", cause="dispute", dispute_id="DSP-1")
    r = await api.post("/v1/disputes", json={"reference": "7K2P9QXM"}, headers=APP)
    assert r.status_code == 202 and r.json()["status"] == "pending"


async def test_a_persons_disputes_are_listed_masked(api):
    api.broker.answers["QueryDisputes"] = lambda p: ("DisputesListed", {"person_id": "610***********0018", "disputes": [{
        "dispute_id": "DSP-1", "reference": "7K2P9QXM", "binding_id": "BND-1", "beneficiary_id": FATHER,
        "charge_id": "C1", "institution_code": "H1", "amount": "12.30", "status": "open",
        "opened_at": "2026-11-20T10:20:01+08:00", "decided_at": None}]})
    r = await api.get(f"/v1/persons/{ME}/disputes", headers=APP)
    assert r.status_code == 200, r.text
    [dispute] = r.json()["disputes"]
    assert dispute["beneficiary_id"] == "610***********0031" and dispute["status"] == "open"
    [(topic, key, sent)] = api.broker.sent
    assert (topic, key, sent["event_type"], sent["payload"]) == ("binding.commands", ME.encode(), "QueryDisputes",
                                                                 {"person_id": ME})


async def test_consumption_passes_each_beneficiarys_limit_used_left_and_pause_through(api):
    month = {"binding_id": "BND-1", "monthly_limit": "500.00", "used_this_month": "128.50",
             "left_this_month": "371.50", "paused": True}
    api.broker.answers["QueryConsumption"] = lambda p: ("ConsumptionListed", {
        "grantor_id": "610***********0018", "total_paid": "128.50", "total_refunded": "0.00",
        "beneficiaries": [{"beneficiary_id": "610***********0031", "total_paid": "128.50", "total_refunded": "0.00",
                           "payments": [], **month},
                          {"beneficiary_id": "610***********0049", "total_paid": "0.00", "total_refunded": "0.00",
                           "payments": []}]})
    r = await api.get(f"/v1/grantors/{ME}/consumption", headers=APP)
    assert r.status_code == 200, r.text
    limited, older = r.json()["beneficiaries"]
    assert {k: limited[k] for k in month} == month
    assert all(older[k] is None for k in month)  # a settlement that does not tell yet


def signed(body: bytes, key: bytes = UPLINK_KEY) -> dict[str, str]:
    return {"X-Signature": uplink.signature(key, body), "content-type": "application/json"}


async def test_a_signed_reply_is_put_on_sms_uplink_keyed_by_its_message_id_without_a_token(api):
    raw = json.dumps(REPLY).encode()
    r = await api.post("/v1/sms/inbound", content=raw, headers=signed(raw))
    assert r.status_code == 202, r.text
    assert r.json() == {"message_id": "up-000123", "status": "accepted"}
    again = await api.post("/v1/sms/inbound", content=raw, headers={**signed(raw), "X-Signature": signed(raw)[
        "X-Signature"].upper()})
    assert again.status_code == 202
    [(topic, key, sent), (_, _, resent)] = api.broker.sent
    assert (topic, key, sent["event_type"]) == ("sms.uplink", b"up-000123", "SmsReplyReceived")
    assert sent["payload"] == REPLY
    assert sent["event_id"] == resent["event_id"] == uplink.event_id("up-000123")  # a resent callback: one event


@pytest.mark.parametrize("headers", [{}, {"X-Signature": ""}, {"X-Signature": "00" * 32},
                                     {"X-Signature": "签名".encode()}, "other key", "bearer only"])
async def test_a_reply_without_the_providers_signature_is_401_and_nothing_is_sent(api, headers):
    raw = json.dumps(REPLY).encode()
    if headers == "other key":
        headers = signed(raw, b"another-uplink-key-entirely")
    elif headers == "bearer only":
        headers = APP
    r = await api.post("/v1/sms/inbound", content=raw, headers=headers)
    problem(r, 401)
    assert api.broker.sent == []


async def test_a_signed_body_over_4_kib_is_413_and_one_not_a_reply_is_422(api):
    big = json.dumps({**REPLY, "text": "x" * 5000}).encode()
    problem(await api.post("/v1/sms/inbound", content=big, headers=signed(big)), 413)
    for body in (b"{not json", json.dumps({**REPLY, "text": "x" * 161}).encode(),
                 json.dumps({**REPLY, "extra": 1}).encode(), json.dumps({**REPLY, "phone": "12345"}).encode(),
                 json.dumps({**REPLY, "received_at": 1763605200}).encode(),
                 json.dumps({k: v for k, v in REPLY.items() if k != "message_id"}).encode()):
        r = await api.post("/v1/sms/inbound", content=body, headers=signed(body))
        problem(r, 422, r.json().get("reason_code"))
        assert "13812345678" not in r.text
    assert api.broker.sent == []


async def test_the_uplink_does_not_exist_without_a_key(closed):
    raw = json.dumps(REPLY).encode()
    problem(await closed.post("/v1/sms/inbound", content=raw, headers=signed(raw)), 404)
    assert closed.broker.sent == []


def test_an_uplink_key_shorter_than_16_bytes_is_refused_at_start():
    with pytest.raises(ValueError):
        GatewaySettings(gateway_token_issuers=UNREAD, gateway_sms_uplink_key="short")
    assert GatewaySettings(gateway_token_issuers=UNREAD).uplink_key is None
