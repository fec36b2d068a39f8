"""FastStream subscribers of 对账 with the HIS (usecases/his_reconciliation.py): the ledger projection of
settlement.results, and his.reconciliation.

- settlement.results in batches, in the group `<SETTLEMENT_GROUP_ID>.ledger`, offsets committed
  once the batch is in Redis (NACK_ON_ERROR, `consumer_options`): a redelivered batch changes
  nothing (ledger.lua).
- his.reconciliation in batches (one wait for the ledger a batch), offsets committed after every
  answer of the batch is published.
"""

from __future__ import annotations

import asyncio

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.catchup import ProjectionGate
from shared.kafka import consumer_options, received
from shared.topics import HIS_RECONCILIATION, SETTLEMENT_RESULTS
from services.settlement.config import SettlementSettings
from services.settlement.usecases.his_reconciliation import LEDGER_WAIT_SECONDS, Ledger


def ledger_group(settings: SettlementSettings) -> str:
    return f"{settings.settlement_group_id}.ledger"


def ledger_caught_up(settings: SettlementSettings, timeout: float = LEDGER_WAIT_SECONDS):
    """Whether the ledger group has read settlement.results up to where the topic ends now.

    A gate of its own for every question: ProjectionGate takes its targets when it closes, and a
    report must see every outcome published before it arrived, not only those before a start."""
    async def caught_up() -> bool:
        gate = ProjectionGate.of(settings, {SETTLEMENT_RESULTS: ledger_group(settings)})
        gate.close()
        try:
            async with asyncio.timeout(timeout):
                await gate.caught_up()
            return True
        except TimeoutError:
            return False
        finally:
            await gate.stop()
    return caught_up


def register_ledger(broker: KafkaBroker, ledger: Ledger, settings: SettlementSettings) -> None:
    group = settings.settlement_group_id

    @broker.subscriber(SETTLEMENT_RESULTS, **consumer_options(
            settings, group, SETTLEMENT_RESULTS, group_id=ledger_group(settings), batch=True,
            max_records=settings.settlement_batch_size, batch_timeout_ms=settings.settlement_batch_timeout_ms))
    async def on_results(msg: KafkaMessage) -> None:
        await ledger.project([received(r) for r in msg.raw_message])

    @broker.subscriber(HIS_RECONCILIATION, **consumer_options(settings, group, HIS_RECONCILIATION, batch=True,
                                                              max_records=100, batch_timeout_ms=20))
    async def on_reconciliation(msg: KafkaMessage) -> None:
        await ledger.reconcile([received(r) for r in msg.raw_message])
