"""FastStream subscribers of the settlement service: records in, one use-case call.

Charges are consumed in batches: one pipelined Redis round trip and one wait for the broker's
acks per batch; offsets are committed only after every outcome of the batch was published
(`shared.kafka.consumer_options`).
"""

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.kafka import answer_or_dead_letter, consumer_options, received, reply
from shared.topics import BUREAU_ACCOUNTS, HIS_CHARGES
from services.settlement.config import SettlementSettings
from services.settlement.usecases import SettlementService

SETTLEMENT_QUERIES = "settlement.queries"


def register(broker: KafkaBroker, service: SettlementService, settings: SettlementSettings) -> None:
    group = settings.settlement_group_id
    batched = dict(batch=True, max_records=settings.settlement_batch_size,
                   batch_timeout_ms=settings.settlement_batch_timeout_ms)

    @broker.subscriber(HIS_CHARGES, **consumer_options(settings, group, HIS_CHARGES, **batched))
    async def on_charges(msg: KafkaMessage) -> None:
        await service.handle_charges([received(r) for r in msg.raw_message])

    @broker.subscriber(BUREAU_ACCOUNTS, **consumer_options(settings, group, BUREAU_ACCOUNTS, **batched))
    async def on_bureau_accounts(msg: KafkaMessage) -> None:
        await service.follow_bureaus([received(r) for r in msg.raw_message])

    @broker.subscriber(SETTLEMENT_QUERIES, **consumer_options(settings, group, SETTLEMENT_QUERIES))
    async def on_query(msg: KafkaMessage) -> None:
        async def answer(m):
            if value := await service.consumption(m):
                await reply(broker, m, value, m.key)
        await answer_or_dead_letter(broker, received(msg.raw_message), answer)
