"""FastStream subscribers of the settlement service: records in, one use-case call.

Charges are consumed in batches: one pipelined Redis round trip and one wait for the broker's
acks per batch; offsets are committed only after every outcome of the batch was published
(`shared.kafka.consumer_options`). Charges and queries wait for the projections they are
answered from (registrations on bureau.accounts, designated institutions on
bureau.institutions) to catch up, on start and after every rebalance.
"""

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.catchup import ProjectionGate
from shared.kafka import Outage, answer_or_dead_letter, consumer_options, received
from shared.topics import BINDING_EVENTS, BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, HIS_CHARGES
from services.settlement.config import SettlementSettings
from services.settlement.usecases import SettlementService

SETTLEMENT_QUERIES = "settlement.queries"


def register(broker: KafkaBroker, service: SettlementService, settings: SettlementSettings) -> ProjectionGate:
    """Subscribe; the gate returned holds charges and queries back until the projections are read."""
    group = settings.settlement_group_id
    gate = ProjectionGate.of(settings, {t: f"{group}.{t}" for t in (BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS)})
    batched = dict(batch=True, max_records=settings.settlement_batch_size,
                   batch_timeout_ms=settings.settlement_batch_timeout_ms)
    queries = Outage(SETTLEMENT_QUERIES)

    @broker.subscriber(HIS_CHARGES, **consumer_options(settings, group, HIS_CHARGES, answering=True,
                                                       listener=gate.listener(),
                                                       **batched))
    async def on_charges(msg: KafkaMessage) -> None:
        await gate.caught_up()
        await service.charges.handle_charges([received(r) for r in msg.raw_message])

    @broker.subscriber(BUREAU_ACCOUNTS, **consumer_options(settings, group, BUREAU_ACCOUNTS, **batched))
    async def on_bureau_accounts(msg: KafkaMessage) -> None:
        await service.books.follow_bureaus([received(r) for r in msg.raw_message])

    @broker.subscriber(BUREAU_INSTITUTIONS, **consumer_options(settings, group, BUREAU_INSTITUTIONS, **batched))
    async def on_institutions(msg: KafkaMessage) -> None:
        await service.books.follow_institutions([received(r) for r in msg.raw_message])

    # Its own group (settlement's on binding.events): releases the holds of bindings paused or
    # revoked (issue 15, I-7).
    @broker.subscriber(BINDING_EVENTS, **consumer_options(settings, group, BINDING_EVENTS, **batched))
    async def on_binding_events(msg: KafkaMessage) -> None:
        await service.bindings.follow_bindings([received(r) for r in msg.raw_message])

    @broker.subscriber(SETTLEMENT_QUERIES, **consumer_options(settings, group, SETTLEMENT_QUERIES, answering=True,
                                                              listener=gate.listener()))
    async def on_query(msg: KafkaMessage) -> None:
        await gate.caught_up()
        await answer_or_dead_letter(broker, received(msg.raw_message), service.queries.answer_query, queries,
                                    on_defect=service.queries.answer_query_defect)

    return gate
