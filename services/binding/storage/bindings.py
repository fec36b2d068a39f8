"""Bindings and the insured-person registry of the binding service, in Redis.

Keys this service owns (README, "Redis keys"); every layout is compact, because at a province's
millions of people and bindings each byte here is megabytes:
- `bnd:person:{bucket}`   hash person_id -> one integer: name digest (32 bits) * 10^7 + region * 10
                          + scheme (1 employee, 2 resident); listpack stores it in 9 bytes
- `bnd:ben:{beneficiary}` string: the beneficiary's bindings, every status, one line each
                          (`_encode_binding`: with the monthly limit, the paused flag and the count
                          of open disputes last, each empty when none); the rules' input, and the
                          permanent tombstone of each binding id (a line is never removed);
                          compared whole when a batch commits (compare-and-set)
- `bnd:gr:{bucket}`       hash grantor_id -> "beneficiary,beneficiary": whose bindings to read for
                          the grantor's role query
- `bnd:id:{bucket}`       hash binding_id -> beneficiary_id, permanent (bucket: the id's first 4
                          hex digits): finds the binding a RevokeBinding or ChangePaymentOrder names
- `bnd:pay:{beneficiary}` the payer index read by settlement (shared/binding_index.py)
- `bnd:ends`              sorted set beneficiary_id scored by the earliest end (YYYYMMDD) in its
                          payer index: what the sweep looks at, without scanning every beneficiary
- `bnd:moving:{bucket}`   hash person_id -> the region his own bureau transferred him to
                          (PersonTransferred, contract version 3), until that region registers him
- `bnd:out:{command_id}`  a recorded outcome other than BindingCreated and BindingRejected, compact
                          (`_encode_outcome`; TTL BINDING_OUTCOME_TTL_DAYS). A BindingCreated is
                          rebuilt from its binding's line instead (order at creation and the time
                          it was made), so a created binding leaves no outcome record at all.
- `bnd:rej:{generation}:{k}` hash: the recorded BindingRejected of commands refused by a rule,
                          command id (its 16 bytes when a uuid) -> "at|key|reason|detail";
                          generation: the refusal's time (epoch seconds) // the outcome TTL, k: one
                          of REFUSAL_BUCKETS by CRC32 of the command id, so each stays a listpack.
                          A generation expires one TTL after it ends, so every record is kept at
                          least the TTL and at most twice it; found by looking in the generations
                          around now. Refusals that anyone can cause cost a hash field each, not
                          a key with a TTL of its own. (Older refusals are `bnd:out` keys.)
- `bnd:ref:{grantor}:{reference}` a grantor's payment by its reference (I-2), projected from
                          settlement.results' ChargeSettled grantor lines (consumer group
                          `binding.references`): "beneficiary|binding_id|institution|charge_id|
                          amount_fen|charged YYYYMMDD|grantor_region", expiring
                          BINDING_DISPUTE_WINDOW_DAYS after the charge (EXAT): what DisputePayment finds
- `bnd:refd:{grantor}:{reference}` hash refund_id -> fen: what RefundSettled grantor lines returned of
                          that payment (issue 21), expiring with the dispute window after the refund; a
                          payment found by its reference is what is still out (amount less these)
- `bnd:dsp:{dispute_id}`  a dispute, permanent (`_encode_dispute`): "status|grantor|reference|
                          binding_id|beneficiary|charge_id|institution|amount_fen|channel|
                          opened_at|decided_at|grantor_region|paused_binding"; written only in the
                          compare-and-set commit of its beneficiary's bindings (opening it pauses
                          the binding and counts it open on the binding's line; deciding it
                          uncounts it), so a dispute and its binding never disagree
- `bnd:dspg:{grantor}`    set of the grantor's dispute ids, for QueryDisputes
Changes are applied only through the `binding` Function library (bindings.lua, after the payer
index's reader shared/binding_index.lua).
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import cache

from redis.asyncio import Redis

from shared.binding_index import LUA_READER, PAUSED, Payer, encode_payer, payers_key
from shared.durability import Durability
from shared.envelope import CHINA_TZ
from shared.function_library import library as function_library
from shared.registrations import Standing, read_standing
from shared.state import calling_functions, person_bucket
from services.binding.domain.model import (Binding, Dispute, DisputeStatus, Insured, Payment, Relation, Scheme,
                                           Status)

ENDS_KEY = "bnd:ends"
DURABLE = "bnd:durable"  # written before each wait for the replica (shared/durability.py)
REFUSAL_BUCKETS = 1024  # never change: a refusal is found only in the bucket it was written to
_SCHEME_DIGITS = {Scheme.EMPLOYEE: 1, Scheme.RESIDENT: 2}
_SCHEMES = {digit: scheme for scheme, digit in _SCHEME_DIGITS.items()}
_RELATIONS = {Relation.FATHER: "f", Relation.MOTHER: "m", Relation.SPOUSE: "s", Relation.CHILD: "c"}
_CHANNELS = {"app": "a", "mini_program": "m", "window": "w"}
_STATUSES = {Status.ACTIVE: "a", Status.REVOKED: "r"}
_SIGNATURE_PREFIX = "sha256:"


@cache
def library() -> str:
    """The Function library's source, read on first use (no file I/O at import)."""
    return function_library("binding", LUA_READER, ("services.binding.storage", "bindings.lua"))


