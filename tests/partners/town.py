"""Notify's town: notify alone, in a consumer group of its own, its SMS kept in its sink; people
and an institution registered with it, and replies sent to it through the SMS uplink."""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
import uuid

from shared import envelope, topics as t
from shared.envelope import seal
from shared.state import person_bucket
from tests.support import body, eventually, institution_registered, new_person_id, payload_of

TOWN_HOSPITAL, TOWN_HOSPITAL_NAME = "H61010077", "西安市第九医院"


def town_notify_env(infra, metrics_port: int) -> dict[str, str]:
    """Notify as production runs it with its local sink, at any hour, in a consumer group of its
    own (nothing left by other modules' notify)."""
    return {**infra.env(), "LOG_LEVEL": "INFO", "SMS_PROVIDER": "sink", "QUIET_HOURS": "00:00-00:00",
            "NOTIFY_GROUP_ID": f"notify-{uuid.uuid4().hex[:8]}", "HTTP_PORT": str(metrics_port),
            # Other modules' events name people these tests never register: fail them fast.
            "NOTIFY_UNKNOWN_PERSON_WAIT_SECONDS": "0"}


class Town:
    """People and an institution registered with notify, and what notify did: SMS in the sink,
    outcomes on notify.deliveries, commands on binding.commands."""

    def __init__(self, bus, redis, notify) -> None:
        self.bus, self.redis, self.notify = bus, redis, notify

    async def institution(self, code: str = TOWN_HOSPITAL, name: str = TOWN_HOSPITAL_NAME) -> None:
        event = institution_registered(code, "610100", name=name)
        await self.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", event), key=code)
        await eventually(lambda: self.redis.hexists("ntf:inst", code), 30, f"{code} known to notify", interval=0.02)

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
        await eventually(indexed, 30, "the person and the phone in notify's index", interval=0.02)
        return p

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


def uplink_reply(phone: str, text: str, message_id: str | None = None) -> bytes:
    """An SmsReplyReceived as the gateway publishes a reply the provider called back with."""
    return seal("SmsReplyReceived", {"message_id": message_id or f"up-{uuid.uuid4().hex[:16]}", "phone": phone,
                                     "text": text, "received_at": envelope.now().isoformat(timespec="seconds")})


def message_id_of(event: bytes) -> str:
    return json.loads(event)["payload"]["message_id"]


async def send_reply(town, event: bytes) -> None:
    await town.bus.send(t.SMS_UPLINK, event, key=message_id_of(event))


def disputes_by(town, person: dict) -> list:
    return town.bus.watchers[t.BINDING_COMMANDS].matching(
        lambda r: body(r)["event_type"] == "DisputePayment" and payload_of(r)["requested_by"] == person["person_id"])


async def wait_disputes(town, person: dict, count: int = 1) -> list:
    return await town.bus.watchers[t.BINDING_COMMANDS].wait_for(
        lambda r: body(r)["event_type"] == "DisputePayment" and payload_of(r)["requested_by"] == person["person_id"],
        timeout=30, count=count)
