"""Nothing acknowledged before a replica has it (issue 23).

A service that acknowledges what it wrote to Redis (settlement's outcomes above all) asks, in the
same pipeline as the batch's Function calls and so on the same connection, that
`REDIS_MIN_REPLICAS` replicas have those writes before it publishes anything of the batch or
commits an offset: `INCR <its durability key>`, then either

- `WAIT <replicas> <REDIS_REPLICA_WAIT_MS>` (REDIS_REPLICA_DURABILITY `memory`, the default): the
  replicas have received the writes; they survive the primary's host dying, disk and all. About a
  millisecond here.
- `WAITAOF 1 <replicas> <REDIS_REPLICA_WAIT_MS>` (`disk`): the writes are also on the replicas' own
  disks (and the primary's), so they survive the primary and a replica's process dying at once.
  Measured on Valkey 8.1.8: about one second a batch, because a replica reports what it has
  fsynced only once a second; every batch then waits that long.

Why the INCR: both commands wait for the replication offset of the connection's own last write. A
batch that only replays recorded answers writes nothing, and its connection (the pool hands out
any) may have last written long ago; the INCR brings the connection's offset to the stream's end,
so the wait covers every write before it, whichever connection made them (a first attempt that
timed out included).

When fewer replicas acknowledge in time the batch is not answered: `ReplicaMissing` is an outage
(a Redis connection error), so the batch is retried with back-off, from its records, until a
replica is back; the service says so in `/readyz` and the log. `REDIS_GO_ON_WITHOUT_REPLICA`
lets an operator choose to go on instead, logged loudly on every batch. `REDIS_MIN_REPLICAS=0`
(a single server, `REDIS_URL` alone) waits for nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)


class ReplicaMissing(RedisConnectionError):
    """Fewer replicas than required have the batch's writes: an outage, retried by `Outage`."""


@dataclass
class Durability:
    """How many replicas must have a batch's writes on disk (0: none waited for), for how long to
    wait, and whether to go on without them; what the last wait found, for `/readyz`."""

    replicas: int = 0
    wait_ms: int = 1000
    go_on_without: bool = False
    key: str = ""             # the service's own counter (README, Redis keys): INCR'd before each wait
    on_disk: bool = False     # WAITAOF (the replicas' disks) instead of WAIT (their memory)
    last: tuple[bool, str] = field(default=(True, "no replica required"))
    _since: float | None = None

    @property
    def waits(self) -> bool:
        return self.replicas > 0

    def add_wait(self, pipe: Any) -> int:
        """Append the wait to a pipeline of writes; how many replies it adds at the end."""
        if not self.waits:
            return 0
        pipe.incr(self.key)
        if self.on_disk:
            pipe.execute_command("WAITAOF", 1, self.replicas, self.wait_ms)
        else:
            pipe.execute_command("WAIT", self.replicas, self.wait_ms)
        return 2

    async def execute(self, pipe: Any, raise_on_error: bool = True) -> list:
        """Run a pipeline of writes with the wait last in it: its own replies."""
        self.add_wait(pipe)
        replies = await pipe.execute(raise_on_error=False)
        own = self.check(replies)
        if raise_on_error and (errors := [r for r in own if isinstance(r, Exception)]):
            raise errors[0]
        return own

    def check(self, replies: list) -> list:
        """The pipeline's replies without the wait's; raises ReplicaMissing when the wait found
        fewer replicas than required (unless the operator chose to go on)."""
        if not self.waits:
            return replies
        *own, counted, waited = replies
        if isinstance(counted, Exception) or isinstance(waited, Exception):
            # the counter refused (a replica answering as the primary a moment before a failover
            # completes) or the wait itself: nothing is known to be on a replica, so an outage
            error = counted if isinstance(counted, Exception) else waited
            raise ReplicaMissing(f"the wait for the replicas failed: {error}")
        local, replicas = (int(waited[0]), int(waited[1])) if self.on_disk else (1, int(waited))
        if replicas >= self.replicas and local >= 1:
            if self._since is not None:
                log.warning("replicas back: %d of %d have the writes again after %.1f s", replicas, self.replicas,
                            time.monotonic() - self._since)
                self._since = None
            self.last = (True, f"{replicas} replica(s) have every write")
            return own
        where = "on their disks" if self.on_disk else "received"
        detail = (f"{replicas} of {self.replicas} replica(s) had the writes ({where}) within {self.wait_ms} ms"
                  + ("" if local else "; not on the primary's own disk either"))
        self.last = (False, detail)
        if self._since is None:
            self._since = time.monotonic()
        if self.go_on_without:
            log.error("NOT DURABLE: %s; going on without (REDIS_GO_ON_WITHOUT_REPLICA): a failover now "
                      "loses what was acknowledged", detail)
            return own
        raise ReplicaMissing(f"{detail}: nothing of the batch is acknowledged until a replica has it")
