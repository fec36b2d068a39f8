"""FastStream subscribers of the settlement service: records in, one use-case call.

Charges are consumed in batches (one pipelined Redis round trip and one wait for the broker's
acks per batch). ack_policy NACK_ON_ERROR: offsets are committed only after the handler
returned, i.e. after every outcome of the batch was published; on an infrastructure error the
batch is read again, and the idempotency records in Redis make that harmless.
"""

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.kafka import answer_or_dead_letter, raw_bytes, received, reply
from shared.topics import BUREAU_ACCOUNTS, HIS_CHARGES
from services.settlement.config import SettlementSettings
from services.settlement.usecases import SettlementService

SETTLEMENT_QUERIES = "settlement.queries"


def register(broker: KafkaBroker, service: SettlementService, settings: SettlementSettings) -> None:
    group = dict(group_id=settings.settlement_group_id, auto_offset_reset="earliest", decoder=raw_bytes,
                 ack_policy=AckPolicy.NACK_ON_ERROR, no_reply=True,
                 session_timeout_ms=settings.kafka_session_timeout_ms,
                 heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms)
    batched = dict(batch=True, max_records=settings.settlement_batch_size,
                   batch_timeout_ms=settings.settlement_batch_timeout_ms)

    @broker.subscriber(HIS_CHARGES, **batched, **group)
    async def on_charges(msg: KafkaMessage) -> None:
        await service.handle_charges([received(r) for r in msg.raw_message])

    @broker.subscriber(BUREAU_ACCOUNTS, **batched, **group)
    async def on_bureau_accounts(msg: KafkaMessage) -> None:
        await service.follow_bureaus([received(r) for r in msg.raw_message])

    @broker.subscriber(SETTLEMENT_QUERIES, **group)
    async def on_query(msg: KafkaMessage) -> None:
        async def answer(m):
            if value := await service.consumption(m):
                await reply(broker, m, value, m.key)
        await answer_or_dead_letter(broker, received(msg.raw_message), answer)
