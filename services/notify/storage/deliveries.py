"""The notify service's Redis state.

Keys this service owns (README, "Redis keys"):
- `ntf:person:{bucket}`   hash person_id -> "phone|masked name" (projection of PersonRegistered)
- `ntf:inst`              hash institution code -> registered name (projection of InstitutionRegistered)
- `ntf:binding:{id}`      "grantor|beneficiary|end" and zset `ntf:ends` (end YYYYMMDD -> binding id):
                          projection of binding.events, for the daily ending-soon check
- `ntf:msg:{message_id}`  hash: `state` (pending | deferred | sent | failed | skipped); while pending,
                          `owner` and `lease` (the claim); while pending or deferred, `notice` (what
                          to send) and `wait_until` (how long an unknown person is waited for); once
                          done, `event` (the recorded outcome, compact: what a redelivery cannot
                          tell again, so the same SmsSent/SmsFailed is rebuilt) and a TTL of
                          NOTIFY_RECORD_TTL_DAYS
- `ntf:due`               zset message_id -> when to look at it again (ms): a held message's release
                          time, or a claim's lease deadline (a crashed sender's claim is found there)
- `ntf:sink`              list: what the local sink provider "sent"
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib.resources import files

from redis.asyncio import Redis

from shared.state import person_bucket
from services.notify.domain.notices import Notice

LIBRARY = files("services.notify.storage").joinpath("notify.lua").read_text
DUE = "ntf:due"
INSTITUTIONS = "ntf:inst"


def _person_key(person_id: str) -> str:
    return f"ntf:person:{person_bucket(person_id)}"


def _msg_key(message_id: str) -> str:
    return f"ntf:msg:{message_id}"


def _notice_json(notice: Notice) -> str:
    return json.dumps(asdict(notice), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class Claim:
    status: str        # CLAIMED | TAKEN_OVER | HELD
    state: str         # the state found: '' (new), deferred, pending, sent, failed, skipped
    recorded: bytes    # the recorded outcome event, when HELD by one


@dataclass(frozen=True)
class Due:
    message_id: str
    notice: Notice
    wait_until_ms: int  # 0: not waiting for a person


class DeliveryStore:
    def __init__(self, redis: Redis, record_ttl: int) -> None:
        self._redis = redis
        self._ttl = record_ttl

    async def load_functions(self) -> None:
        await self._redis.function_load(LIBRARY(), replace=True)

    # -- projections ----------------------------------------------------------------------------
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

    async def save_institutions(self, names: dict[str, str]) -> None:
        await self._redis.hset(INSTITUTIONS, mapping=names)

    async def institution_name(self, code: str) -> str | None:
        raw = await self._redis.hget(INSTITUTIONS, code)
        return raw.decode() if raw else None

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

    # -- a message's life (notify.lua) ------------------------------------------------------------
    async def claim(self, message_id: str, notice: Notice | None, token: str, now_ms: int, lease_until_ms: int,
                    from_state: str = "") -> Claim:
        status, state, event = await self._redis.fcall(
            "claim", 2, _msg_key(message_id), DUE, from_state, now_ms, lease_until_ms, token, message_id,
            _notice_json(notice) if notice else "")
        return Claim(status.decode(), state.decode(), event)

    async def record(self, message_id: str, token: str, state: str, event: bytes) -> tuple[bool, bytes]:
        """(True, event) when recorded by this claim's owner; (False, what is recorded) otherwise."""
        status, recorded = await self._redis.fcall("record", 2, _msg_key(message_id), DUE, token, state, event,
                                                   self._ttl, message_id)
        return status == b"RECORDED", recorded

    async def hold(self, message_id: str, token: str, notice: Notice, release_at_ms: int,
                   wait_until_ms: int = 0) -> bool:
        """Put an owned claim back to wait until `release_at_ms`; False if the claim was lost."""
        answer = await self._redis.fcall("hold", 2, _msg_key(message_id), DUE, token, release_at_ms,
                                         _notice_json(notice), wait_until_ms, message_id)
        return answer == b"OK"

    async def due(self, now_ms: int, limit: int = 500) -> list[Due]:
        """Messages to look at again: held ones whose time has come, claims past their lease."""
        ids = [i.decode() for i in await self._redis.zrangebyscore(DUE, "-inf", now_ms, start=0, num=limit)]
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(_msg_key(i), "notice", "wait_until")
        found, gone = [], []
        for i, (notice, wait_until) in zip(ids, await pipe.execute()):
            if notice:
                found.append(Due(i, Notice(**json.loads(notice)), int(wait_until or 0)))
            else:
                gone.append(i)
        if gone:  # nothing left to act on (cannot happen while the Function keeps them in step)
            await self._redis.zrem(DUE, *gone)
        return found
