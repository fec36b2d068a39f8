"""Builds the notify service; nothing connects at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from faststream import FastStream

from shared.catchup import ProjectionGate
from shared.kafka import ensure_topics, make_broker
from shared.logs import configure_logging
from shared.observability import Observability
from shared.topics import (BINDING_COMMANDS, BINDING_EVENTS, BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, NOTIFY_DELIVERIES,
                           SETTLEMENT_RESULTS, SMS_UPLINK, dead_letter_topic)
from services.notify.config import NotifySettings
from services.notify.domain.quiet import parse_quiet_hours
from services.notify.handlers.subscribers import register
from services.notify.metrics import NotifyMetrics
from services.notify.providers.base import SmsProvider
from services.notify.providers.http_gateway import HttpSmsGateway
from services.notify.providers.sink import SinkProvider
from services.notify.storage.deliveries import DURABLE, DeliveryStore
from services.notify.usecases import NotifyService

# sms.uplink in, DisputePayment out on binding.commands (issue 15).
TOPICS = [SETTLEMENT_RESULTS, BINDING_EVENTS, BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, NOTIFY_DELIVERIES, SMS_UPLINK,
          BINDING_COMMANDS, *(dead_letter_topic(t) for t in (SETTLEMENT_RESULTS, BINDING_EVENTS, BUREAU_ACCOUNTS,
                                                              BUREAU_INSTITUTIONS, SMS_UPLINK))]
log = logging.getLogger("notify")


def make_provider(settings: NotifySettings, redis) -> SmsProvider:
    if settings.sms_provider == "http":
        if not settings.sms_gateway_url:
            raise ValueError("SMS_PROVIDER=http needs SMS_GATEWAY_URL")
        return HttpSmsGateway(settings.sms_gateway_url, settings.sms_access_key_id, settings.sms_access_key_secret,
                              settings.sms_sign_name, settings.sms_timeout_seconds)
    if settings.sms_provider == "sink":
        return SinkProvider(redis)
    raise ValueError(f"unknown SMS_PROVIDER {settings.sms_provider!r} (sink or http)")


async def every(seconds: float, job: Callable[[], Awaitable[int]], name: str, gate: ProjectionGate) -> None:
    """Run `job` now and then every `seconds`, each round once the projections are caught up; a
    failed round is logged and the next one runs."""
    while True:
        try:
            await gate.caught_up()
            await job()
        except Exception:
            log.exception("%s failed; next round in %.0f s", name, seconds)
        await asyncio.sleep(seconds)  # the period of a timer, not a stand-in for synchronisation


def create_app(settings: NotifySettings | None = None) -> FastStream:
    settings = settings or NotifySettings()
    configure_logging(settings.log_level, service="notify", fmt=settings.log_format, file=settings.log_file)
    settings.apply_clock()  # CLOCK_OFFSET_SECONDS: zero but in tests and drills
    obs = Observability("notify")
    broker = make_broker(settings, client_id="notify", middlewares=[obs.kafka_middleware])
    redis = settings.redis()
    store = DeliveryStore(redis, record_ttl=settings.notify_record_ttl_days * 86_400,
                          durability=settings.durability(DURABLE))
    provider = make_provider(settings, redis)
    service = NotifyService(store, broker, provider, parse_quiet_hours(settings.quiet_hours),
                            settings.sms_retry_attempts, settings.sms_retry_base_ms,
                            template_codes=settings.sms_template_codes,
                            lease_seconds=settings.notify_claim_lease_seconds,
                            unknown_wait_seconds=settings.notify_unknown_person_wait_seconds,
                            unknown_retry_seconds=settings.notify_unknown_person_retry_seconds,
                            send_concurrency=settings.notify_send_concurrency,
                            metrics=NotifyMetrics(obs.registry),
                            keys=settings.partner_keys().find, signing_key=settings.signing_key())
    gate = register(broker, service, settings)
    app = FastStream(broker, logger=log)
    obs.watch(broker, redis=redis, gate=gate, durability=store.durability)
    obs.serve_during(app, settings.http_host, settings.http_port)
    timers: list[asyncio.Task] = []

    @app.on_startup
    async def prepare() -> None:
        await store.load_functions()
        indexed = await store.index_phones_once()  # before the consumers: nothing else writes it yet
        if indexed:
            log.info("phone index built from %d contacts projected before it", indexed)
        await ensure_topics(settings, TOPICS)
        gate.close()

    @app.after_startup
    async def start_timers() -> None:
        await gate.caught_up()
        timers.append(asyncio.create_task(every(settings.notify_expiry_check_seconds, service.check_endings,
                                                "ending-soon check", gate)))
        timers.append(asyncio.create_task(every(settings.notify_release_check_seconds, service.release_due,
                                                "release of held messages and expired claims", gate)))
        log.info("service ready: notify (SMS provider: %s)", provider.name)

    @app.on_shutdown
    async def stop_timers() -> None:
        for task in timers:
            task.cancel()

    @app.after_shutdown
    async def close() -> None:
        await gate.stop()
        await provider.close()
        await redis.aclose()

    return app
