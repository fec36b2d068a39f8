"""What the bench runs against: its own broker and Redis, the services as production starts them
(`python -m services.<name>`), and Kafka clients that publish and read back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.kafka_security import client_kwargs
from tooling.devstack import die_with_parent, free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 6


FETCH_WAITS = ("kafka_fetch_max_wait_ms", "kafka_background_fetch_max_wait_ms", "kafka_quiet_fetch_max_wait_ms",
               "kafka_quiet_after_ms")


def in_effect(field: str) -> int:
    """A service setting (ms) as the bench's services get it: the caller's environment, else the default."""
    from shared.settings import ServiceSettings

    return int(os.environ.get(field.upper(), ServiceSettings.model_fields[field].default))


def fetch_wait_env() -> tuple[dict[str, str], str]:
    """The fetch waits passed to the services (the caller's environment) and what they are in
    effect: the answering subscriptions', the background ones', and the answering ones' once
    quiet (shared/settings.py, shared/fetch_waits.py)."""
    passed = {f.upper(): os.environ[f.upper()] for f in FETCH_WAITS if f.upper() in os.environ}
    said = [f"{f.upper()} {in_effect(f)} ms ({'from the environment' if f.upper() in passed else 'default'})"
            for f in FETCH_WAITS]
    return passed, ", ".join(said)


class Service:
    """One service process; ready when it logs `service ready: <name>`."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name, self.env, self.log_path = name, env, log_path
        self.process: subprocess.Popen | None = None
        self._offset = 0
        self.port = 0

    def launch(self) -> None:
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            # A free HTTP port each: the bench runs a second settlement process beside the first.
            self.process = subprocess.Popen([sys.executable, "-m", f"services.{self.name}"], cwd=ROOT,
                                            env={**os.environ, "HTTP_PORT": str(self.port), **self.env},
                                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    async def ready(self, timeout: float = 120) -> None:
        marker = f"service ready: {self.name}".encode()
        deadline = time.monotonic() + timeout
        while marker not in self.log_path.read_bytes()[self._offset:]:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready in {timeout:.0f} s: {self.tail()}")
            await asyncio.sleep(0.1)

    def tail(self, chars: int = 600) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss(self) -> int:
        return psutil.Process(self.pid).memory_info().rss

    async def signature_figures(self) -> dict[tuple[str, str], float] | None:
        """The service's own count of its verifying and signing (seconds and messages, from its
        /metrics); None when it serves none."""
        from bench.signatures import counted

        try:
            async with httpx.AsyncClient(timeout=5) as client:
                r = await client.get(f"http://127.0.0.1:{self.port}/metrics")
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        return counted(r.text) or None

    def stop(self) -> None:
        stop_process(self.process)


def process_names(services: dict[str, Service], extra: list[Service] = ()) -> dict[int, str]:
    """Names for a CpuMeter: the services by name (`extra` settlement processes as settlement-2,
    -3, ...), the infrastructure by what it runs; any other child is named by CpuMeter itself."""
    names = {s.pid: n for n, s in services.items() if s.process and s.process.poll() is None}
    names |= {s.pid: f"settlement-{i}" for i, s in enumerate(extra, start=2)}
    for p in psutil.Process().children(recursive=True):
        if p.pid not in names and (name := infrastructure_name(p.name())):
            names[p.pid] = name
    return names


def infrastructure_name(process_name: str) -> str | None:
    """tansu, stunnel or valkey (a Redis or Valkey server, or a child it forked to rewrite its
    AOF) by a process's name; None for anything else."""
    for part in ("tansu", "stunnel", "valkey", "redis"):
        if part in process_name:
            return "valkey" if part == "redis" else part
    return None


class CpuMeter:
    """CPU seconds of this process and every process it started (broker, Redis, services) over a
    stretch of time, as % of one core each, and the whole machine's: where a 2-core machine's time
    went, including to work outside the bench (other engineers' tests on a shared machine)."""

    def __init__(self, names: dict[int, str]) -> None:
        self._names = names
        self._start: dict[int, float] = {}
        self._t0 = 0.0
        self.seconds: dict[str, float] = {}  # CPU seconds by name over the last start..stop

    @staticmethod
    def _procs() -> list[psutil.Process]:
        me = psutil.Process()
        return [me, *me.children(recursive=True)]

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system

    @staticmethod
    def _machine() -> float:
        t = psutil.cpu_times()
        return t.user + t.system + getattr(t, "nice", 0) + getattr(t, "irq", 0) + getattr(t, "softirq", 0)

    def start(self) -> None:
        self._machine0 = self._machine()
        self._t0 = time.monotonic()
        self._start = {}
        for p in self._procs():
            try:
                self._start[p.pid] = self._cpu(p)
            except psutil.Error:
                pass

    @staticmethod
    def _describe(p: psutil.Process) -> str:
        """An unnamed child by what it runs (`-m services.x` → x, a server forked since the meter was
        made by `infrastructure_name`), else its process name."""
        args = p.cmdline()
        module = next((a for a in args if a.startswith("services.")), "")
        return f"{module.removeprefix('services.')}[{p.pid}]" if module else infrastructure_name(p.name()) or p.name()

    def stop(self) -> str:
        elapsed = max(1e-6, time.monotonic() - self._t0)
        self.seconds = {}
        for p in self._procs():
            try:
                used = self._cpu(p) - self._start.get(p.pid, 0.0)
                name = self._names.get(p.pid) or ("bench" if p.pid == os.getpid() else self._describe(p))
            except psutil.Error:
                continue
            self.seconds[name] = self.seconds.get(name, 0.0) + used
        shares = {name: used / elapsed * 100 for name, used in self.seconds.items()}
        total = sum(shares.values())
        machine = (self._machine() - self._machine0) / elapsed * 100
        cores = (os.cpu_count() or 1) * 100
        parts = ", ".join(f"{n} {v:.0f}%" for n, v in sorted(shares.items(), key=lambda kv: -kv[1]) if v >= 1)
        return (f"{parts}; bench's processes {total:.0f}% of {cores}%, the machine {machine:.0f}% "
                f"(others' work {max(0.0, machine - total):.0f}%)")


async def create_topics(bootstrap: str, topics: list[str], partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap))
    await admin.start()
    try:
        missing = [t for t in topics if t not in set(await admin.list_topics())]
        if missing:
            try:
                await admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def producer(bootstrap: str, linger_ms: int = 5) -> AIOKafkaProducer:
    return AIOKafkaProducer(**client_kwargs(bootstrap), linger_ms=linger_ms, max_batch_size=1_048_576,
                            enable_idempotence=False, acks="all")


class Reader:
    """Reads topics from their current end, without a consumer group (no join), calling
    `on_record` for each record with the time the bench read it."""

    def __init__(self, bootstrap: str, topics: list[str], on_record: Callable[[Any, float], None]) -> None:
        # 20 ms: soon enough for the figures read here (latency itself is taken from Kafka
        # timestamps), without the bench's own polling loading the broker the services share
        self._consumer = AIOKafkaConsumer(**client_kwargs(bootstrap), enable_auto_commit=False,
                                          fetch_max_wait_ms=20, max_partition_fetch_bytes=4_194_304)
        self._topics, self._on_record = topics, on_record
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()
        await self._consumer._client.force_metadata_update()
        parts = [TopicPartition(t, p) for t in self._topics for p in sorted(self._consumer.partitions_for_topic(t) or ())]
        self._consumer.assign(parts)
        await self._consumer.seek_to_end(*parts)
        for tp in parts:
            await self._consumer.position(tp)  # fix the start before anything is published
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=20_000)
            seen = time.time()
            for records in batch.values():
                for r in records:
                    self._on_record(r, seen)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
        await self._consumer.stop()


