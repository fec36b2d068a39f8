"""Reports sent in parts (a bureau's daily postings report, a HIS's daily detail): each part is
kept in one hash until all are in."""

from __future__ import annotations

import json

from redis.asyncio import Redis


async def keep_part(redis: Redis, key: str, ttl: int, part: int, body: dict) -> dict[int, dict]:
    """Keep one part of a report sent in parts (hash `key`, field part); every part kept so far.
    One transaction, so of two last parts arriving together one sees them all."""
    pipe = redis.pipeline(transaction=True)
    pipe.hset(key, str(part), json.dumps(body, separators=(",", ":")))
    pipe.expire(key, ttl)
    pipe.hgetall(key)
    return {int(k): json.loads(v) for k, v in (await pipe.execute())[-1].items()}
