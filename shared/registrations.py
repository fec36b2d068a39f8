"""Reading the person events of `bureau.accounts` (PersonRegistered, PersonTransferred) for the
services that keep a projection of who is insured where (binding, notify).

Contract version 3: each event is believed only from the bureau it speaks for. Its signature is
verified first, then `shared.bureau`'s rules decide, against the service's own projection (the
person's region and the transfer his own bureau granted): a registration only from the bureau of
its region, for a new person, a person of that region, or one transferred there; a transfer only
from the bureau of the region the person is in now. bureau.accounts is keyed by person id, so one
consumer sees a person's events in order; within a batch each is decided on what the ones before
it left.

What cannot be read, is not believed, or is not a valid event goes to the DLQ with the original
bytes (bureau events have no outcome topic to answer on); a refusal's `dlq-error` begins with its
code (`NOT_SIGNERS: ...`). Other bureau event types are skipped: they are settlement's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from shared import envelope
from shared.bureau import (BUREAU_EVENT_TYPES, PERSON_REGISTERED, PERSON_TRANSFERRED, PersonRegistered,
                           PersonTransferred, registration_refusal, transfer_refusal)
from shared.kafka import Received, dead_letter
from shared.signing import KeyFinder, SignatureRefused, Signer, verify_received

_MODELS: dict[str, type[BaseModel]] = {PERSON_REGISTERED: PersonRegistered, PERSON_TRANSFERRED: PersonTransferred}


@dataclass(frozen=True)
class Standing:
    """What a projection holds of a person: the region he is registered in (None: not
    registered) and the region his own bureau transferred him to (None: none)."""

    region: str | None = None
    transferred_to: str | None = None


@dataclass
class PersonChanges:
    """What a batch changes in a projection: the registrations believed, in order (a person's
    last one is his), and the transfer markers set or cleared (person -> region, None: cleared)."""

    registered: list[PersonRegistered] = field(default_factory=list)
    transfers: dict[str, str | None] = field(default_factory=dict)


StandingOf = Callable[[list[str]], Awaitable[dict[str, Standing]]]


async def read_standing(redis: Redis, person_ids: list[str], person_key: Callable[[str], str],
                        moving_key: Callable[[str], str], region_of: Callable[[str, bytes], str | None],
                        ) -> dict[str, Standing]:
    """A projection's standing of each person, one round trip: its entry (`person_key`, field
    the person's id, read by `region_of`) and its transfer (`moving_key`, the region as text)."""
    if not person_ids:
        return {}
    pipe = redis.pipeline(transaction=False)
    for pid in person_ids:
        pipe.hget(person_key(pid), pid)
        pipe.hget(moving_key(pid), pid)
    replies = iter(await pipe.execute())
    found = {}
    for pid in person_ids:
        raw, moving = next(replies), next(replies)
        if raw or moving:
            found[pid] = Standing(region_of(pid, raw) if raw else None, moving.decode() if moving else None)
    return found


@dataclass(frozen=True)
class Verdict:
    """A person event judged: `refused` None when it is believed; the person's standing before
    it and after it (the same when refused)."""

    refused: SignatureRefused | None
    before: Standing
    after: Standing


class People:
    """The people of one batch as a projection has them (`known`, read once) and as the batch's
    believed events leave them: each event is judged on what the ones before it left. The one
    place where who may register or move whom (shared/bureau.py) meets a projection's state;
    binding's, notify's and settlement's projections all judge through it."""

    def __init__(self, known: dict[str, Standing]) -> None:
        self._known = known

    def judge(self, signer: Signer, event: PersonRegistered | PersonTransferred) -> Verdict:
        before = self._known.get(event.person_id, Standing())
        if isinstance(event, PersonRegistered):
            refused = registration_refusal(signer, event.region, before.region, before.transferred_to)
            # a registration in the region the person was transferred to spends the transfer
            after = Standing(event.region, None if before.transferred_to == event.region else before.transferred_to)
        else:
            refused = transfer_refusal(signer, before.region)
            after = Standing(before.region, event.to_region)
        if refused is not None:
            return Verdict(refused, before, before)
        self._known[event.person_id] = after
        return Verdict(None, before, after)

async def person_changes(broker: KafkaBroker, batch: list[Received], find: KeyFinder, standing_of: StandingOf,
                         now: datetime | None = None) -> PersonChanges:
    """The person events of a batch that are believed, as changes to the projection that
    `standing_of` reads (one call for the whole batch). Everything else is dead-lettered or skipped."""
    now = now or envelope.now()
    signed: list[tuple[Received, Signer, PersonRegistered | PersonTransferred]] = []
    for msg in batch:
        readable = envelope.read(msg.value, BUREAU_EVENT_TYPES)
        if isinstance(readable, envelope.Unreadable):
            await dead_letter(broker, msg, readable.error)
            continue
        model = _MODELS.get(readable.event_type)
        if model is None:
            continue
        signer = verify_received(msg, find, now)
        if isinstance(signer, SignatureRefused):
            await dead_letter(broker, msg, f"{signer.value}: {readable.event_type} not believed")
            continue
        try:
            signed.append((msg, signer, model.model_validate(readable.body.get("payload"))))
        except ValidationError as exc:
            where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in exc.errors()[:5])
            await dead_letter(broker, msg, f"invalid {readable.event_type}: {where}")
    changes = PersonChanges()
    if not signed:
        return changes
    people = People(await standing_of(list({event.person_id: None for _, _, event in signed})))
    for msg, signer, event in signed:
        verdict = people.judge(signer, event)
        if verdict.refused is not None:
            await dead_letter(broker, msg, _why(verdict.refused, signer, event, verdict.before))
        elif isinstance(event, PersonRegistered):
            changes.registered.append(event)
            if verdict.before.transferred_to is not None and verdict.after.transferred_to is None:
                changes.transfers[event.person_id] = None  # moved: the transfer is spent
        else:
            changes.transfers[event.person_id] = event.to_region
    return changes


def _why(refused: SignatureRefused, signer: Signer, event: PersonRegistered | PersonTransferred,
         standing: Standing) -> str:
    """The dead letter's reason, code first; regions and the key id, never the person's id."""
    where = f"registered in {standing.region}" if standing.region else "not registered"
    if isinstance(event, PersonRegistered):
        moving = f", transferred to {standing.transferred_to}" if standing.transferred_to else ""
        return (f"{refused.value}: PersonRegistered for region {event.region} signed by {signer.key_id}; "
                f"the person is {where}{moving}")
    return (f"{refused.value}: PersonTransferred to {event.to_region} signed by {signer.key_id}; "
            f"the person is {where}")
