"""Who gets in, shared by every gateway instance through Redis: revoked tokens and clerks, and
each principal's token buckets of look-ups and commands. One Function call per request
(admission.lua, library `gateway_admission`): the revocation check and the bucket in one round trip.

Keys (README, "Redis keys"): `gw:rl:{kind}:{principal}`, `gw:rv:jti:{jti}`, `gw:rv:clerk:{clerk}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from pathlib import Path

from redis.asyncio import Redis

from shared.state import calling_functions
from shared.tokens import Principal


@cache
def library() -> str:
    """The Function library's source, read on first use (no file I/O at import)."""
    return Path(__file__).with_name("admission.lua").read_text()


def bucket_key(kind: str, principal: str) -> str:
    return f"gw:rl:{kind}:{principal}"


def token_key(jti: str) -> str:
    return f"gw:rv:jti:{jti}"


def clerk_key(clerk_id: str) -> str:
    return f"gw:rv:clerk:{clerk_id}"


class Verdict(IntEnum):
    ADMITTED = 0
    LIMITED = 1
    TOKEN_REVOKED = 2
    CLERK_REVOKED = 3


@dataclass(frozen=True)
class Rate:
    """A token bucket's refill (per minute) and size."""

    per_minute: int
    burst: int


@dataclass(frozen=True)
class Admission:
    verdict: Verdict
    wait_ms: int = 0

    @property
    def retry_after_seconds(self) -> int:
        """Whole seconds, at least 1: what Retry-After says."""
        return max(1, math.ceil(self.wait_ms / 1000))


class AdmissionStore:
    def __init__(self, redis: Redis, revocation_ttl_seconds: int) -> None:
        self._redis, self._revocation_ttl_ms = redis, revocation_ttl_seconds * 1000

    async def load_functions(self) -> None:
        """Once at start-up; REPLACE so a new release's library takes over."""
        await self._redis.function_load(library(), replace=True)

    async def _call(self, function: str, keys: list[str], args: list[object]) -> object:
        async def run() -> list:
            pipe = self._redis.pipeline(transaction=False)
            pipe.fcall(function, len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)
        [reply] = await calling_functions(run, self.load_functions)
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def admit(self, who: Principal, kind: str, rate: Rate, cost: int = 1, now_ms: int | None = None) -> Admission:
        """Whether `who` may make one more request of `kind` (`lookup`, `command`) now; a revoked
        token or clerk is never admitted (and takes nothing from the bucket)."""
        keys = [bucket_key(kind, who.key), token_key(who.jti or "-"), clerk_key(who.clerk_id or "-")]
        args = ["" if now_ms is None else now_ms, rate.per_minute, rate.burst, cost, who.issued_at,
                "1" if who.jti else "0", "1" if who.at_window else "0"]
        code, wait = await self._call("gw_admit", keys, args)  # type: ignore[misc]
        return Admission(Verdict(int(code)), int(wait))

    async def revoke_token(self, jti: str) -> None:
        await self._call("gw_revoke_token", [token_key(jti)], [self._revocation_ttl_ms])

    async def revoke_clerk(self, clerk_id: str, revoked_at: int) -> None:
        """Every token of the clerk issued at or before `revoked_at` (epoch s) is refused from now on."""
        await self._call("gw_revoke_clerk", [clerk_key(clerk_id)], [revoked_at, self._revocation_ttl_ms])
