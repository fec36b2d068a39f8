"""The notify service through the real broker and Redis, its HTTP adapter pointed at a local
gateway that records every request, with the binding and settlement services beside it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared import topics as t
from shared.envelope import seal
from shared.state import person_bucket
from tests.support import body, command, new_person_id, payload_of, running

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))
SIGNATURE = "sha256:" + hashlib.sha256(b"signed").hexdigest()


class Gateway:
    """A stand-in SMS gateway on loopback, in Aliyun's SendSms shape. `plan[phone]` lists the
    HTTP statuses to answer that phone with, in turn; then 200 OK."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.plan: dict[str, list[int]] = {}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request["signed"] = bool(self.headers.get("X-Signature"))
                gateway.requests.append(request)
                planned = gateway.plan.get(request["PhoneNumbers"], [])
                status = planned.pop(0) if planned else 200
                answer = ({"Code": "OK", "BizId": uuid.uuid4().hex, "RequestId": "r"} if status == 200
                          else {"Code": "ServiceUnavailable", "Message": "try later"})
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/sms/send"

    def to(self, phone: str) -> list[dict]:
        return [r for r in self.requests if r["PhoneNumbers"] == phone]

    async def wait_for(self, phone: str, count: int = 1, timeout: float = 60) -> list[dict]:
        async with asyncio.timeout(timeout):
            while len(self.to(phone)) < count:
                await asyncio.sleep(0.02)
        return self.to(phone)


@pytest.fixture(scope="module")
def gateway():
    g = Gateway()
    yield g
    g.server.shutdown()


@pytest.fixture(scope="module")
def services(infra, gateway, tmp_path_factory):
    logs = tmp_path_factory.mktemp("notify")
    env = {**infra.env(), "LOG_LEVEL": "INFO", "SMS_PROVIDER": "http", "SMS_GATEWAY_URL": gateway.url,
           "SMS_ACCESS_KEY_ID": "test-id", "SMS_ACCESS_KEY_SECRET": "test-secret", "SMS_RETRY_BASE_MS": "50",
           "QUIET_HOURS": "00:00-00:00", "NOTIFY_EXPIRY_CHECK_SECONDS": "1"}
    with running(("binding", "settlement", "notify"), env, logs) as services:
        yield services


class Family:
    def __init__(self, bus, redis):
        self.bus, self.redis = bus, redis
        self.people: list[dict] = []

    async def person(self, scheme="employee", balance="0.00", phone=True, region="610100") -> dict:
        p = {"person_id": new_person_id(region), "name": f"测试{chr(0x4e00 + random.randrange(2000))}明",
             "region": region, "scheme": scheme}
        if phone:
            p["phone"] = f"139{random.randrange(10**8):08d}"
        p |= {"employer": "单位", "balance": balance} if scheme == "employee" else {"community": "社区"}
        await self.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
        bucket = person_bucket(p["person_id"])
        async with asyncio.timeout(30):
            while not all([await self.redis.hexists(f"{k}:{bucket}", p["person_id"])
                           for k in ("bnd:person", "stl:acct", "ntf:person")]):
                await asyncio.sleep(0.02)
        self.people.append(p)
        return p

    async def bind(self, grantor, beneficiary, order=1, end=None) -> dict:
        today = datetime.now(CST).date()

        def party(p):
            return {"id_number": p["person_id"], "name": p["name"], "region": p["region"], "phone": p.get("phone"),
                    "employer": p.get("employer"), "community": p.get("community")}
        form = {"grantor": party(grantor), "beneficiary": party(beneficiary), "relation": "mother",
                "payment_order": order, "start_date": (today - timedelta(days=1)).isoformat(),
                "end_date": (end or today + timedelta(days=365)).isoformat(), "notice_accepted": True,
                "signature_digest": SIGNATURE, "channel": "app"}
        cmd_id = str(uuid.uuid4())
        await self.bus.send(t.BINDING_COMMANDS, command("CreateBinding", form, cmd_id), key=beneficiary["person_id"])
        [r] = await self.bus.watchers[t.BINDING_EVENTS].wait_for(lambda r: payload_of(r).get("command_id") == cmd_id)
        assert body(r)["event_type"] == "BindingCreated"
        return body(r)

    async def charge(self, patient, borne) -> dict:
        charge = {"charge_id": f"C{uuid.uuid4().hex[:16]}", "institution_code": "H61010001",
                  "institution_region": "610100", "patient_id": patient["person_id"],
                  "patient_name": patient["name"], "code_holder_id": patient["person_id"],
                  "presented_via": "own_device", "visit_kind": "pharmacy", "total": borne, "fund_paid": "0.00",
                  "individual_borne": borne, "charged_at": datetime.now(CST).isoformat(timespec="seconds")}
        await self.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=patient["person_id"])
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge["charge_id"])
        return r

    async def deliveries(self, match, count=1) -> list[dict]:
        records = await self.bus.watchers[t.NOTIFY_DELIVERIES].wait_for(lambda r: match(body(r)), count=count)
        return [body(r) for r in records]


