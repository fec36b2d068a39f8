"""Idempotency keys of the HTTP API's commands: a client's `Idempotency-Key`, per principal,
remembered with the command it first named (its id) and a digest of what it asked. A retry
with the same key and the same request is the same command; the same key with another request
is refused. One SET NX GET per command: a concurrent retry finds the first one's record.

Keys (README, "Redis keys"): `gw:idem:{principal}:{digest of the key}` = `<request digest> <command id>`,
for GATEWAY_IDEMPOTENCY_TTL_HOURS."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis


def request_digest(event_type: str, payload: dict[str, Any]) -> str:
    """What a command asks, whatever the order of its fields (the path's binding id included)."""
    text = json.dumps([event_type, payload], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def record_key(principal: str, idempotency_key: str) -> str:
    return f"gw:idem:{principal}:{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}"


@dataclass(frozen=True)
class Claimed:
    command_id: str
    first: bool        # this request is the key's first: send the command
    same_request: bool  # False: the key was used for another request


class IdempotencyStore:
    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self._redis, self._ttl = redis, ttl_seconds

    async def claim(self, principal: str, idempotency_key: str, digest: str, command_id: str) -> Claimed:
        """Record `command_id` for the key, or find the one recorded first."""
        earlier = await self._redis.set(record_key(principal, idempotency_key), f"{digest} {command_id}",
                                        ex=self._ttl, nx=True, get=True)
        if earlier is None:
            return Claimed(command_id, first=True, same_request=True)
        first_digest, _, first_id = earlier.decode().partition(" ")
        return Claimed(first_id, first=False, same_request=first_digest == digest)
