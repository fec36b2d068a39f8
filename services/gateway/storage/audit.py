"""The gateway's one piece of state: the audit projection of `gateway.audit` in Redis, read by
GET /v1/audit. Written only through the `gateway` Function library (audit.lua), one atomic call
per record: the region's list (the clerk's region's, and the subject's when another), the
clerk's list and the time bound in one step.

Keys (README, "Redis keys"):
- `gw:audit:{region}`          sorted set of audit entries (JSON, holding the record's event id),
                               scored by the record's time in epoch ms: entries of the region's
                               clerks and entries about the region's persons by clerks elsewhere;
                               none older than GATEWAY_AUDIT_TTL_DAYS (bounded by time, not count)
- `gw:audit:{region}:{clerk}`  the same entries of one clerk (a window token's own list)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from shared.state import calling_functions

# What an entry holds, in the order GET /v1/audit shows it (plus `id`, the record's event id).
FIELDS = ("at", "clerk_id", "region", "action", "command_id", "subject_id", "subject_region", "outcome",
          "reason_code")


@cache
def library() -> str:
    """The Function library's source, read on first use (no file I/O at import)."""
    return Path(__file__).with_name("audit.lua").read_text()


def region_key(region: str) -> str:
    return f"gw:audit:{region}"


def clerk_key(region: str, clerk_id: str) -> str:
    return f"gw:audit:{region}:{clerk_id}"


@dataclass(frozen=True)
class Entry:
    """One audited window action, as projected."""

    event_id: str
    at: datetime
    clerk_id: str
    region: str
    action: str
    command_id: str
    subject_id: str
    outcome: str
    reason_code: str | None = None
    subject_region: str | None = None

    def member(self) -> str:
        """The sorted-set member: the same record always gives the same bytes (a redelivery adds nothing)."""
        return json.dumps({"id": self.event_id, "at": self.at.isoformat(), "clerk_id": self.clerk_id,
                           "region": self.region, "action": self.action, "command_id": self.command_id,
                           "subject_id": self.subject_id, "outcome": self.outcome, "reason_code": self.reason_code,
                           "subject_region": self.subject_region},
                          ensure_ascii=False, separators=(",", ":"))

    @property
    def score(self) -> int:
        return int(self.at.timestamp() * 1000)


def read_member(raw: bytes) -> dict[str, Any]:
    """An entry as stored, without its event id."""
    entry = json.loads(raw)
    return {name: entry.get(name) for name in FIELDS}


@dataclass(frozen=True)
class Listed:
    total: int
    entries: list[dict[str, Any]]


class AuditStore:
    def __init__(self, redis: Redis, ttl_seconds: int, clock: Callable[[], datetime]) -> None:
        self._redis, self._ttl_ms, self._clock = redis, ttl_seconds * 1000, clock

    async def load_functions(self) -> None:
        """Once at start-up; REPLACE so a new release's library takes over."""
        await self._redis.function_load(library(), replace=True)

    def _cutoff_ms(self) -> int:
        return int(self._clock().timestamp() * 1000) - self._ttl_ms

    async def add(self, entries: Iterable[Entry]) -> int:
        """One pipelined round trip for a batch; returns how many entries were new."""
        entries = list(entries)
        if not entries:
            return 0

        async def run() -> list:
            cutoff = self._cutoff_ms()
            pipe = self._redis.pipeline(transaction=False)
            for e in entries:
                keys = [region_key(e.region), clerk_key(e.region, e.clerk_id)]
                if e.subject_region and e.subject_region != e.region:
                    keys.append(region_key(e.subject_region))
                pipe.fcall("gw_audit_add", len(keys), *keys, e.member(), e.score, cutoff, self._ttl_ms)
            return await pipe.execute(raise_on_error=False)
        replies = await calling_functions(run, self.load_functions)  # an entry added twice is one entry
        for r in replies:
            if isinstance(r, Exception):
                raise r
        return sum(int(r) for r in replies)

    async def page(self, region: str, clerk_id: str | None, start: datetime, end: datetime, offset: int,
                   count: int) -> Listed:
        """Entries of `region` (only `clerk_id`'s when given) at `start` <= at < `end`, newest
        first, `count` of them from `offset`, and how many there are in all; none older than the TTL."""
        key = clerk_key(region, clerk_id) if clerk_id else region_key(region)
        low = max(int(start.timestamp() * 1000), self._cutoff_ms() + 1)
        high = f"({int(end.timestamp() * 1000)}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcount(key, low, high)
        pipe.zrevrangebyscore(key, high, low, start=offset, num=count)
        total, members = await pipe.execute()
        return Listed(int(total), [read_member(m) for m in members])
