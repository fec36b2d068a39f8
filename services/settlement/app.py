"""Builds the settlement service; nothing connects at import time."""

from __future__ import annotations

import logging
from datetime import timedelta

from faststream import FastStream

from shared.kafka import ensure_topics, make_broker
from shared.logs import configure_logging
from shared.observability import Observability
from shared.regions import all_regions
from shared.state import make_redis
from shared.topics import (BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, BUREAU_POSTINGS, HIS_CHARGES, SETTLEMENT_RESULTS,
                           dead_letter_topic)
from services.settlement.config import SettlementSettings
from services.settlement.handlers.subscribers import SETTLEMENT_QUERIES, register
from services.settlement.metrics import SettlementMetrics
from services.settlement.storage.accounts import SettlementStore
from services.settlement.usecases import SettlementService

CONSUMED = [HIS_CHARGES, BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, SETTLEMENT_QUERIES]
TOPICS = [SETTLEMENT_RESULTS, BUREAU_POSTINGS, *CONSUMED, *(dead_letter_topic(t) for t in CONSUMED)]


def create_app(settings: SettlementSettings | None = None) -> FastStream:
    settings = settings or SettlementSettings()
    configure_logging(settings.log_level, service="settlement", fmt=settings.log_format, file=settings.log_file)
    obs = Observability("settlement")
    broker = make_broker(settings, client_id="settlement", middlewares=[obs.kafka_middleware])
    redis = make_redis(settings.redis_url)
    store = SettlementStore(redis, [r.code for r in all_regions()],
                            rejection_ttl=settings.settlement_rejection_ttl_days * 86_400,
                            record_ttl=settings.settlement_record_ttl_days * 86_400,
                            report_ttl=settings.settlement_rejection_ttl_days * 86_400)
    service = SettlementService(store, broker, max_age=timedelta(days=settings.settlement_max_charge_age_days),
                                metrics=SettlementMetrics(obs.registry))
    gate = register(broker, service, settings)
    app = FastStream(broker, logger=logging.getLogger("settlement"))
    obs.watch(broker, redis=redis, gate=gate)
    obs.serve_during(app, settings.http_host, settings.http_port)

    @app.on_startup
    async def prepare() -> None:
        await store.load_functions()
        await ensure_topics(settings, TOPICS)
        gate.close()

    @app.after_startup
    async def announce() -> None:
        await gate.caught_up()
        logging.getLogger("settlement").info("service ready: settlement")

    @app.after_shutdown
    async def close() -> None:
        await gate.stop()
        await redis.aclose()

    return app
