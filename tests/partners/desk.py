"""The binding desk: the binding service alone, with a short sweep and a name key of its own, and
what the app back end and the bureaus ask of it."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from shared import topics as t
from shared.bureau import PERSON_REGISTERED
from shared.envelope import seal
from shared.state import person_bucket
from tests.support import body, china_today, command, eventually, new_person_id, payload_of

NAME_KEY = "integration-test-name-key"
GRACE_DAYS = 7
DESK_SIGNATURE = "sha256:" + hashlib.sha256(b"signed commitment").hexdigest()
NAMES = iter(f"测试{chr(0x4e00 + i)}{chr(0x4e10 + i)}" for i in range(10_000))


def desk_binding_env(infra) -> dict[str, str]:
    """The binding service's settings for Desk's tests: its sweep every 0.5 s (a test waits for
    one), a payer grace of GRACE_DAYS, and the name key NAME_KEY the tests digest names with."""
    return {**infra.env(), "LOG_LEVEL": "INFO", "NAME_DIGEST_KEY": NAME_KEY, "BINDING_SWEEP_SECONDS": "0.5",
            "BINDING_PAYER_GRACE_DAYS": str(GRACE_DAYS)}


class Desk:
    """What the app back end and the bureaus do, reduced to the calls these tests need."""

    def __init__(self, bus, redis):
        self.bus, self.redis = bus, redis

    async def person(self, region="610100", scheme="employee", name=None, person_id=None) -> dict:
        person = {"person_id": person_id or new_person_id(region), "name": name or next(NAMES),
                  "region": region, "scheme": scheme, "phone": "13812345678"}
        person |= {"employer": "西安某公司", "balance": "1000.00"} if scheme == "employee" else {"community": "某社区"}
        await self.bus.send(t.BUREAU_ACCOUNTS, seal(PERSON_REGISTERED, person), key=person["person_id"])
        key = f"bnd:person:{person_bucket(person['person_id'])}"
        await eventually(lambda: self.redis.hexists(key, person["person_id"]), 30, "the person registered",
                         interval=0.02)
        return person

    @staticmethod
    def form(grantor, beneficiary, relation="father", order=1, start=None, end=None, **overrides) -> dict:
        start = start or china_today()
        end = end or start + timedelta(days=365)

        def party(p):
            return {"id_number": p["person_id"], "name": p["name"], "region": p["region"],
                    "employer": p.get("employer"), "community": p.get("community"), "phone": p.get("phone")}
        return {"grantor": party(grantor), "beneficiary": party(beneficiary), "relation": relation,
                "payment_order": order, "start_date": start.isoformat(), "end_date": end.isoformat(),
                "notice_accepted": True, "signature_digest": DESK_SIGNATURE, "channel": "app"} | overrides

    async def send(self, event_type, payload, key=None, event_id=None, headers=None) -> dict:
        event_id = event_id or str(uuid.uuid4())
        await self.bus.send(t.BINDING_COMMANDS, command(event_type, payload, event_id), key=key, headers=headers)
        return await self.outcome(event_id)

    async def outcome(self, command_id) -> dict:
        [record] = await self.bus.watchers[t.BINDING_EVENTS].wait_for(
            lambda r: payload_of(r).get("command_id") == command_id)
        return body(record)

    async def bind(self, grantor, beneficiary, **kw) -> dict:
        return await self.send("CreateBinding", self.form(grantor, beneficiary, **kw), key=beneficiary["person_id"])