@pytest.fixture
async def family(bus, clean_redis, services):
    return Family(bus, clean_redis)


async def test_a_payment_by_the_grantor_sends_one_sms_with_amount_and_balance(family, gateway):
    mother = await family.person(scheme="resident")
    son = await family.person(balance="300.00")
    await family.bind(son, mother)
    settled = await family.charge(mother, "128.50")
    await gateway.wait_for(son["phone"], count=2)  # the binding's SMS, then the payment's
    payment = [r for r in gateway.to(son["phone"]) if r["TemplateCode"] == "payment"]
    assert len(payment) == 1
    params = json.loads(payment[0]["TemplateParam"])
    assert (params["amount"], params["balance"]) == ("128.50", "171.50")
    assert payment[0]["signed"] and payment[0]["SignName"] == "陕西医保"
    [sent] = await family.deliveries(lambda b: b["payload"].get("source_event_id") == body(settled)["event_id"])
    assert sent["event_type"] == "SmsSent" and sent["payload"]["recipient_role"] == "grantor"
    assert sent["payload"]["phone"] == son["phone"][:3] + "****" + son["phone"][-4:]
    assert sent["payload"]["charge_id"] == payload_of(settled)["charge_id"] and sent["payload"]["segments"] <= 2


async def test_no_sms_when_only_the_own_account_and_cash_pay(family, gateway, bus):
    patient = await family.person(balance="10.00")
    settled = await family.charge(patient, "25.00")
    assert [x["source"] for x in payload_of(settled)["lines"]] == ["own", "cash"]
    marker = await family.person(scheme="resident")   # a later event, to know notify got past it
    grantor = await family.person(balance="1.00")
    await family.bind(grantor, marker)
    await gateway.wait_for(grantor["phone"])
    assert gateway.to(patient["phone"]) == []
    assert family.bus.watchers[t.NOTIFY_DELIVERIES].matching(
        lambda r: payload_of(r).get("source_event_id") == body(settled)["event_id"]) == []


async def test_the_same_event_delivered_twice_sends_once(family, gateway, bus):
    mother, son = await family.person(scheme="resident"), await family.person(balance="50.00")
    await family.bind(son, mother)
    settled = await family.charge(mother, "5.00")
    await gateway.wait_for(son["phone"], count=2)
    await bus.send(t.SETTLEMENT_RESULTS, settled.value, key=settled.key.decode())   # redelivery
    outcomes = await family.deliveries(lambda b: b["payload"].get("source_event_id") == body(settled)["event_id"],
                                       count=2)
    assert outcomes[0] == outcomes[1]
    assert len([r for r in gateway.to(son["phone"]) if r["TemplateCode"] == "payment"]) == 1


