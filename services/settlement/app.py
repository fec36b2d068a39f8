"""Builds the settlement service; nothing connects at import time."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from faststream import FastStream

from shared.kafka import ensure_topics, make_broker
from shared.logs import configure_logging
from shared.observability import Observability
from shared.regions import all_regions
from shared.topics import (BINDING_EVENTS, BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, HIS_CHARGES, SETTLEMENT_RESULTS,
                           all_bureau_postings, dead_letter_topic)
from shared.topics import HIS_RECONCILIATION
from services.settlement.config import SettlementSettings
from services.settlement.handlers.subscribers import SETTLEMENT_QUERIES, register
from services.settlement.handlers.ledger import register_ledger
from services.settlement.metrics import ReconciliationMetrics
from services.settlement.storage.ledger import LedgerStore
from services.settlement.metrics import SettlementMetrics
from services.settlement.storage.accounts import DURABLE, SettlementStore
from services.settlement.signatures import Signatures
from services.settlement.usecases import SettlementService
from services.settlement.usecases.his_reconciliation import Ledger

CONSUMED = [HIS_CHARGES, BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, SETTLEMENT_QUERIES, BINDING_EVENTS]
CONSUMED += [HIS_RECONCILIATION]  # 对账 with the HIS (usecases/his_reconciliation.py); settlement.results is its own output: no DLQ
# contract version 3: one postings topic per region of the province, each bureau reading its own
TOPICS = [SETTLEMENT_RESULTS, *all_bureau_postings(), *CONSUMED, *(dead_letter_topic(t) for t in CONSUMED)]


def create_app(settings: SettlementSettings | None = None) -> FastStream:
    settings = settings or SettlementSettings()
    configure_logging(settings.log_level, service="settlement", fmt=settings.log_format, file=settings.log_file)
    settings.apply_clock()  # CLOCK_OFFSET_SECONDS: zero but in tests and drills
    obs = Observability("settlement")
    broker = make_broker(settings, client_id="settlement", middlewares=[obs.kafka_middleware])
    redis = settings.redis()
    store = SettlementStore(redis, [r.code for r in all_regions()],
                            rejection_ttl=settings.settlement_rejection_ttl_days * 86_400,
                            record_ttl=settings.settlement_record_ttl_days * 86_400,
                            report_ttl=settings.settlement_rejection_ttl_days * 86_400,
                            quote_hold_ms=settings.quote_hold_ms, durability=settings.durability(DURABLE))
    # contract version 3: the operator's trust anchor and the service's own key, read once at start
    # (a service without them refuses to start: it would believe no partner, sign nothing)
    signatures = Signatures(settings.partner_keys(), settings.signing_key(), store.institution_keys,
                            registry=obs.registry)
    service = SettlementService(store, broker, max_age=timedelta(days=settings.settlement_max_charge_age_days),
                                metrics=SettlementMetrics(obs.registry), signatures=signatures)
    gate = register(broker, service, settings)
    # 对账 with the HIS: the ledger lives as long as a settled charge's record, its reports as refusals.
    ledger_store = LedgerStore(redis, ledger_ttl=settings.settlement_record_ttl_days * 86_400,
                               report_ttl=settings.settlement_rejection_ttl_days * 86_400)
    register_ledger(broker, Ledger(ledger_store, broker, keep_days=settings.settlement_record_ttl_days,
                                   metrics=ReconciliationMetrics(obs.registry), signatures=signatures), settings)
    app = FastStream(broker, logger=logging.getLogger("settlement"))
    obs.watch(broker, redis=redis, gate=gate, durability=store.durability)
    obs.serve_during(app, settings.http_host, settings.http_port)

    @app.on_startup
    async def prepare() -> None:
        await store.load_functions()
        await store.durability_probe()
        await ensure_topics(settings, TOPICS)
        gate.close()

    sweeper: list[asyncio.Task] = []

    @app.after_startup
    async def announce() -> None:
        # 预结算: expired quotes released and every release announced (outbox), in this process
        sweeper.append(asyncio.create_task(service.quotes.run_sweeper(settings.settlement_quote_sweep_seconds)))
        await gate.caught_up()
        logging.getLogger("settlement").info("service ready: settlement")

    @app.after_shutdown
    async def close() -> None:
        for task in sweeper:
            task.cancel()
        await asyncio.gather(*sweeper, return_exceptions=True)
        await gate.stop()
        await redis.aclose()

    return app
