"""Redis client factory and the key-bucketing that keeps per-person state to a few dozen bytes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from urllib.parse import urlparse

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

# Small hashes are stored as listpacks: one hash holding a bucket of persons costs far less than a
# key per person (platform-notes.md: 27-53 B against ~111 B). Servers run with
# hash-max-listpack-entries 512; 65,536 buckets keep buckets under that up to ~30 million persons.
PERSON_BUCKETS = 65_536


def make_redis(url: str) -> Redis:
    """A client with bytes replies; nothing connects until the first command."""
    return Redis.from_url(url, decode_responses=False, health_check_interval=30)


def connect_redis(url: str, sentinels: str = "", service: str = "fma") -> Redis:
    """The service's Redis: REDIS_URL's server, or (REDIS_SENTINELS set) the primary the sentinels
    name for `service`, found again after a failover by the client itself (redis-py's Sentinel
    pool: a connection error or an answer from a demoted primary makes it ask the sentinels)."""
    if not sentinels:
        return make_redis(url)
    hosts = []
    for item in sentinels.split(","):
        host, _, port = item.strip().rpartition(":")
        hosts.append((host, int(port)))
    db = int(urlparse(url).path.lstrip("/") or 0)
    sentinel = Sentinel(hosts, sentinel_kwargs={"socket_timeout": 2.0})
    return sentinel.master_for(service, redis_class=Redis, db=db, decode_responses=False, health_check_interval=30)


def person_bucket(person_id: str) -> int:
    """Birth date and sequence digits (positions 7-17) spread evenly; plain integer arithmetic,
    so a Redis Function computes the same bucket (they fit a Lua double exactly)."""
    return int(person_id[6:17]) % PERSON_BUCKETS


async def calling_functions(run: Callable[[], Awaitable[list]], load: Callable[[], Awaitable[None]]) -> list:
    """`run` a pipeline of FCALLs; when the Function library is gone (a Redis replaced or flushed
    under us), `load` it and run once more. Safe for every caller because each Function is
    idempotent: what the first run applied answers the same, or fails its compare, the second time."""
    replies = await run()
    if any(isinstance(r, Exception) and "function not found" in str(r).lower() for r in replies):
        await load()
        replies = await run()
    return replies
