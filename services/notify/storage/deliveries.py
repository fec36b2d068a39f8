"""The notify service's Redis state, and the one layout of what it keeps there.

Keys this service owns (README, "Redis keys"):
- `ntf:person:{bucket}`   hash person_id -> 5 bytes of phone (big-endian integer, 0: none; its top bit
                          set when 3 bytes of the registering region follow), then the masked name
                          in UTF-8 (projection of PersonRegistered; a few dozen bytes a person, the
                          listpack of the shared 65,536 person buckets). The region decides who may
                          change the phone (contract version 3); contacts from before it have none
- `ntf:moving:{bucket}`   hash person_id -> the region his own bureau transferred him to
                          (PersonTransferred), until that region registers him
- `ntf:phone:{bucket}`    hash phone -> the person ids registered with that phone, comma-separated
                          (at most PHONES_PER_NUMBER, the latest kept): the reverse index of the
                          contacts, written where they are projected, read by the SMS uplink
                          (bucket: the phone as an integer mod 65,536). Only a hint: every id it
                          gives is checked against `ntf:person`, so an entry a phone change left
                          behind never answers
- `ntf:phone:indexed`     string: the reverse index was built from the contacts projected before it
                          existed (once, at start-up)
- `ntf:ask:{command_id}`  string "person_id|reference": a DisputePayment notify published for an SMS
                          reply, kept ASK_TTL_SECONDS (7 days) so that binding's refusal of it
                          (BindingRejected) can be told to the grantor who replied
- `ntf:inst`              hash institution code -> registered name (projection of InstitutionRegistered)
- `ntf:inst:region`       hash institution code -> its region: only that region's bureau renames it
- `ntf:ends:{YYYYMMDD}:{k}` hash binding_id -> "grantor|beneficiary": the bindings in force that end
                          that day (k: one of 32 buckets by binding id, so each stays a listpack),
                          expiring a week after the day: projection of binding.events for the
                          daily ending-soon check
- `ntf:msg:{message_id}`  while in flight, a hash: `state` (pending | deferred); while pending,
                          `owner` and `lease` (the claim) and `over` (it took a crashed sender's
                          claim over); `notice` (what to send) and `wait_until` (how long an
                          unknown person is waited for). Gone once done. (Records from before the
                          buckets, and of a message with no day, are a plain string here: the
                          recorded outcome, with a TTL of NOTIFY_RECORD_TTL_DAYS.)
- `ntf:done:{YYYYMMDD}:{k}` hash: the recorded outcomes of the messages whose source event is of
                          that day (China time), message id's 16 bytes -> `encode_outcome` (empty
                          when skipped); k: one of DONE_BUCKETS by CRC32 of the id, so each stays
                          a listpack. The bucket expires at the first UTC midnight at least
                          NOTIFY_RECORD_TTL_DAYS after its latest record
- `ntf:due`               zset message_id -> when to look at it again (ms): a held message's release
                          time, or a claim's lease deadline (a crashed sender's claim is found there)
- `ntf:sink`              list: what the local sink provider "sent"

Every method that touches many messages sends them in one pipelined round trip."""

from __future__ import annotations

import json
import uuid
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from importlib.resources import files
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.durability import Durability
from shared.envelope import CHINA_TZ
from shared.registrations import Standing, read_standing
from shared.state import person_bucket
from services.notify.domain.notices import Notice

LIBRARY = files("services.notify.storage").joinpath("notify.lua").read_text
DUE = "ntf:due"
DURABLE = "ntf:durable"  # written before each wait for the replica (shared/durability.py)
INSTITUTIONS = "ntf:inst"
INSTITUTION_REGIONS = "ntf:inst:region"
END_BUCKETS = 32
DONE_BUCKETS = 256  # never change: a record is found only in the bucket it was written to
_PHONE_BYTES = 5
_WITH_REGION = 1 << (8 * _PHONE_BYTES - 1)  # a mobile number is below 2^35: the top bit is free
_REGION_BYTES = 3  # six digits are below 2^24
_KEEP_ENDED_DAYS = 8  # an end day's bindings stay a week past it (the check looks 7 days ahead)
PHONE_BUCKETS = 65_536
PHONES_PER_NUMBER = 4  # a family may register one phone for several people; more is not a family
PHONES_INDEXED = "ntf:phone:indexed"
ASK_TTL_SECONDS = 7 * 86_400  # a refusal comes within seconds; a week covers any outage of binding


