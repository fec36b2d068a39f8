"""Section 11 of `make bench`: what the replicated Redis costs and how long a failover takes
(issue 23). A settlement process of its own runs on a primary, a replica and a sentinel
(tooling/replicaset.py), in the settlement group where the bench's stopped one left it, with the
state the earlier sections made copied over (accounts, institutions with their keys, the payer
index): the same charges' mix at full speed and at a fixed rate, without waiting for the replica
(REDIS_MIN_REPLICAS=0) and with it (1); then the primary's host killed in the middle of a stream
(SIGKILL, its disk deleted), the replica promoted, the lost host replaced by an empty replica, and
the time from the death to the first charge settled on the new primary."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from redis.asyncio import Redis

from bench import platform as plat
from bench.report import percentile
from bench.stack import Service
from shared.state import make_redis
from tooling.replicaset import LocalReplicaSet

COPIED = ("stl:acct:*", "stl:inst", "stl:ikeys", "bnd:pay:*")


async def copy_state(source: Redis, replicas: LocalReplicaSet) -> int:
    """The state charges need, from the bench's Redis to the replicated primary (DUMP/RESTORE)."""
    target = make_redis(replicas.primary().url)
    copied = 0
    try:
        for pattern in COPIED:
            async for key in source.scan_iter(match=pattern, count=1000):
                dumped = await source.dump(key)
                if dumped is not None:
                    await target.restore(key, 0, dumped, replace=True)
                    copied += 1
    finally:
        await target.aclose()
    return copied


def settlement(env: dict[str, str], replicas: LocalReplicaSet, min_replicas: int, log: Path) -> Service:
    return Service("settlement", {**env, **replicas.env(), "REDIS_URL": replicas.primary().url,
                                  "REDIS_MIN_REPLICAS": str(min_replicas)}, log)


async def failover_times(bootstrap: str, charges: list, rate: float, replicas: LocalReplicaSet,
                         kill_after: float) -> tuple[plat.Run, float, float, float]:
    """Charges at `rate` a second; `kill_after` seconds in, the primary's host dies; once a replica
    is promoted an empty one takes the lost host's place. Returns the run, when the primary died
    (epoch s), how long the promotion took (s), and how long after the death the first charge
    sent after it was settled (ms, by its result's Kafka timestamp)."""
    running = asyncio.create_task(plat.run_charges(bootstrap, charges, rate, 180 + len(charges) / rate))
    await asyncio.sleep(kill_after)  # the stream under way: the moment of the fault, by design
    died = time.time()
    old = replicas.kill_primary(lose_disk=True)
    promoted = await asyncio.to_thread(replicas.wait_failover, old)
    promotion = time.time() - died
    await asyncio.to_thread(replicas.rejoin, old, promoted)
    run = await running
    after = [ts for k, (ts, _) in run.results.items() if run.sent[k] > died]
    return run, died, promotion, (min(after) - died * 1000) if after else float("nan")


def p99(run: plat.Run) -> float:
    return percentile(run.latencies_ms(True), 99)