async def test_a_gateway_failing_twice_then_succeeding_sends_once(family, gateway):
    mother, son = await family.person(scheme="resident"), await family.person(balance="50.00")
    await family.bind(son, mother)
    await gateway.wait_for(son["phone"])
    gateway.plan[son["phone"]] = [503, 503]
    settled = await family.charge(mother, "5.00")
    [sent] = await family.deliveries(lambda b: b["payload"].get("source_event_id") == body(settled)["event_id"])
    assert sent["event_type"] == "SmsSent"
    payment = [r for r in gateway.to(son["phone"]) if r["TemplateCode"] == "payment"]
    assert len(payment) == 3 and len({r["OutId"] for r in payment}) == 1


async def test_a_gateway_that_keeps_failing_ends_in_sms_failed_and_the_consumer_goes_on(family, gateway):
    mother, son = await family.person(scheme="resident"), await family.person(balance="50.00")
    await family.bind(son, mother)
    await gateway.wait_for(son["phone"])
    gateway.plan[son["phone"]] = [503] * 10
    settled = await family.charge(mother, "5.00")
    [failed] = await family.deliveries(lambda b: b["payload"].get("source_event_id") == body(settled)["event_id"])
    assert failed["event_type"] == "SmsFailed"
    assert failed["payload"]["attempts"] == 3 and "503" in failed["payload"]["reason"]
    father, daughter = await family.person(scheme="resident"), await family.person(balance="9.00")
    await family.bind(daughter, father)
    [created] = await gateway.wait_for(daughter["phone"])
    assert created["TemplateCode"] == "binding_created_grantor"


async def test_binding_created_tells_the_grantor_and_a_beneficiary_with_a_phone(family, gateway):
    mother, son = await family.person(scheme="resident"), await family.person(balance="1.00")
    await family.bind(son, mother)
    [to_son] = await gateway.wait_for(son["phone"])
    [to_mother] = await gateway.wait_for(mother["phone"])
    assert to_son["TemplateCode"] == "binding_created_grantor"
    assert to_mother["TemplateCode"] == "binding_created_beneficiary"


async def test_a_binding_ending_within_7_days_is_announced_once(family, gateway):
    soon = datetime.now(CST).date() + timedelta(days=3)
    mother, son = await family.person(scheme="resident"), await family.person(balance="1.00")
    await family.bind(son, mother, end=soon)
    await gateway.wait_for(son["phone"], count=2)
    # A second binding ending soon is announced by a later run of the check, a run that saw the
    # first binding again: it must not have been told twice.
    father, daughter = await family.person(scheme="resident"), await family.person(balance="1.00")
    await family.bind(daughter, father, end=soon)
    await gateway.wait_for(daughter["phone"], count=2)
    for grantor in (son, daughter):
        assert [r["TemplateCode"] for r in gateway.to(grantor["phone"])].count("binding_ending_grantor") == 1


async def test_no_full_name_id_number_or_phone_reaches_a_log_or_an_sms(family, gateway, services):
    mother, son = await family.person(scheme="resident"), await family.person(balance="80.00")
    await family.bind(son, mother)
    await family.charge(mother, "20.00")
    await gateway.wait_for(son["phone"], count=2)
    logs = "".join(s.log_text() for s in services.values())
    texts = json.dumps([json.loads(r["TemplateParam"]) for r in gateway.requests], ensure_ascii=False)
    for p in family.people:
        for secret in (p["person_id"], p["name"], p.get("phone")):
            if secret:
                assert secret not in logs
                assert secret not in texts


async def test_a_beneficiary_without_a_phone_gets_nothing_and_no_failure_is_reported(family, gateway):
    child, parent = await family.person(scheme="resident", phone=False), await family.person(balance="1.00")
    created = await family.bind(parent, child)
    await gateway.wait_for(parent["phone"])
    [to_parent] = await family.deliveries(lambda b: b["payload"].get("source_event_id") == created["event_id"])
    assert to_parent["payload"]["recipient_role"] == "grantor"
    marker, other = await family.person(balance="1.00"), await family.person(scheme="resident")
    await family.bind(marker, other)
    await gateway.wait_for(marker["phone"])
    assert family.bus.watchers[t.NOTIFY_DELIVERIES].matching(
        lambda r: payload_of(r).get("source_event_id") == created["event_id"]
        and payload_of(r)["recipient_role"] == "beneficiary") == []
