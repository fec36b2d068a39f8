"""FastStream subscriber of 对账 with the HIS (usecases/his_reconciliation.py): his.reconciliation in
batches, offsets committed after every answer of the batch is published. The ledger it answers
from is written by the settling Functions themselves (storage/ledger.lua), so it has no consumer."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.kafka import consumer_options, received
from shared.topics import HIS_RECONCILIATION
from services.settlement.config import SettlementSettings
from services.settlement.usecases.his_reconciliation import Ledger


def register_ledger(broker: KafkaBroker, ledger: Ledger, settings: SettlementSettings) -> None:
    group = settings.settlement_group_id

    @broker.subscriber(HIS_RECONCILIATION, **consumer_options(settings, group, HIS_RECONCILIATION, batch=True,
                                                              max_records=100, batch_timeout_ms=20))
    async def on_reconciliation(msg: KafkaMessage) -> None:
        await ledger.reconcile([received(r) for r in msg.raw_message])