def _person_key(person_id: str) -> str:
    return f"ntf:person:{person_bucket(person_id)}"


def _moving_key(person_id: str) -> str:
    return f"ntf:moving:{person_bucket(person_id)}"


def _phone_key(phone: str) -> str:
    return f"ntf:phone:{int(phone) % PHONE_BUCKETS}"


def _msg_key(message_id: str) -> str:
    return f"ntf:msg:{message_id}"


def _done_field(message_id: str) -> bytes:
    try:
        return uuid.UUID(message_id).bytes
    except ValueError:
        return message_id.encode()


def _done_key(message_id: str, day: str | None) -> str:
    """The bucket of the message's recorded outcome; with no day, the message's own key (the
    older layout, field '')."""
    if not day:
        return _msg_key(message_id)
    return f"ntf:done:{day}:{zlib.crc32(_done_field(message_id)) % DONE_BUCKETS}"


def _done_args(message_id: str, day: str | None) -> tuple[list[str], bytes]:
    return [_msg_key(message_id), _done_key(message_id, day)], _done_field(message_id) if day else b""


def _ends_key(end_day: int, binding_id: str) -> str:
    return f"ntf:ends:{end_day}:{zlib.crc32(binding_id.encode()) % END_BUCKETS}"


def _notice_json(notice: Notice) -> str:
    # vars(), not dataclasses.asdict: the notice's fields are plain values, and asdict's deep copy
    # was a measurable share of a batch's time.
    return json.dumps(vars(notice), ensure_ascii=False, separators=(",", ":"))


def encode_contact(phone: str | None, masked_name: str, region: str | None = None) -> bytes:
    """A mainland mobile number fits 5 bytes as an integer; the region (3 bytes) and the masked
    name follow."""
    if region is None:
        return int(phone or 0).to_bytes(_PHONE_BYTES, "big") + masked_name.encode()
    return ((int(phone or 0) | _WITH_REGION).to_bytes(_PHONE_BYTES, "big") + int(region).to_bytes(_REGION_BYTES, "big")
            + masked_name.encode())


def decode_contact(raw: bytes) -> tuple[str, str]:
    """(phone or '', masked name)."""
    number = int.from_bytes(raw[:_PHONE_BYTES], "big")
    start = _PHONE_BYTES + (_REGION_BYTES if number & _WITH_REGION else 0)
    number &= ~_WITH_REGION
    return (str(number) if number else "", raw[start:].decode())


def contact_region(raw: bytes) -> str | None:
    """The region that registered the contact (None: a contact from before regions were kept)."""
    if not raw[0] & (_WITH_REGION >> 8 * (_PHONE_BYTES - 1)):
        return None
    return f"{int.from_bytes(raw[_PHONE_BYTES:_PHONE_BYTES + _REGION_BYTES], 'big'):06d}"


_SEP = "|"


def _b36(number: int) -> str:
    digits = ""
    while True:
        number, d = divmod(number, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[d] + digits
        if not number:
            return digits


def encode_outcome(outcome: dict[str, Any]) -> bytes:
    """The recorded outcome, only what a redelivery cannot tell again, `|`-separated, its time in
    epoch seconds base 36, the one free text (a receipt, a detail) last so it may hold `|`.
    SmsSent: S|phone|segments|provider|at|receipt; SmsFailed: F|phone|segments|provider|reason|
    attempts|at, then |detail when there is one."""
    at = _b36(int(datetime.fromisoformat(outcome["at"]).timestamp()))
    common = [outcome["phone"], str(outcome["segments"]), outcome["provider"]]
    if outcome["type"] == "SmsSent":
        fields = ["S", *common, at, outcome["receipt"]]
    else:
        fields = ["F", *common, outcome["reason"], str(outcome["attempts"]), at]
        if outcome["detail"] is not None:
            fields.append(outcome["detail"])
    return _SEP.join(fields).encode()


def _time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, CHINA_TZ).isoformat(timespec="seconds")


def decode_outcome(raw: bytes) -> dict[str, Any]:
    """The outcome `encode_outcome` recorded (or, from before that layout, the JSON array or the
    JSON object kept)."""
    if raw[:1] in (b"{", b"["):
        return _decode_json(json.loads(raw))
    text = raw.decode()
    if text[0] == "S":
        _, phone, segments, provider, at, receipt = text.split(_SEP, 5)
        return {"type": "SmsSent", "phone": phone, "segments": int(segments), "provider": provider,
                "receipt": receipt, "at": _time(int(at, 36))}
    parts = text.split(_SEP, 7)
    _, phone, segments, provider, reason, attempts, at = parts[:7]
    return {"type": "SmsFailed", "phone": phone, "segments": int(segments), "provider": provider, "reason": reason,
            "attempts": int(attempts), "detail": parts[7] if len(parts) > 7 else None, "at": _time(int(at, 36))}


