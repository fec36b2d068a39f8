"""The envelope every message on the platform travels in, and how to read one off the wire.

Reading is split in two on purpose (contract.md, "Rejection or dead letter"): a message whose
envelope can be read (a JSON object with an `event_id` and a known `event_type`) is always
answered on the outcome topic; only a message that cannot be answered goes to the DLQ.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared import clock

SCHEMA_VERSION = 1
CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
# Outcome ids are derived from the command's id, so a republished outcome is byte-for-byte the
# same message and downstream consumers can dedupe it by event_id.
_OUTCOME_NAMESPACE = uuid.UUID("6f1c2d8e-3b7a-5e55-9c1e-61f00d0a1d00")


class Envelope(BaseModel):
    """A message as it travels: the event's identity and its payload."""

    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(min_length=1, max_length=128)
    event_type: str
    schema_version: int = SCHEMA_VERSION
    occurred_at: AwareDatetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class Unreadable:
    """Bytes that cannot be answered: not JSON, no event_id, or an unknown event_type."""

    error: str


@dataclass(frozen=True)
class Readable:
    """A message that can be answered: its id and type are known, the rest may still be wrong."""

    event_id: str
    event_type: str
    body: dict[str, Any]


def read(raw: bytes, known_types: frozenset[str]) -> Readable | Unreadable:
    """Tell an answerable message from one for the dead-letter topic."""
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Unreadable(f"not UTF-8 JSON: {exc.__class__.__name__}")
    if not isinstance(body, dict):
        return Unreadable("not a JSON object")
    event_id = body.get("event_id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 128:
        return Unreadable("missing or invalid event_id")
    event_type = body.get("event_type")
    if event_type not in known_types:
        return Unreadable(f"unknown event_type {str(event_type)[:64]!r}")
    return Readable(event_id=event_id, event_type=event_type, body=body)


def now() -> datetime:
    """The platform's clock, in China time: the host's clock moved by CLOCK_OFFSET_SECONDS
    (shared.clock; zero unless a test or a drill sets it)."""
    return datetime.now(CHINA_TZ) + clock.offset()


def china_today(at: datetime | None = None) -> date:
    """The day it is in China at `at` (default: the platform's clock now), whatever the host's zone.

    The one place a China date is read off a clock: never `date.today()`, which is the host's day
    (on a UTC host it is still yesterday in China between 00:00 and 08:00 China time)."""
    return (at if at is not None else now()).astimezone(CHINA_TZ).date()


def outcome_id(cause_id: str, event_type: str) -> str:
    """A stable id for the outcome of `cause_id`, the same on every redelivery."""
    return str(uuid.uuid5(_OUTCOME_NAMESPACE, f"{cause_id}/{event_type}"))


def seal(event_type: str, payload: BaseModel | dict[str, Any], *, event_id: str | None = None,
         occurred_at: datetime | None = None) -> bytes:
    """Wrap a payload in the envelope and serialise it to the bytes that go on the wire."""
    # orjson writes what json.dumps(ensure_ascii=False, separators=(",", ":")) writes, as UTF-8
    # bytes, several times faster; pydantic serialises a model payload in Rust.
    head = orjson.dumps({
        "event_id": event_id or str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": SCHEMA_VERSION,
        "occurred_at": (occurred_at or now()).isoformat(timespec="seconds"),
    })
    body = (payload.__pydantic_serializer__.to_json(payload, exclude_none=True) if isinstance(payload, BaseModel)
            else orjson.dumps(payload))
    return b"".join((head[:-1], b',"payload":', body, b"}"))
