"""Bindings and the insured-person registry of the binding service, in Redis.

Keys this service owns (README, "Redis keys"):
- `bnd:person:{bucket}`  hash person_id -> "region|scheme|name_digest" (projection of PersonRegistered)
- `bnd:ben:{beneficiary}` hash binding_id -> binding as JSON, every status (the rules' input)
- `bnd:gr:{grantor}`      hash binding_id -> beneficiary_id (the grantor's role query)
- `bnd:id:{binding_id}`   "beneficiary_id|payment order at creation|command_id", permanent: finds a
                          binding by id, and is the tombstone that keeps a binding id from ever being
                          activated again (older records hold the beneficiary_id alone)
- `bnd:pay:{beneficiary}` the payer index read by settlement (shared/binding_index.py)
- `bnd:ends`              sorted set "beneficiary_id:binding_id" scored by the end date's ordinal: which
                          payer index entries the sweep removes, without scanning every beneficiary
- `bnd:out:{command_id}`  hash {event, key}: the recorded outcome, so a redelivery repeats it
                          (TTL BINDING_OUTCOME_TTL_DAYS, at least KAFKA_RETENTION_DAYS)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import date

from redis.asyncio import Redis
from redis.exceptions import WatchError

from shared.binding_index import Payer, encode_payer, payers_key
from shared.state import person_bucket
from services.binding.domain.model import Binding, Insured, Relation, Scheme, Status


@dataclass(frozen=True)
class Outcome:
    """The sealed outcome event and the Kafka key it is published under."""

    event: bytes
    key: bytes | None


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    changed: list[Binding]


@dataclass(frozen=True)
class UsedId:
    """The tombstone of a binding id: a binding was created under it, by this command."""

    beneficiary_id: str
    payment_order: int | None  # at creation; None in records older than the tombstone
    command_id: str | None


ENDS_KEY = "bnd:ends"


def _people_key(person_id: str) -> str:
    return f"bnd:person:{person_bucket(person_id)}"


def _encode_binding(b: Binding) -> str:
    return json.dumps({**asdict(b), "start_date": b.start_date.isoformat(), "end_date": b.end_date.isoformat()},
                      separators=(",", ":"))


def _decode_binding(raw: bytes) -> Binding:
    d = json.loads(raw)
    return Binding(**{**d, "relation": Relation(d["relation"]), "status": Status(d["status"]),
                      "start_date": date.fromisoformat(d["start_date"]),
                      "end_date": date.fromisoformat(d["end_date"])})


class BindingStore:
    def __init__(self, redis: Redis, outcome_ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = outcome_ttl_seconds

    async def save_insured(self, people: Iterable[Insured]) -> None:
        """One round trip for a whole batch of registrations; re-registering overwrites."""
        pipe = self._redis.pipeline(transaction=False)
        for p in people:
            pipe.hset(_people_key(p.person_id), p.person_id, f"{p.region}|{p.scheme.value}|{p.name_digest}")
        await pipe.execute()

    async def insured(self, *person_ids: str) -> list[Insured | None]:
        pipe = self._redis.pipeline(transaction=False)
        for pid in person_ids:
            pipe.hget(_people_key(pid), pid)
        found = []
        for pid, raw in zip(person_ids, await pipe.execute()):
            if raw is None:
                found.append(None)
                continue
            region, scheme, digest = raw.decode().split("|")
            found.append(Insured(pid, region, Scheme(scheme), digest))
        return found

    async def recorded_outcome(self, command_id: str) -> Outcome | None:
        return _outcome(await self._redis.hgetall(f"bnd:out:{command_id}"))

    async def beneficiary_of(self, binding_id: str) -> str | None:
        used = _used(await self._redis.get(_id_key(binding_id)))
        return used.beneficiary_id if used else None

    async def bindings_of_beneficiary(self, beneficiary_id: str) -> list[Binding]:
        return [_decode_binding(v) for v in (await self._redis.hgetall(f"bnd:ben:{beneficiary_id}")).values()]

    async def bindings_of_grantor(self, grantor_id: str) -> list[Binding]:
        index = await self._redis.hgetall(f"bnd:gr:{grantor_id}")
        if not index:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for binding_id, beneficiary_id in index.items():
            pipe.hget(f"bnd:ben:{beneficiary_id.decode()}", binding_id)
        return [_decode_binding(raw) for raw in await pipe.execute() if raw]

    async def decide_once(self, command_id: str, beneficiary_id: str | None,
                          decide: Callable[[list[Binding], UsedId | None], Decision], *,
                          payers_ended_before: date, new_binding_id: str | None = None) -> Outcome:
        """Run `decide` on the beneficiary's current bindings and commit its changes together with
        the outcome, or return the outcome already recorded for this command.

        Optimistic concurrency (WATCH): if another command changes the beneficiary's bindings
        meanwhile, decide again on the new state, so two racing commands can never both take
        the last grantor place or the same payment order.

        `new_binding_id` (CreateBinding): its tombstone, if any, is read inside the same WATCH and
        given to `decide`, so a redelivery after the outcome record expired cannot make the
        binding again. Every write also drops from the payer index the beneficiary's bindings
        that ended before `payers_ended_before`.
        """
        out_key = f"bnd:out:{command_id}"
        watched = [out_key] + ([f"bnd:ben:{beneficiary_id}"] if beneficiary_id else [])
        watched += [_id_key(new_binding_id)] if new_binding_id else []
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(*watched)
                    recorded = _outcome(await pipe.hgetall(out_key))
                    if recorded:
                        await pipe.reset()
                        return recorded
                    existing = ([_decode_binding(v) for v in (await pipe.hgetall(watched[1])).values()]
                                if beneficiary_id else [])
                    used = _used(await pipe.get(_id_key(new_binding_id))) if new_binding_id else None
                    decision = decide(existing, used)
                    pipe.multi()
                    changed = {b.binding_id for b in decision.changed}
                    for b in existing:
                        if b.binding_id not in changed and not b.is_revoked and b.end_date < payers_ended_before:
                            self._drop_payer(pipe, b)
                    for b in decision.changed:
                        self._write(pipe, b, command_id if b.binding_id == new_binding_id else None)
                    mapping = {"event": decision.outcome.event, "key": decision.outcome.key or b""}
                    pipe.hset(out_key, mapping=mapping)
                    pipe.expire(out_key, self._ttl)
                    await pipe.execute()
                    return decision.outcome
                except WatchError:
                    continue

    async def sweep_ended_payers(self, ended_before: date, batch: int = 1000) -> int:
        """Remove from the payer index every binding that ended before `ended_before`; returns how
        many. Nothing can put such an entry back: an ended binding cannot be changed or revoked,
        and a redelivered CreateBinding is stopped by its tombstone."""
        removed = 0
        while True:
            due = await self._redis.zrangebyscore(ENDS_KEY, "-inf", f"({ended_before.toordinal()}",
                                                  start=0, num=batch)
            if not due:
                return removed
            pipe = self._redis.pipeline(transaction=False)
            for member in due:
                beneficiary_id, binding_id = member.decode().split(":", 1)
                pipe.hdel(payers_key(beneficiary_id), binding_id)
            pipe.zrem(ENDS_KEY, *due)
            await pipe.execute()
            removed += len(due)

    @staticmethod
    def _write(pipe, b: Binding, created_by: str | None) -> None:
        pipe.hset(f"bnd:ben:{b.beneficiary_id}", b.binding_id, _encode_binding(b))
        pipe.hset(f"bnd:gr:{b.grantor_id}", b.binding_id, b.beneficiary_id)
        if created_by is not None:
            # Permanent (no TTL): the binding id is used, whatever becomes of the binding.
            pipe.set(_id_key(b.binding_id), f"{b.beneficiary_id}|{b.payment_order}|{created_by}")
        if b.status is Status.ACTIVE:
            payer = Payer(b.binding_id, b.grantor_id, b.payment_order, b.start_date, b.end_date, b.grantor_region)
            pipe.hset(payers_key(b.beneficiary_id), b.binding_id, encode_payer(payer))
            pipe.zadd(ENDS_KEY, {_ends_member(b): b.end_date.toordinal()})
        else:
            BindingStore._drop_payer(pipe, b)

    @staticmethod
    def _drop_payer(pipe, b: Binding) -> None:
        pipe.hdel(payers_key(b.beneficiary_id), b.binding_id)
        pipe.zrem(ENDS_KEY, _ends_member(b))


def _id_key(binding_id: str) -> str:
    return f"bnd:id:{binding_id}"


def _ends_member(b: Binding) -> str:
    return f"{b.beneficiary_id}:{b.binding_id}"


def _used(raw: bytes | None) -> UsedId | None:
    if raw is None:
        return None
    beneficiary_id, _, rest = raw.decode().partition("|")
    if not rest:
        return UsedId(beneficiary_id, None, None)
    order, _, command_id = rest.partition("|")
    return UsedId(beneficiary_id, int(order), command_id)


def _outcome(recorded: dict[bytes, bytes]) -> Outcome | None:
    if not recorded:
        return None
    return Outcome(recorded[b"event"], recorded[b"key"] or None)
