"""What an operator can ask a running service: is it alive, is it ready, what has it done.

One `Observability` per service process holds its Prometheus registry, its readiness checks and
its HTTP surface:

    obs = Observability("settlement")
    broker = make_broker(settings, client_id="settlement", middlewares=[obs.kafka_middleware])
    metrics = SettlementMetrics(obs.registry)          # the service's own fma_* counters
    ...
    app = FastStream(broker, ...)
    obs.watch(broker, redis=redis, gate=gate)           # what /readyz checks
    obs.serve_during(app, settings.http_host, settings.http_port)   # before the app's other hooks

- `GET /healthz`: 200 `{"status": "alive", "service": ...}` while the process answers at all.
- `GET /readyz`: 200 `{"status": "ready", ...}` or 503 `{"status": "not ready", ...}`, with
  `checks` naming each check: `broker` (broker.ping answers within the timeout), `redis` (PING
  answers within the timeout; absent when the service has no Redis), `consumers` (every
  subscriber has partitions assigned), `projections` (the service's ProjectionGate is caught up;
  absent when it has none). Each check is `{"ok": bool, "detail": str}`.
- `GET /metrics`: Prometheus text of the registry: FastStream's `KafkaPrometheusMiddleware`
  (`faststream_*`), the service's business counters (`fma_*`) and `fma_consumer_lag{topic,group}`,
  records behind the end of each topic summed over the partitions assigned to this process,
  computed at scrape time from the subscribers' own aiokafka consumers (end offsets minus
  positions). `group` tells apart two subscriptions of one topic (notify reads binding.events
  twice); `sum by (topic)` gives the plan's `fma_consumer_lag{topic}`.

Two ways to serve them:
- `routes()`: Starlette `Route`s that an existing ASGI app mounts (the gateway's FastAPI app:
  `app.router.routes.extend(obs.routes())`; they stay out of its OpenAPI schema).
- `serve(host, port) -> port` / `close()`: uvicorn inside the service's own event loop, on a
  socket bound before it returns (a port in use fails the start with a plain OSError; port 0
  takes a free one and returns it); `serve_during(app, ...)`
  registers both on a FastStream app: serving from its first on_startup hook, so /healthz answers
  and /readyz says 503 while the broker connects and groups join, closing on its first on_shutdown.

`Once` is the small tool the services' counters share so that a redelivered outcome, republished
with the same event id, is counted once in a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter as PromCounter, Gauge,
                               disable_created_metrics, generate_latest)
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.catchup import ProjectionGate
from shared.durability import Durability
from shared.kafka import PlatformBroker

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 1.0
LAG_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str = "ok"


class Observability:
    """One per service process: see the module docstring."""

    def __init__(self, service: str, *, check_timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
        self.service = service
        # Every counter would get a `_created` twin holding its creation time: noise for the
        # live view and for anyone reading the text, and Prometheus does without it.
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self.kafka_middleware = KafkaPrometheusMiddleware(registry=self.registry, app_name=service)
        self._timeout = check_timeout
        self._broker: KafkaBroker | None = None
        self._redis: Redis | None = None
        self._gate: ProjectionGate | None = None
        self._durability: Durability | None = None
        self._lag = Gauge("fma_consumer_lag", "Records behind the end of the topic, summed over the partitions "
                          "assigned to this process (end offset minus position), at scrape time.",
                          ["topic", "group"], registry=self.registry)
        self._published = PromCounter(
            "fma_published_messages", "Messages published in batches by shared.kafka.publish_all (outcomes, "
            "postings, reports), by topic, counted once a batch is acknowledged. FastStream's "
            "faststream_published_messages_total counts only what goes through its own publish path (replies, "
            "dead letters).", ["topic"], registry=self.registry)
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task | None = None

    def published(self, by_topic: Mapping[str, int]) -> None:
        for topic, n in by_topic.items():
            self._published.labels(topic=topic).inc(n)

    def watch(self, broker: KafkaBroker, redis: Redis | None = None, gate: ProjectionGate | None = None,
              durability: Durability | None = None) -> None:
        """What readiness means for this service: its broker, its Redis (if any), its gate (if any),
        whether its last batch's writes reached the replicas it requires (if any); and what the
        broker publishes in batches is counted here."""
        self._broker, self._redis, self._gate, self._durability = broker, redis, gate, durability
        if isinstance(broker, PlatformBroker):
            broker.on_published = self.published

    # -- readiness ---------------------------------------------------------------------------
    async def readiness(self) -> dict[str, Check]:
        """Every check, run at once, each bounded by the check timeout."""
        checks: dict[str, Callable[[], Awaitable[Check]]] = {"broker": self._broker_check,
                                                              "consumers": self._consumers_check}
        if self._redis is not None:
            checks["redis"] = self._redis_check
        if self._gate is not None:
            checks["projections"] = self._projections_check
        if self._durability is not None and self._durability.waits:
            checks["replicas"] = self._replicas_check
        results = await asyncio.gather(*(self._bounded(check) for check in checks.values()))
        return dict(zip(checks, results))

    async def _bounded(self, check: Callable[[], Awaitable[Check]]) -> Check:
        try:
            return await asyncio.wait_for(check(), self._timeout)
        except asyncio.TimeoutError:
            return Check(False, f"no answer within {self._timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - a failed check is the answer, not an error of /readyz
            return Check(False, f"{exc.__class__.__name__}: {str(exc)[:200]}")

    async def _broker_check(self) -> Check:
        if self._broker is None:
            return Check(False, "no broker watched")
        if await self._broker.ping(timeout=self._timeout):
            return Check(True)
        return Check(False, "broker did not answer")

    async def _redis_check(self) -> Check:
        await self._redis.ping()
        return Check(True)

    async def _consumers_check(self) -> Check:
        if self._broker is None:
            return Check(False, "no broker watched")
        waiting = [f"{_subscription(sub)} ({'not started' if sub.consumer is None else 'no partitions'})"
                   for sub in self._broker.subscribers if sub.consumer is None or not sub.consumer.assignment()]
        return Check(not waiting, "waiting: " + ", ".join(waiting) if waiting else "ok")

    async def _replicas_check(self) -> Check:
        return Check(*self._durability.last)

    async def _projections_check(self) -> Check:
        return Check(True) if self._gate.is_open else Check(False, "catching up")

    # -- consumer lag ------------------------------------------------------------------------
    async def refresh_lag(self) -> None:
        """Set fma_consumer_lag from each subscriber's consumer; a subscription whose offsets
        cannot be read in time has no sample in this scrape (rather than a stale one)."""
        if self._broker is None:
            return
        subs = [sub for sub in self._broker.subscribers if sub.consumer is not None]
        found = await asyncio.gather(*(self._lag_of(sub) for sub in subs))
        self._lag.clear()
        for sub, lags in zip(subs, found):
            for topic, lag in (lags or {}).items():
                self._lag.labels(topic=topic, group=sub.group_id or "").set(lag)

    async def _lag_of(self, sub: Any) -> dict[str, int] | None:
        consumer = sub.consumer
        try:
            async with asyncio.timeout(LAG_TIMEOUT_SECONDS):
                assigned = list(consumer.assignment())
                if not assigned:
                    return {}
                ends = await consumer.end_offsets(assigned)
                lag: dict[str, int] = {}
                for tp in assigned:
                    lag[tp.topic] = lag.get(tp.topic, 0) + max(ends[tp] - await consumer.position(tp), 0)
                return lag
        except Exception as exc:  # noqa: BLE001 - a rebalance or an outage: no sample this time
            log.debug("lag of %s not read: %s", _subscription(sub), exc.__class__.__name__)
            return None

    # -- HTTP --------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [Route("/healthz", self._healthz, methods=["GET"]),
                Route("/readyz", self._readyz, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"])]

    def asgi(self, extra: Iterable[Route] = ()) -> Starlette:
        return Starlette(routes=[*self.routes(), *extra])

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "alive", "service": self.service})

    async def _readyz(self, request: Request) -> Response:
        checks = await self.readiness()
        ready = all(c.ok for c in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "service": self.service,
                             "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()}},
                            status_code=200 if ready else 503)

    async def _metrics(self, request: Request) -> Response:
        await self.refresh_lag()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def serve(self, host: str, port: int, extra: Iterable[Route] = ()) -> int:
        """Serve the three routes (and `extra`: the gateway's operator routes) in this event loop;
        returns once the socket listens, with its port (the one the system chose when `port` is 0)."""
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"{self.service}: cannot serve HTTP on {host}:{port}: {exc.strerror}") from exc
        sock.listen(128)
        sock.setblocking(False)
        config = uvicorn.Config(self.asgi(extra), log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = _Embedded(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        bound = sock.getsockname()[1]
        log.info("%s: /healthz /readyz /metrics on http://%s:%d", self.service, host, bound)
        return bound

    async def close(self) -> None:
        if self._server is None or self._serving is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._serving), 5.0)
        except asyncio.TimeoutError:
            self._serving.cancel()
        self._server = self._serving = None

    def serve_during(self, app: FastStream, host: str, port: int) -> None:
        """Serve while `app` runs. Call before registering the app's other hooks: hooks run in
        the order they were registered, and /readyz should answer (503) while they run."""
        async def start_serving() -> None:
            await self.serve(host, port)

        async def stop_serving() -> None:
            await self.close()

        app.on_startup(start_serving)
        app.on_shutdown(stop_serving)


class _Embedded(uvicorn.Server):
    """uvicorn inside a FastStream process: FastStream owns SIGINT and SIGTERM there (uvicorn's
    own handlers would take them and leave the service running)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _subscription(sub: Any) -> str:
    topics = ",".join(getattr(sub, "topic_names_for_subscribe", None) or []) or "assigned partitions"
    return f"{topics} [{sub.group_id}]" if getattr(sub, "group_id", None) else topics


class Once:
    """Ids counted lately in this process: `fresh(ids)` keeps those not seen before, in order.

    A redelivery (after a rebalance between publishing and committing) or a resend republishes
    an outcome with the same event id; counting it again would count one decision twice. The
    memory is bounded (the `size` latest ids): redeliveries come soon after the original.
    """

    def __init__(self, size: int = 16_384) -> None:
        self._size = size
        self._seen: dict[str, None] = {}

    def fresh(self, ids: Iterable[str]) -> list[str]:
        out = []
        for key in ids:
            if key in self._seen:
                continue
            self._seen[key] = None
            out.append(key)
        while len(self._seen) > self._size:
            del self._seen[next(iter(self._seen))]
        return out
