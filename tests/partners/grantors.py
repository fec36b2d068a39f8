"""Grantors at the app back end and the bureau, with binding's projections only."""

from __future__ import annotations

import uuid

from shared import topics as t
from shared.binding_index import decode_payer
from shared.envelope import seal
from tests.support import binding_form, body, command, payload_of, person_registered, wait_registered


class Grantors:
    """The app back end and the bureau, reduced to what these tests need."""

    prefixes = ("bnd:person",)  # the projection to wait for: binding's, all these commands need

    def __init__(self, bus, redis):
        self.bus, self.redis = bus, redis

    async def person(self, scheme="employee", balance="100.00") -> dict:
        p = person_registered("610100", scheme=scheme, balance=balance)
        await self.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
        await wait_registered(self.redis, [p["person_id"]], timeout=30, prefixes=self.prefixes)
        return p

    async def send(self, event_type: str, payload: dict, key: str, event_id: str | None = None,
                   reply: bool = False) -> dict:
        """The command's outcome on binding.events (or, with `reply`, on reply.tests)."""
        event_id = event_id or str(uuid.uuid4())
        headers = {"reply_to": "reply.tests", "correlation_id": event_id} if reply else None
        await self.bus.send(t.BINDING_COMMANDS, command(event_type, payload, event_id), key=key, headers=headers)
        topic = "reply.tests" if reply else t.BINDING_EVENTS
        [r] = await self.bus.watchers[topic].wait_for(lambda r: payload_of(r).get("command_id") == event_id)
        return body(r)

    async def bind(self, grantor: dict, beneficiary: dict, order: int = 1) -> str:
        created = await self.send("CreateBinding", binding_form(grantor, beneficiary, order), beneficiary["person_id"])
        assert created["event_type"] == "BindingCreated", created["payload"]
        return created["payload"]["binding_id"]

    async def payer(self, beneficiary: dict, binding_id: str):
        raw = await self.redis.hget(f"bnd:pay:{beneficiary['person_id']}", binding_id)
        return decode_payer(binding_id, raw.decode()), raw.decode()
