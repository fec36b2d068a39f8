"""Builds the binding service; nothing connects at import time."""

from __future__ import annotations

import asyncio
import logging

from faststream import FastStream

from shared import envelope
from shared.kafka import ensure_topics, make_broker
from shared.logs import configure_logging
from shared.observability import Observability
from shared.topics import (BINDING_COMMANDS, BINDING_EVENTS, BUREAU_ACCOUNTS, BUREAU_DISPUTES, SETTLEMENT_RESULTS,
                           dead_letter_topic)
from services.binding.config import BindingSettings
from services.binding.handlers.subscribers import references_waiter, register
from services.binding.handlers.sweeps import sweep_payers_every
from services.binding.metrics import BindingMetrics
from services.binding.storage.bindings import DURABLE, BindingStore
from services.binding.usecases import BindingService

TOPICS = [BINDING_COMMANDS, BINDING_EVENTS, BUREAU_ACCOUNTS, BUREAU_DISPUTES, SETTLEMENT_RESULTS,
          dead_letter_topic(BINDING_COMMANDS), dead_letter_topic(BUREAU_ACCOUNTS), dead_letter_topic(BUREAU_DISPUTES)]


def create_app(settings: BindingSettings | None = None) -> FastStream:
    settings = settings or BindingSettings()
    configure_logging(settings.log_level, service="binding", fmt=settings.log_format, file=settings.log_file)
    settings.apply_clock()  # CLOCK_OFFSET_SECONDS: zero but in tests and drills
    log = logging.getLogger("binding")
    obs = Observability("binding")
    broker = make_broker(settings, client_id="binding", middlewares=[obs.kafka_middleware])
    redis = settings.redis()
    store = BindingStore(redis, outcome_ttl_seconds=settings.binding_outcome_ttl_days * 86_400,
                         durability=settings.durability(DURABLE))
    service = BindingService(store, broker, today=envelope.china_today, name_key=settings.name_key(),
                             keys=settings.partner_keys().find, signing_key=settings.signing_key(),
                             payer_grace_days=settings.binding_payer_grace_days,
                             metrics=BindingMetrics(obs.registry), references_caught_up=references_waiter(settings),
                             dispute_window_days=settings.binding_dispute_window_days)
    gate = register(broker, service, settings)
    app = FastStream(broker, logger=log)
    obs.watch(broker, redis=redis, gate=gate, durability=store.durability)
    obs.serve_during(app, settings.http_host, settings.http_port)
    sweeps: list[asyncio.Task] = []

    @app.on_startup
    async def prepare() -> None:
        await redis.ping()
        await store.load_functions()
        await ensure_topics(settings, TOPICS)
        gate.close()

    @app.after_startup
    async def announce() -> None:
        sweeps.append(asyncio.create_task(sweep_payers_every(service, settings.binding_sweep_seconds)))
        await gate.caught_up()
        log.info("service ready: binding")

    @app.after_shutdown
    async def close() -> None:
        for task in sweeps:
            task.cancel()
        await gate.stop()
        await redis.aclose()

    return app