def _decode_json(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    at = _time(value[-1])
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
    day: str | None = None  # YYYYMMDD of its source event: the bucket of its record (None: older layout)


@dataclass(frozen=True)
class Due:
    message_id: str
    notice: Notice
    wait_until_ms: int  # 0: not waiting for a person


class DeliveryStore:
    def __init__(self, redis: Redis, record_ttl: int, durability: Durability | None = None) -> None:
        self._redis = redis
        self._ttl = record_ttl
        self._durability = durability or Durability(key=DURABLE)

    @property
    def durability(self) -> Durability:
        return self._durability

    async def load_functions(self) -> None:
        await self._redis.function_load(LIBRARY(), replace=True)

    # -- projections ----------------------------------------------------------------------------
    async def save_contacts(self, people: list[tuple[str, str | None, str, str]],
                            transfers: dict[str, str | None] | None = None) -> None:
        """The contacts (person, phone, masked name, region), and the phone index beside them: a
        person's new phone added, the old one (a phone changed) taken out; and the transfers set
        (None: spent). A person's registrations are on one partition, so no other consumer changes
        that person's contact between the look and the write."""
        latest = {person_id: (phone or "", masked_name, region) for person_id, phone, masked_name, region in people}
        before = await self.contacts(list(latest))
        ops: list[tuple[str, str, str]] = []
        pipe = self._redis.pipeline(transaction=False)
        for person_id, region in (transfers or {}).items():
            if region is None:
                pipe.hdel(_moving_key(person_id), person_id)
            else:
                pipe.hset(_moving_key(person_id), person_id, region)
        for person_id, (phone, masked_name, region) in latest.items():
            pipe.hset(_person_key(person_id), person_id, encode_contact(phone, masked_name, region))
            old = before.get(person_id, ("",))[0]
            if old and old != phone:
                ops.append(("del", old, person_id))
            if phone:
                ops.append(("add", phone, person_id))
        self._index_phones(pipe, ops)
        await self._durability.execute(pipe)  # projections: on the replica before the commit

    @staticmethod
    def _index_phones(pipe, ops: list[tuple[str, str, str]]) -> None:
        if ops:
            pipe.fcall("phones", len(ops), *(_phone_key(phone) for _, phone, _ in ops), PHONES_PER_NUMBER,
                       *(arg for op in ops for arg in op))

    async def index_phones_once(self, chunk: int = 500) -> int:
        """Build the phone index from contacts projected before it existed; once (a marker says
        so), before the consumers start. Returns how many contacts were indexed."""
        if await self._redis.exists(PHONES_INDEXED):
            return 0
        indexed = 0
        async for key in self._redis.scan_iter(match="ntf:person:*", count=1000):
            ops = [("add", phone, person_id.decode()) for person_id, raw in (await self._redis.hgetall(key)).items()
                   if (phone := decode_contact(raw)[0])]
            for first in range(0, len(ops), chunk):
                pipe = self._redis.pipeline(transaction=False)
                self._index_phones(pipe, ops[first:first + chunk])
                await pipe.execute()
            indexed += len(ops)
        await self._redis.set(PHONES_INDEXED, str(indexed))
        return indexed

    async def remember_asks(self, asks: list[tuple[str, str, str]]) -> None:
        """(command_id, person_id, reference) of the disputes asked for SMS replies."""
        if not asks:
            return
        pipe = self._redis.pipeline(transaction=False)
        for command_id, person_id, reference in asks:
            pipe.set(f"ntf:ask:{command_id}", f"{person_id}|{reference}", ex=ASK_TTL_SECONDS)
        await pipe.execute()

    async def ask(self, command_id: str) -> tuple[str, str] | None:
        """(person_id, reference) of a dispute notify asked for, if it did (in the last week)."""
        raw = await self._redis.get(f"ntf:ask:{command_id}")
        if not raw:
            return None
        person_id, reference = raw.decode().split("|")
        return person_id, reference

    async def people_by_phone(self, phones: list[str]) -> dict[str, list[str]]:
        """phone -> the ids of the people whose contact has that phone now (none: unknown)."""
        distinct = sorted(set(phones))
        if not distinct:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for phone in distinct:
            pipe.hget(_phone_key(phone), phone)
        candidates = {phone: raw.decode().split(",") for phone, raw in zip(distinct, await pipe.execute()) if raw}
        current = await self.contacts(sorted({pid for ids in candidates.values() for pid in ids}))
        return {phone: [pid for pid in ids if current.get(pid, ("",))[0] == phone] for phone, ids in candidates.items()}

    async def standing(self, person_ids: list[str]) -> dict[str, Standing]:
        """Where each person is registered and where his own bureau transferred him (the rules of
        `shared.registrations`), one round trip."""
        return await read_standing(self._redis, person_ids, _person_key, _moving_key, lambda _, raw: contact_region(raw))

    async def contacts(self, person_ids: list[str]) -> dict[str, tuple[str, str]]:
        """person_id -> (phone or '', masked name) for those known; one command for them all."""
        if not person_ids:
            return {}
        found = await self._redis.fcall("contacts", len(person_ids), *map(_person_key, person_ids), *person_ids)
        return {pid: decode_contact(raw) for pid, raw in zip(person_ids, found) if raw}

    async def save_institutions(self, names: dict[str, str], regions: dict[str, str]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(INSTITUTIONS, mapping=names)
        pipe.hset(INSTITUTION_REGIONS, mapping=regions)
        await self._durability.execute(pipe)  # projections: on the replica before the commit

    async def institution_regions(self, codes: list[str]) -> dict[str, str]:
        if not codes:
            return {}
        found = await self._redis.hmget(INSTITUTION_REGIONS, codes)
        return {code: raw.decode() for code, raw in zip(codes, found) if raw}

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
        await self._durability.execute(pipe)  # projections: on the replica before the commit

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
    async def _each(self, batch: str, one: str, keys: list[list[str]], common: list, each: list[list],
                    width: int) -> list[list | Exception]:
        """The batch's Function for all messages in one command; should it fail, the single one
        per message, pipelined, so that an error is only its own message's (never the connection's:
        that raises). `keys`: each message's key and its record's bucket."""
        if not keys:
            return []
        pipe = self._redis.pipeline(transaction=False)
        pipe.fcall(batch, 2 * len(keys) + 1, DUE, *(k for pair in keys for k in pair), *common,
                   *(arg for args in each for arg in args))
        # a claim is on the replica before its SMS goes out, an outcome before it is published
        [flat] = await self._durability.execute(pipe, raise_on_error=False)
        if not isinstance(flat, ResponseError):
            return [flat[i:i + width] for i in range(0, len(flat), width)]
        pipe = self._redis.pipeline(transaction=False)
        for (msg_key, done_key), args in zip(keys, each):
            pipe.fcall(one, 3, msg_key, DUE, done_key, *common, *args)
        return await self._durability.execute(pipe, raise_on_error=False)

    async def claim(self, asks: list[ClaimAsk], now_ms: int, lease_until_ms: int) -> list[Claim | Exception]:
        """Each message claimed atomically, all in one command."""
        places = [_done_args(a.message_id, a.day) for a in asks]
        answers = await self._each("claim_all", "claim", [keys for keys, _ in places], [now_ms, lease_until_ms],
                                   [[a.from_state, a.token, a.message_id, _notice_json(a.notice) if a.notice else "",
                                     field] for a, (_, field) in zip(asks, places)], 3)
        return [answer if isinstance(answer, Exception) else Claim(answer[0].decode(), answer[1].decode(), answer[2])
                for answer in answers]

    async def record(self, outcomes: list[tuple[str, str | None, str, bytes]]) -> list[bool | Exception]:
        """(message_id, day, token, recorded outcome): True where recorded by this claim's owner,
        or found recorded with these very bytes (the first answer was lost on the wire); False
        when another instance took the claim over and recorded its own."""
        places = [_done_args(m, day) for m, day, _, _ in outcomes]
        answers = await self._each("record_all", "record", [keys for keys, _ in places], [self._ttl],
                                   [[token, outcome, m, field]
                                    for (m, _, token, outcome), (_, field) in zip(outcomes, places)], 2)
        return [answer if isinstance(answer, Exception) else answer[0] == b"RECORDED" or answer[1] == outcome
                for (_, _, _, outcome), answer in zip(outcomes, answers)]

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
