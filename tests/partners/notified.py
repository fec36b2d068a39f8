"""A family as notify's tests play it: people with phones, known to binding, settlement and
notify, a hospital known by its name (the SMS carry it), and the SMS the session's gateway took."""

from __future__ import annotations

import hashlib
import random
import uuid
from datetime import timedelta

from shared import envelope, topics as t
from shared.envelope import seal
from shared.state import person_bucket
from tests.support import body, china_today, command, eventually, institution_registered, new_person_id, payload_of

NOTIFIED_HOSPITAL, NOTIFIED_HOSPITAL_NAME = "H61010001", "西安市中心医院"
SIGNATURE = "sha256:" + hashlib.sha256(b"signed").hexdigest()


def notify_group(services, topic: str) -> str:
    """The consumer group in which the notify process answers `topic` (shared.kafka.consumer_options)."""
    return f"{services['notify'].env.get('NOTIFY_GROUP_ID', 'notify')}.{topic}"


async def sms(gateway, phone: str, template: str, count: int = 1) -> list[dict]:
    """The SMS of `template` to `phone`, once the gateway has taken `count` of them (any other
    SMS to that phone is no sign of these)."""
    return await eventually(lambda: (found := gateway.to(phone, template))[count - 1:] and found, 30,
                            f"{count} SMS {template} to {phone[:3]}****")


class NotifiedFamily:
    """The bureau, a hospital's HIS and the window, as notify's tests play them."""

    def __init__(self, bus, redis):
        self.bus, self.redis = bus, redis
        self.people: list[dict] = []
        self.records: dict[str, object] = {}  # binding.events records by event id, for `handled`

    async def institution(self, code=NOTIFIED_HOSPITAL, name=NOTIFIED_HOSPITAL_NAME) -> None:
        event = institution_registered(code, "610100", name=name)
        await self.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", event), key=code)

        async def known() -> bool:
            return await self.redis.hexists("stl:inst", code) and await self.redis.hexists("ntf:inst", code)
        await eventually(known, 30, f"institution {code} in settlement and notify", interval=0.02)

    async def person(self, scheme="employee", balance="0.00", phone=True, region="610100") -> dict:
        p = {"person_id": new_person_id(region), "name": f"测试{chr(0x4e00 + random.randrange(2000))}明",
             "region": region, "scheme": scheme}
        if phone:
            p["phone"] = f"139{random.randrange(10**8):08d}"
        p |= {"employer": "单位", "balance": balance} if scheme == "employee" else {"community": "社区"}
        await self.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
        bucket = person_bucket(p["person_id"])

        async def known() -> bool:
            return all([await self.redis.hexists(f"{k}:{bucket}", p["person_id"])
                        for k in ("bnd:person", "stl:acct", "ntf:person")])
        await eventually(known, 30, "the person in binding, settlement and notify", interval=0.02)
        self.people.append(p)
        return p

    async def bind(self, grantor, beneficiary, order=1, end=None) -> dict:
        today = china_today()

        def party(p):
            return {"id_number": p["person_id"], "name": p["name"], "region": p["region"], "phone": p.get("phone"),
                    "employer": p.get("employer"), "community": p.get("community")}
        form = {"grantor": party(grantor), "beneficiary": party(beneficiary), "relation": "mother",
                "payment_order": order, "start_date": today.isoformat(),
                "end_date": (end or today + timedelta(days=365)).isoformat(), "notice_accepted": True,
                "signature_digest": SIGNATURE, "channel": "app"}
        cmd_id = str(uuid.uuid4())
        await self.bus.send(t.BINDING_COMMANDS, command("CreateBinding", form, cmd_id), key=beneficiary["person_id"])
        [r] = await self.bus.watchers[t.BINDING_EVENTS].wait_for(lambda r: payload_of(r).get("command_id") == cmd_id)
        assert body(r)["event_type"] == "BindingCreated"
        self.records[body(r)["event_id"]] = r
        return body(r)

    async def charge(self, patient, borne) -> dict:
        charge = {"charge_id": f"C{uuid.uuid4().hex[:16]}", "institution_code": NOTIFIED_HOSPITAL,
                  "institution_region": "610100", "patient_id": patient["person_id"],
                  "patient_name": patient["name"], "code_holder_id": patient["person_id"],
                  "presented_via": "own_device", "visit_kind": "pharmacy", "total": borne, "fund_paid": "0.00",
                  "individual_borne": borne, "charged_at": envelope.now().isoformat(timespec="seconds")}
        await self.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=patient["person_id"])
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge["charge_id"])
        return r

    async def deliveries(self, match, count=1) -> list[dict]:
        records = await self.bus.watchers[t.NOTIFY_DELIVERIES].wait_for(lambda r: match(body(r)), count=count)
        return [body(r) for r in records]
