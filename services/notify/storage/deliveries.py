"""The notify service's Redis state, and the one layout of what it keeps there.

Keys this service owns (README, "Redis keys"):
- `ntf:person:{bucket}`   hash person_id -> 5 bytes of phone (big-endian integer, 0: none) followed by
                          the masked name in UTF-8 (projection of PersonRegistered; a few dozen
                          bytes a person, the listpack of the shared 65,536 person buckets)
- `ntf:inst`              hash institution code -> registered name (projection of InstitutionRegistered)
- `ntf:ends:{YYYYMMDD}:{k}` hash binding_id -> "grantor|beneficiary": the bindings in force that end
                          that day (k: one of 32 buckets by binding id, so each stays a listpack),
                          expiring a week after the day: projection of binding.events for the
                          daily ending-soon check
- `ntf:msg:{message_id}`  while in flight, a hash: `state` (pending | deferred); while pending,
                          `owner` and `lease` (the claim) and `over` (it took a crashed sender's
                          claim over); `notice` (what to send) and `wait_until` (how long an
                          unknown person is waited for). Once done, a plain string: the compact
                          recorded outcome (`encode_outcome`; empty when skipped), with a TTL of
                          NOTIFY_RECORD_TTL_DAYS
- `ntf:due`               zset message_id -> when to look at it again (ms): a held message's release
                          time, or a claim's lease deadline (a crashed sender's claim is found there)
- `ntf:sink`              list: what the local sink provider "sent"

Every method that touches many messages sends them in one pipelined round trip."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.envelope import CHINA_TZ
from shared.state import person_bucket
from services.notify.domain.notices import Notice

LIBRARY = files("services.notify.storage").joinpath("notify.lua").read_text
DUE = "ntf:due"
INSTITUTIONS = "ntf:inst"
END_BUCKETS = 32
_PHONE_BYTES = 5
_KEEP_ENDED_DAYS = 8  # an end day's bindings stay a week past it (the check looks 7 days ahead)


def _person_key(person_id: str) -> str:
    return f"ntf:person:{person_bucket(person_id)}"


def _msg_key(message_id: str) -> str:
    return f"ntf:msg:{message_id}"


def _ends_key(end_day: int, binding_id: str) -> str:
    return f"ntf:ends:{end_day}:{zlib.crc32(binding_id.encode()) % END_BUCKETS}"


def _notice_json(notice: Notice) -> str:
    # vars(), not dataclasses.asdict: the notice's fields are plain values, and asdict's deep copy
    # was a measurable share of a batch's time.
    return json.dumps(vars(notice), ensure_ascii=False, separators=(",", ":"))


def encode_contact(phone: str | None, masked_name: str) -> bytes:
    """A mainland mobile number fits 5 bytes as an integer; the masked name follows."""
    return int(phone or 0).to_bytes(_PHONE_BYTES, "big") + masked_name.encode()


def decode_contact(raw: bytes) -> tuple[str, str]:
    number = int.from_bytes(raw[:_PHONE_BYTES], "big")
    return (str(number) if number else "", raw[_PHONE_BYTES:].decode())


def encode_outcome(outcome: dict[str, Any]) -> bytes:
    """The recorded outcome, only what a redelivery cannot tell again: a JSON array, its time in
    epoch seconds. SmsSent: ["S", phone, segments, provider, receipt, at]; SmsFailed: ["F", phone,
    segments, provider, reason, attempts, detail, at]."""
    at = int(datetime.fromisoformat(outcome["at"]).timestamp())
    if outcome["type"] == "SmsSent":
        fields = ["S", outcome["phone"], outcome["segments"], outcome["provider"], outcome["receipt"], at]
    else:
        fields = ["F", outcome["phone"], outcome["segments"], outcome["provider"], outcome["reason"],
                  outcome["attempts"], outcome["detail"], at]
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


def decode_outcome(raw: bytes) -> dict[str, Any]:
    """The outcome `encode_outcome` recorded (or, from before that layout, the JSON object kept)."""
    value = json.loads(raw)
    if isinstance(value, dict):
        return value
    at = datetime.fromtimestamp(value[-1], CHINA_TZ).isoformat(timespec="seconds")
    if value[0] == "S":
        _, phone, segments, provider, receipt, _ = value
        return {"type": "SmsSent", "phone": phone, "segments": segments, "provider": provider, "receipt": receipt,
                "at": at}
    _, phone, segments, provider, reason, attempts, detail, _ = value
    return {"type": "SmsFailed", "phone": phone, "segments": segments, "provider": provider, "reason": reason,
            "attempts": attempts, "detail": detail, "at": at}


@dataclass(frozen=True)
class Claim:
    status: str        # CLAIMED | TAKEN_OVER | HELD
    state: str         # the state found: '' (new), deferred, pending, done
    recorded: bytes    # the recorded outcome, when HELD by one ('' when skipped)


@dataclass(frozen=True)
class ClaimAsk:
    message_id: str
    notice: Notice | None   # None: keep the notice stored with the message
    token: str
    from_state: str = ""    # '' for a new message, 'deferred' to release a held one


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
            pipe.hset(_person_key(person_id), person_id, encode_contact(phone, masked_name))
        await pipe.execute()

    async def contacts(self, person_ids: list[str]) -> dict[str, tuple[str, str]]:
        """person_id -> (phone or '', masked name) for those known; one command for them all."""
        if not person_ids:
            return {}
        found = await self._redis.fcall("contacts", len(person_ids), *map(_person_key, person_ids), *person_ids)
        return {pid: decode_contact(raw) for pid, raw in zip(person_ids, found) if raw}

    async def save_institutions(self, names: dict[str, str]) -> None:
        await self._redis.hset(INSTITUTIONS, mapping=names)

    async def institution_names(self, codes: list[str]) -> dict[str, str]:
        if not codes:
            return {}
        found = await self._redis.hmget(INSTITUTIONS, codes)
        return {code: raw.decode() for code, raw in zip(codes, found) if raw}

    async def follow_bindings(self, changes: list[tuple[str, str, str, date, bool]]) -> None:
        """(binding_id, grantor, beneficiary, end_date, in_force): track a binding in force for
        the ending-soon check, or forget it (revoked)."""
        pipe = self._redis.pipeline(transaction=False)
        for binding_id, grantor, beneficiary, end_date, in_force in changes:
            key = _ends_key(int(end_date.strftime("%Y%m%d")), binding_id)
            if in_force:
                pipe.hset(key, binding_id, f"{grantor}|{beneficiary}")
                forget = datetime.combine(end_date + timedelta(days=_KEEP_ENDED_DAYS), time(), CHINA_TZ)
                pipe.expireat(key, int(forget.timestamp()))
            else:
                pipe.hdel(key, binding_id)
        await pipe.execute()

    async def ending_between(self, first_day: date, last_day: date) -> list[tuple[str, str, str, str]]:
        """(binding_id, grantor, beneficiary, end date) of the bindings in force ending in the range."""
        days = [first_day + timedelta(days=i) for i in range((last_day - first_day).days + 1)]
        pipe = self._redis.pipeline(transaction=False)
        for day in days:
            for k in range(END_BUCKETS):
                pipe.hgetall(f"ntf:ends:{day.strftime('%Y%m%d')}:{k}")
        found = await pipe.execute()
        ending = []
        for i, day in enumerate(days):
            for bucket in found[i * END_BUCKETS:(i + 1) * END_BUCKETS]:
                for binding_id, pair in sorted(bucket.items()):
                    grantor, beneficiary = pair.decode().split("|")
                    ending.append((binding_id.decode(), grantor, beneficiary, day.isoformat()))
        return ending

    # -- a message's life (notify.lua), a batch a round trip --------------------------------------
    async def _each(self, batch: str, one: str, keys: list[str], common: list, each: list[list],
                    width: int) -> list[list | Exception]:
        """The batch's Function for all messages in one command; should it fail, the single one
        per message, pipelined, so that an error is only its own message's (never the connection's:
        that raises)."""
        if not keys:
            return []
        try:
            flat = await self._redis.fcall(batch, len(keys) + 1, DUE, *keys, *common,
                                           *(arg for args in each for arg in args))
            return [flat[i:i + width] for i in range(0, len(flat), width)]
        except ResponseError:
            pipe = self._redis.pipeline(transaction=False)
            for key, args in zip(keys, each):
                pipe.fcall(one, 2, key, DUE, *common, *args)
            return await pipe.execute(raise_on_error=False)

    async def claim(self, asks: list[ClaimAsk], now_ms: int, lease_until_ms: int) -> list[Claim | Exception]:
        """Each message claimed atomically, all in one command."""
        answers = await self._each("claim_all", "claim", [_msg_key(a.message_id) for a in asks], [now_ms, lease_until_ms],
                                   [[a.from_state, a.token, a.message_id, _notice_json(a.notice) if a.notice else ""]
                                    for a in asks], 3)
        return [answer if isinstance(answer, Exception) else Claim(answer[0].decode(), answer[1].decode(), answer[2])
                for answer in answers]

    async def record(self, outcomes: list[tuple[str, str, bytes]]) -> list[bool | Exception]:
        """(message_id, token, recorded outcome): True where recorded by this claim's owner, or
        found recorded with these very bytes (the first answer was lost on the wire); False when
        another instance took the claim over and recorded its own."""
        answers = await self._each("record_all", "record", [_msg_key(m) for m, _, _ in outcomes], [self._ttl],
                                   [[token, outcome, m] for m, token, outcome in outcomes], 2)
        return [answer if isinstance(answer, Exception) else answer[0] == b"RECORDED" or answer[1] == outcome
                for (_, _, outcome), answer in zip(outcomes, answers)]

    async def hold(self, holds: list[tuple[str, str, Notice, int, int]]) -> list[bool | Exception]:
        """(message_id, token, notice, release_at_ms, wait_until_ms): put owned claims back to
        wait; False where the claim was lost."""
        pipe = self._redis.pipeline(transaction=False)
        for message_id, token, notice, release_at_ms, wait_until_ms in holds:
            pipe.fcall("hold", 2, _msg_key(message_id), DUE, token, release_at_ms, _notice_json(notice),
                       wait_until_ms, message_id)
        return [answer if isinstance(answer, Exception) else answer == b"OK"
                for answer in await pipe.execute(raise_on_error=False)]

    async def due(self, now_ms: int, limit: int = 500) -> list[Due]:
        """Messages to look at again: held ones whose time has come, claims past their lease."""
        ids = [i.decode() for i in await self._redis.zrangebyscore(DUE, "-inf", now_ms, start=0, num=limit)]
        pipe = self._redis.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(_msg_key(i), "notice", "wait_until")
        found, gone = [], []
        for i, answer in zip(ids, await pipe.execute(raise_on_error=False)):
            if isinstance(answer, Exception) or not answer[0]:
                gone.append(i)  # nothing left to act on (cannot happen while the Function keeps them in step)
            else:
                found.append(Due(i, Notice(**json.loads(answer[0])), int(answer[1] or 0)))
        if gone:
            await self._redis.zrem(DUE, *gone)
        return found