# -- layouts ---------------------------------------------------------------------------------

def people_key(person_id: str) -> str:
    return f"bnd:person:{person_bucket(person_id)}"


def moving_key(person_id: str) -> str:
    return f"bnd:moving:{person_bucket(person_id)}"


def encode_insured(p: Insured) -> int:
    return int(p.name_digest, 16) * 10**7 + int(p.region) * 10 + _SCHEME_DIGITS[p.scheme]


def decode_insured(person_id: str, raw: bytes) -> Insured:
    if b"|" in raw:  # the layout before this one: "region|scheme|64-bit digest"
        region, scheme, digest = raw.decode().split("|")
        return Insured(person_id, region, Scheme(scheme), digest[:8])
    digest, rest = divmod(int(raw), 10**7)
    return Insured(person_id, f"{rest // 10:06d}", _SCHEMES[rest % 10], f"{digest:08x}")


@dataclass(frozen=True)
class Stored:
    """A binding as kept: what it is now, and what it was when made (for its BindingCreated)."""

    binding: Binding
    created_order: int
    created_at: int  # epoch seconds of its BindingCreated


def _encode_binding(s: Stored) -> str:
    b = s.binding
    signature = b.signature_digest.removeprefix(_SIGNATURE_PREFIX)
    return "|".join((b.binding_id, b.grantor_id, _RELATIONS[b.relation], str(b.payment_order),
                     f"{b.start_date:%Y%m%d}", f"{b.end_date:%Y%m%d}", b.grantor_region, b.beneficiary_region,
                     signature, _CHANNELS[b.channel], _STATUSES[b.status], str(s.created_order), str(s.created_at),
                     _optional(b.monthly_limit), PAUSED if b.paused else "", _optional(b.open_disputes or None)))


def _optional(n: int | None) -> str:
    return "" if n is None else str(n)


def _decode_binding(beneficiary_id: str, line: str) -> Stored:
    (binding_id, grantor_id, relation, order, start, end, grantor_region, beneficiary_region, signature,
     channel, status, created_order, created_at, *added) = line.split("|")
    # a line written before limits and pause has 13 fields: no limit, not paused, no dispute
    limit, paused, disputes = (added + ["", "", ""])[:3]
    binding = Binding(
        binding_id=binding_id, grantor_id=grantor_id, beneficiary_id=beneficiary_id,
        relation=next(r for r, code in _RELATIONS.items() if code == relation), payment_order=int(order),
        start_date=_day(start), end_date=_day(end), grantor_region=grantor_region,
        beneficiary_region=beneficiary_region, signature_digest=_SIGNATURE_PREFIX + signature if signature else "",
        channel=next(c for c, code in _CHANNELS.items() if code == channel),
        status=next(s for s, code in _STATUSES.items() if code == status),
        monthly_limit=int(limit) if limit else None, paused=paused == PAUSED,
        open_disputes=int(disputes) if disputes else 0)
    return Stored(binding, int(created_order), int(created_at))


