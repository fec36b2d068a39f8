"""Notify's part of issue 15 through the real broker and Redis, notify running as production runs
it (its local sink provider keeps every SMS in Redis, `ntf:sink`): the payment SMS carries the
payment's reference, and each new binding event (pause, resume, limit, dispute opened and decided)
gives the grantor one SMS, however often it is delivered. Binding's events are published here as
binding publishes them (I-4, I-5), so these tests need only notify. (The SMS uplink:
test_sms_uplink.py.)"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
import uuid
from datetime import datetime

import pytest

from shared import topics as t
from shared.envelope import CHINA_TZ, seal
from shared.references import payment_reference
from shared.state import person_bucket
from tooling.devstack import free_port
from tests.support import body, institution_registered, new_person_id, payload_of, running

pytestmark = pytest.mark.integration

HOSPITAL, HOSPITAL_NAME = "H61010077", "西安市第九医院"


@pytest.fixture(scope="module")
def notify(infra, tmp_path_factory):
    """One notify, in a consumer group of its own (nothing left by other modules' notify)."""
    port = free_port()
    env = {**infra.env(), "LOG_LEVEL": "INFO", "SMS_PROVIDER": "sink", "QUIET_HOURS": "00:00-00:00",
           "NOTIFY_GROUP_ID": f"notify-{uuid.uuid4().hex[:8]}", "HTTP_PORT": str(port),
           # Other modules' events name people these tests never register: fail them fast.
           "NOTIFY_UNKNOWN_PERSON_WAIT_SECONDS": "0"}
    with running(("notify",), env, tmp_path_factory.mktemp("notify15")) as services:
        services["notify"].metrics_url = f"http://127.0.0.1:{port}/metrics"
        yield services["notify"]


class Town:
    """People and an institution registered with notify, and what notify did: SMS in the sink,
    outcomes on notify.deliveries, commands on binding.commands."""

    def __init__(self, bus, redis, notify) -> None:
        self.bus, self.redis, self.notify = bus, redis, notify

    async def institution(self, code: str = HOSPITAL, name: str = HOSPITAL_NAME) -> None:
        event = institution_registered(code, "610100", name=name)
        await self.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", event), key=code)
        await self._until(lambda: self.redis.hexists("ntf:inst", code))

    async def person(self, phone: str | None = None, person_id: str | None = None) -> dict:
        p = {"person_id": person_id or new_person_id(), "name": f"测试{chr(0x4e00 + random.randrange(2000))}明",
             "region": "610100", "scheme": "employee", "employer": "单位", "balance": "100.00",
             "phone": phone or f"137{random.randrange(10**8):08d}"}
        await self.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
        bucket, phone_bucket = person_bucket(p["person_id"]), int(p["phone"]) % 65_536

        async def indexed() -> bool:
            entry = await self.redis.hget(f"ntf:phone:{phone_bucket}", p["phone"])
            return (await self.redis.hexists(f"ntf:person:{bucket}", p["person_id"])
                    and entry is not None and p["person_id"] in entry.decode())
        await self._until(indexed)
        return p

    @staticmethod
    async def _until(check, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.02)

    async def sink(self) -> list[dict]:
        return [json.loads(x) for x in await self.redis.lrange("ntf:sink", 0, -1)]

    async def outcomes(self, event: bytes, count: int = 1, role: str | None = None) -> list[dict]:
        event_id = json.loads(event)["event_id"]
        records = await self.bus.watchers[t.NOTIFY_DELIVERIES].wait_for(
            lambda r: payload_of(r)["source_event_id"] == event_id
            and role in (None, payload_of(r)["recipient_role"]), timeout=30, count=count)
        return [body(r) for r in records]

    async def metric(self, name: str, outcome: str) -> float:
        def read() -> str:
            with urllib.request.urlopen(self.notify.metrics_url, timeout=5) as answer:
                return answer.read().decode()
        for line in (await asyncio.to_thread(read)).splitlines():
            if line.startswith(f'{name}{{outcome="{outcome}"}}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture
async def town(bus, clean_redis, notify):
    town = Town(bus, clean_redis, notify)
    await town.institution()
    return town


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
