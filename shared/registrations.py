"""Reading PersonRegistered off `bureau.accounts`, for the services that keep a projection of who
is insured where. What cannot be read, or is not a valid registration, goes to the DLQ with the
original bytes: bureau events have no outcome topic to answer on."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import envelope
from shared.bureau import BUREAU_EVENT_TYPES, PERSON_REGISTERED, PersonRegistered
from shared.kafka import Received, dead_letter


async def registrations(broker: KafkaBroker, batch: list[Received]) -> list[PersonRegistered]:
    """The valid registrations of a batch; other bureau event types are skipped."""
    people = []
    for msg in batch:
        readable = envelope.read(msg.value, BUREAU_EVENT_TYPES)
        if isinstance(readable, envelope.Unreadable):
            await dead_letter(broker, msg, readable.error)
            continue
        if readable.event_type != PERSON_REGISTERED:
            continue
        try:
            people.append(PersonRegistered.model_validate(readable.body.get("payload")))
        except ValidationError as exc:
            where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in exc.errors()[:5])
            await dead_letter(broker, msg, f"invalid PersonRegistered: {where}")
    return people