def encode_bindings(bindings: Iterable[Stored]) -> str:
    return "\n".join(_encode_binding(s) for s in bindings)


def decode_bindings(beneficiary_id: str, raw: bytes | None) -> list[Stored]:
    return [_decode_binding(beneficiary_id, line) for line in raw.decode().split("\n")] if raw else []


def _day(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def _ben_key(beneficiary_id: str) -> str:
    return f"bnd:ben:{beneficiary_id}"


def _grantor_key(grantor_id: str) -> str:
    return f"bnd:gr:{person_bucket(grantor_id)}"


def id_key(binding_id: str) -> str:
    """Binding ids are `BND-` and hex digits of a uuid5: the first four spread evenly."""
    return f"bnd:id:{binding_id[4:8]}"


@dataclass(frozen=True)
class Recorded:
    """A recorded outcome other than BindingCreated: its type, when, the Kafka key, and what
    rebuilds its payload (the refusal's reason and detail, or the payload without command_id)."""

    event_type: str
    at: int
    key: bytes | None
    data: str


def _encode_outcome(r: Recorded) -> str:
    return f"{r.at}|{(r.key or b'').decode()}|{r.event_type}|{r.data}"


def _decode_outcome(raw: bytes) -> Recorded:
    at, key, event_type, data = raw.decode().split("|", 3)
    return Recorded(event_type, int(at), key.encode() or None, data)


def refusal_field(command_id: str) -> bytes:
    """A uuid command id (the usual) in its 16 bytes; any other id as it is (a canonical uuid
    string and its bytes are one-to-one, so no two ids share a field)."""
    try:
        parsed = uuid.UUID(command_id)
    except ValueError:
        return command_id.encode()
    return parsed.bytes if str(parsed) == command_id else command_id.encode()


def refusal_bucket(command_id: str) -> int:
    return zlib.crc32(refusal_field(command_id)) % REFUSAL_BUCKETS


def refusal_key(command_id: str, generation: int) -> str:
    return f"bnd:rej:{generation}:{refusal_bucket(command_id)}"


def _encode_refusal(r: Recorded) -> str:
    return f"{r.at}|{(r.key or b'').decode()}|{r.data}"


def _decode_refusal(raw: bytes) -> Recorded:
    at, key, data = raw.decode().split("|", 2)
    return Recorded("BindingRejected", int(at), key.encode() or None, data)


def ref_key(grantor_id: str, reference: str) -> str:
    return f"bnd:ref:{grantor_id}:{reference}"


def refunds_key(grantor_id: str, reference: str) -> str:
    return f"bnd:refd:{grantor_id}:{reference}"


def encode_payment(p: Payment) -> str:
    return "|".join((p.beneficiary_id, p.binding_id, p.institution_code, p.charge_id, str(p.amount),
                     f"{p.charged_on:%Y%m%d}", p.grantor_region))


def decode_payment(grantor_id: str, reference: str, raw: bytes) -> Payment:
    beneficiary, binding_id, institution, charge_id, amount, day, region = raw.decode().split("|")
    return Payment(grantor_id, reference, beneficiary, binding_id, institution, charge_id, int(amount), _day(day),
                   region)


def dispute_key(dispute_id: str) -> str:
    return f"bnd:dsp:{dispute_id}"


def disputes_of_key(grantor_id: str) -> str:
    return f"bnd:dspg:{grantor_id}"


_DISPUTE_STATUSES = {DisputeStatus.OPEN: "o", DisputeStatus.UPHELD: "u", DisputeStatus.DISMISSED: "d"}


def encode_dispute(d: Dispute) -> str:
    return "|".join((_DISPUTE_STATUSES[d.status], d.grantor_id, d.reference, d.binding_id, d.beneficiary_id,
                     d.charge_id, d.institution_code, str(d.amount), d.channel, str(d.opened_at),
                     _optional(d.decided_at), d.grantor_region, "1" if d.paused_binding else ""))


def decode_dispute(dispute_id: str, raw: bytes) -> Dispute:
    (status, grantor, reference, binding_id, beneficiary, charge_id, institution, amount, channel, opened_at,
     decided_at, region, paused) = raw.decode().split("|")
    return Dispute(dispute_id, grantor, reference, binding_id, beneficiary, charge_id, institution, int(amount),
                   channel, int(opened_at), region, paused == "1",
                   next(s for s, code in _DISPUTE_STATUSES.items() if code == status),
                   int(decided_at) if decided_at else None)


def epoch(at: datetime) -> int:
    return int(at.timestamp())


def moment(at: int) -> datetime:
    return datetime.fromtimestamp(at, CHINA_TZ)


# -- reads and the commit ----------------------------------------------------------------------

@dataclass
class Plan:
    """What one beneficiary's commands of a batch change, applied atomically if the bindings are
    still `expect` (compare-and-set); `beneficiary_id` None: outcome records only."""

    beneficiary_id: str | None
    expect: str = ""
    bindings: list[Stored] | None = None  # None: unchanged
    new_grantors: list[str] = field(default_factory=list)
    new_ids: list[str] = field(default_factory=list)
    outcomes: list[tuple[str, Recorded]] = field(default_factory=list)
    disputes: list[Dispute] = field(default_factory=list)  # opened or decided by these commands


class BindingStore:
    def __init__(self, redis: Redis, outcome_ttl_seconds: int, durability: Durability | None = None) -> None:
        self._redis = redis
        self._ttl = outcome_ttl_seconds
        # what a command's outcome waits for before it is published (shared/durability.py): the
        # lookup's wait covers outcomes recorded by an earlier attempt, the commit's the new ones
        self._durability = durability or Durability(key=DURABLE)

    async def load_functions(self) -> None:
        """Once at start-up; REPLACE so a new release's library takes over."""
        await self._redis.function_load(library(), replace=True)

    @property
    def durability(self) -> Durability:
        return self._durability

    async def save_insured(self, people: Iterable[Insured], transfers: dict[str, str | None] | None = None) -> None:
        """One round trip for a whole batch of registrations (in order: re-registering overwrites)
        and transfers (set, or None: spent)."""
        pipe = self._redis.pipeline(transaction=False)
        for p in people:
            pipe.hset(people_key(p.person_id), p.person_id, encode_insured(p))
        for person_id, region in (transfers or {}).items():
            if region is None:
                pipe.hdel(moving_key(person_id), person_id)
            else:
                pipe.hset(moving_key(person_id), person_id, region)
        await self._durability.execute(pipe)  # projections: on the replica before the commit

    async def standing(self, person_ids: list[str]) -> dict[str, Standing]:
        """Where each person is registered and where his own bureau transferred him, one round
        trip (the rules of `shared.registrations`)."""
        return await read_standing(self._redis, person_ids, people_key, moving_key,
                                   lambda pid, raw: decode_insured(pid, raw).region)

    def _generation(self, at: int) -> int:
        return at // self._ttl

    async def lookup(self, command_ids: list[str], person_ids: list[str], binding_ids: list[str],
                     now: int | None = None) -> tuple[dict[str, Recorded], dict[str, Insured], dict[str, str]]:
        """One round trip: recorded outcomes by command id, registrations by person, and the
        beneficiary of each binding id (the ones known). A refusal is looked for in the
        generations before, at and after now's (`now` epoch seconds): one written by an instance
        whose clock runs a little ahead is found too."""
        now = int(time.time()) if now is None else now
        generations = [self._generation(now) + d for d in (-1, 0, 1)]
        asked = [x for cid in command_ids for x in (cid, refusal_field(cid), refusal_bucket(cid))]

        async def run() -> list:
            pipe = self._redis.pipeline(transaction=False)
            if command_ids:
                pipe.fcall("bnd_outcomes", 0, *generations, "|", *asked)
            for pid in person_ids:
                pipe.hget(people_key(pid), pid)
            for bid in binding_ids:
                pipe.hget(id_key(bid), bid)
            return await self._durability.execute(pipe, raise_on_error=False)
        answers = await calling_functions(run, self.load_functions)
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        replies = iter(answers)
        outs = {}
        for cid, found in zip(command_ids, next(replies) if command_ids else []):
            if found[:1] == b"o":
                outs[cid] = _decode_outcome(found[1:])
            elif found[:1] == b"r":
                outs[cid] = _decode_refusal(found[1:])
        people = {pid: decode_insured(pid, raw) for pid in person_ids if (raw := next(replies))}
        owners = {bid: raw.decode() for bid in binding_ids if (raw := next(replies))}
        return outs, people, owners

    async def bindings_read(self, beneficiary_ids: list[str]) -> dict[str, bytes]:
        """The beneficiaries' binding records as stored ('' when none), the compare-and-set base."""
        pipe = self._redis.pipeline(transaction=False)
        for ben in beneficiary_ids:
            pipe.get(_ben_key(ben))
        return {ben: raw or b"" for ben, raw in zip(beneficiary_ids, await pipe.execute())}

    async def commit(self, plans: list[Plan], payers_ended_before: date) -> list[bool]:
        """One pipelined round trip of the commit Function, one call per plan; True where applied,
        False where the beneficiary's bindings changed since they were read."""
        if not plans:
            return []
        calls = [(json.dumps(self._plan_json(p, payers_ended_before), separators=(",", ":")), *self._refusals(p))
                 for p in plans]

        async def run() -> list:
            pipe = self._redis.pipeline(transaction=False)
            for call in calls:
                pipe.fcall("bnd_commit", 0, *call)
            return await self._durability.execute(pipe, raise_on_error=False)
        # an applied plan changed its record: redone after a reload, it fails the compare and is
        # decided again, reading what it wrote
        replies = await calling_functions(run, self.load_functions)
        for r in replies:
            if isinstance(r, Exception):
                raise r
        return [r == 1 for r in replies]

    def _refusals(self, p: Plan) -> list[str | bytes | int]:
        """The plan's refusals as the Function's arguments after the plan: (hash, field, record,
        the hash's expiry) each; the field is binary, hence not in the plan's JSON."""
        args: list[str | bytes | int] = []
        for cid, r in p.outcomes:
            if r.event_type == "BindingRejected":
                generation = self._generation(r.at)
                args += [refusal_key(cid, generation), refusal_field(cid), _encode_refusal(r),
                         (generation + 2) * self._ttl]
        return args

    def _plan_json(self, p: Plan, ended_before: date) -> dict:
        plan: dict = {"outs": [[f"bnd:out:{cid}", _encode_outcome(r), self._ttl] for cid, r in p.outcomes
                               if r.event_type != "BindingRejected"]}
        if p.beneficiary_id is None:
            return plan
        ben = p.beneficiary_id
        plan |= {"ben": ben, "ben_key": _ben_key(ben), "expect": p.expect}
        if p.bindings is not None:
            # The payer index follows from the bindings: those not revoked and not ended before
            # the grace period; rewriting it whole also prunes the ended ones at every write.
            payers = [s.binding for s in p.bindings
                      if not s.binding.is_revoked and s.binding.end_date >= ended_before]
            plan |= {
                "record": encode_bindings(p.bindings), "pay_key": payers_key(ben),
                "payers": [x for b in payers for x in (b.binding_id, encode_payer(Payer(
                    b.binding_id, b.grantor_id, b.payment_order, b.start_date, b.end_date, b.grantor_region,
                    b.monthly_limit, b.paused)))],
                "ends_score": min((f"{b.end_date:%Y%m%d}" for b in payers), default="0"),
                "grantors": [[_grantor_key(g), g] for g in p.new_grantors],
                "ids": [[id_key(bid), bid] for bid in p.new_ids],
            }
        if p.disputes:
            plan |= {"sets": [[dispute_key(d.dispute_id), encode_dispute(d)] for d in p.disputes],
                     "members": [[disputes_of_key(d.grantor_id), d.dispute_id] for d in p.disputes]}
        return plan

    # -- payments by reference and disputes ---------------------------------------------------
    async def save_payments(self, payments: list[tuple[Payment, int]]) -> None:
        """The reference projection: each payment until its expiry (epoch seconds), one round
        trip. Writing one again (a redelivery) writes the same value with the same expiry."""
        if not payments:
            return
        pipe = self._redis.pipeline(transaction=False)
        for p, expires_at in payments:
            pipe.set(ref_key(p.grantor_id, p.reference), encode_payment(p), exat=expires_at)
        await self._durability.execute(pipe)  # projections: on the replica before the commit

    async def save_refunds(self, refunds: list[tuple[str, str, str, int, int]]) -> None:
        """What refunds returned of grantor payments: (grantor, reference, refund_id, fen, expiry epoch
        seconds), one round trip. A redelivery writes the same field again."""
        if not refunds:
            return
        pipe = self._redis.pipeline(transaction=False)
        for grantor, reference, refund_id, amount, expires_at in refunds:
            pipe.hset(refunds_key(grantor, reference), refund_id, amount)
            pipe.expireat(refunds_key(grantor, reference), expires_at)
        await self._durability.execute(pipe)  # projections: on the replica before the commit

    async def payments_and_disputes(self, refs: list[tuple[str, str]], dispute_ids: list[str],
                                    ) -> tuple[dict[tuple[str, str], Payment], dict[str, Dispute]]:
        """One round trip: the payments known by (grantor, reference), each with what is still out
        (its amount less what refunds returned), and the disputes by id."""
        pipe = self._redis.pipeline(transaction=False)
        for grantor, reference in refs:
            pipe.get(ref_key(grantor, reference))
            pipe.hvals(refunds_key(grantor, reference))
        for dispute_id in dispute_ids:
            pipe.get(dispute_key(dispute_id))
        replies = iter(await pipe.execute())
        payments = {}
        for g, r in refs:
            raw, refunded = next(replies), next(replies)
            if raw:
                p = decode_payment(g, r, raw)
                payments[g, r] = replace(p, amount=max(0, p.amount - sum(int(x) for x in refunded)))
        disputes = {d: decode_dispute(d, raw) for d in dispute_ids if (raw := next(replies))}
        return payments, disputes

    async def disputes_of(self, grantor_id: str, most: int) -> list[Dispute]:
        """The grantor's disputes, newest first, at most `most`."""
        ids = sorted(m.decode() for m in await self._redis.smembers(disputes_of_key(grantor_id)))
        if not ids:
            return []
        found = [decode_dispute(i, raw) for i, raw in zip(ids, await self._redis.mget([dispute_key(i) for i in ids]))
                 if raw]
        return sorted(found, key=lambda d: (-d.opened_at, d.dispute_id))[:most]

    # -- the role query and the sweep --------------------------------------------------------
    async def bindings_of_beneficiary(self, beneficiary_id: str) -> list[Binding]:
        return [s.binding for s in decode_bindings(beneficiary_id, await self._redis.get(_ben_key(beneficiary_id)))]

    async def bindings_of_grantor(self, grantor_id: str) -> list[Binding]:
        listed = await self._redis.hget(_grantor_key(grantor_id), grantor_id)
        if not listed:
            return []
        beneficiaries = listed.decode().split(",")
        records = await self.bindings_read(beneficiaries)
        return [s.binding for ben in beneficiaries for s in decode_bindings(ben, records[ben])
                if s.binding.grantor_id == grantor_id]

    async def sweep_ended_payers(self, ended_before: date, batch: int = 1000) -> int:
        """Remove from the payer index every binding that ended before `ended_before`; returns how
        many. Nothing can put such an entry back: an ended binding cannot be changed or revoked,
        and a redelivered CreateBinding finds its binding already made."""
        removed = 0
        while True:
            looked, dropped = await self._redis.fcall("bnd_sweep", 0, f"{ended_before:%Y%m%d}", batch)
            removed += dropped
            if looked < batch:
                return removed

