"""The notify service's Redis state.

Keys this service owns (README, "Redis keys"):
- `ntf:person:{bucket}`   hash person_id -> "phone|masked name" (projection of PersonRegistered)
- `ntf:binding:{id}`      "grantor|beneficiary|end" and zset `ntf:ends` (end YYYYMMDD -> binding id):
                          projection of binding.events, for the daily ending-soon check
- `ntf:msg:{message_id}`  hash {state, notice, event}: pending | deferred | sent | failed, the
                          notice while deferred, the recorded outcome event (dedupe across restarts)
- `ntf:deferred`          zset message_id by release time (quiet hours)
- `ntf:sink`              list: what the local sink provider "sent"
"""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib.resources import files

from redis.asyncio import Redis

from shared.state import person_bucket
from services.notify.domain.notices import Notice

LIBRARY = files("services.notify.storage").joinpath("notify.lua").read_text


def _person_key(person_id: str) -> str:
    return f"ntf:person:{person_bucket(person_id)}"


class DeliveryStore:
    def __init__(self, redis: Redis, record_ttl: int) -> None:
        self._redis = redis
        self._ttl = record_ttl

    async def load_functions(self) -> None:
        await self._redis.function_load(LIBRARY(), replace=True)

    async def save_contacts(self, people: list[tuple[str, str | None, str]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for person_id, phone, masked_name in people:
            pipe.hset(_person_key(person_id), person_id, f"{phone or ''}|{masked_name}")
        await pipe.execute()

    async def contacts(self, person_ids: list[str]) -> dict[str, tuple[str, str]]:
        """person_id -> (phone or '', masked name) for those known."""
        pipe = self._redis.pipeline(transaction=False)
        for pid in person_ids:
            pipe.hget(_person_key(pid), pid)
        found = {}
        for pid, raw in zip(person_ids, await pipe.execute()):
            if raw:
                phone, name = raw.decode().split("|", 1)
                found[pid] = (phone, name)
        return found

    async def follow_binding(self, binding_id: str, grantor: str, beneficiary: str, end_date: str | None) -> None:
        """Track a binding in force for the ending-soon check; `end_date` None forgets it."""
        pipe = self._redis.pipeline(transaction=True)
        if end_date:
            pipe.set(f"ntf:binding:{binding_id}", f"{grantor}|{beneficiary}|{end_date}")
            pipe.zadd("ntf:ends", {binding_id: int(end_date.replace("-", ""))})
        else:
            pipe.delete(f"ntf:binding:{binding_id}")
            pipe.zrem("ntf:ends", binding_id)
        await pipe.execute()

    async def ending_between(self, first_day: int, last_day: int) -> list[tuple[str, str, str, str]]:
        ids = [i.decode() for i in await self._redis.zrangebyscore("ntf:ends", first_day, last_day)]
        if not ids:
            return []
        values = await self._redis.mget([f"ntf:binding:{i}" for i in ids])
        return [(i, *v.decode().split("|")) for i, v in zip(ids, values) if v]

    async def claim(self, message_id: str, from_state: str = "") -> tuple[str, str, bytes]:
        """('CLAIMED', previous state, b'') or ('HELD', state, recorded outcome event)."""
        status, state, event = await self._redis.fcall("claim", 1, f"ntf:msg:{message_id}", from_state)
        return status.decode(), state.decode(), event

    async def defer(self, message_id: str, notice: Notice, release_at: float) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(f"ntf:msg:{message_id}", mapping={"state": "deferred",
                                                    "notice": json.dumps(asdict(notice), ensure_ascii=False)})
        pipe.zadd("ntf:deferred", {message_id: release_at})
        await pipe.execute()

    async def due(self, now: float, limit: int = 500) -> list[tuple[str, Notice]]:
        ids = [i.decode() for i in await self._redis.zrangebyscore("ntf:deferred", "-inf", now, start=0, num=limit)]
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.hget(f"ntf:msg:{i}", "notice")
        return [(i, Notice(**json.loads(raw))) for i, raw in zip(ids, await pipe.execute()) if raw]

    async def record(self, message_id: str, state: str, event: bytes) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(f"ntf:msg:{message_id}", mapping={"state": state, "event": event})
        pipe.hdel(f"ntf:msg:{message_id}", "notice")
        pipe.expire(f"ntf:msg:{message_id}", self._ttl)
        pipe.zrem("ntf:deferred", message_id)
        await pipe.execute()