async def until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.02,
                progress: Callable[[], Any] | None = None, stall: float = 20.0) -> None:
    """Until `check()`; fails after `timeout`, or sooner when `progress()` has not changed for
    `stall` seconds (a stuck service should not hold the whole run)."""
    deadline = time.monotonic() + timeout
    last, moved = (progress() if progress else None), time.monotonic()
    while not check():
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"not within {timeout:.0f} s: {what}")
        if progress:
            seen = progress()
            if seen != last:
                last, moved = seen, now
            elif now - moved > stall:
                raise TimeoutError(f"no progress for {stall:.0f} s: {what}")
        await asyncio.sleep(interval)  # polling a condition with a deadline


async def groups_caught_up(bootstrap: str, groups: list[str], topic: str, timeout: float,
                           stall: float = 20.0) -> None:
    """Until each consumer group has committed the end of `topic`: a projection commits only
    after its Redis write, so then every service has the records. Read through a consumer that
    does not join (Tansu does not answer the admin OffsetFetch)."""
    deadline = time.monotonic() + timeout
    consumers = {g: AIOKafkaConsumer(**client_kwargs(bootstrap), group_id=g, enable_auto_commit=False)
                 for g in groups}
    for c in consumers.values():
        await c.start()
    try:
        any_c = next(iter(consumers.values()))
        parts = [TopicPartition(topic, p) for p in sorted(any_c.partitions_for_topic(topic) or ())]
        ends = await any_c.end_offsets(parts)
        for g, c in consumers.items():
            last, moved = -1, time.monotonic()
            while True:
                committed = [(await c.committed(tp)) or 0 for tp in parts]
                if all(done >= ends[tp] for done, tp in zip(committed, parts)):
                    break
                now = time.monotonic()
                if sum(committed) != last:
                    last, moved = sum(committed), now
                if now > deadline or now - moved > stall:
                    raise TimeoutError(f"group {g} has not committed the end of {topic} "
                                       f"({sum(ends.values()) - last:,} behind, "
                                       f"{'no progress for %.0f s' % stall if now <= deadline else 'timed out'})")
                await asyncio.sleep(0.2)
    finally:
        for c in consumers.values():
            await c.stop()
