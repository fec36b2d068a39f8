"""FastStream subscribers of the binding service: translate Kafka records into use-case calls.
How they consume (groups, acks, decoding) is `shared.kafka.consumer_options`."""

import asyncio

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.catchup import ProjectionGate
from shared.kafka import Outage, Received, answer_or_dead_letter, consumer_options, received
from shared.topics import BINDING_COMMANDS, BUREAU_ACCOUNTS, BUREAU_DISPUTES, SETTLEMENT_RESULTS
from services.binding.config import BindingSettings
from services.binding.usecases import BindingService


def register(broker: KafkaBroker, service: BindingService, settings: BindingSettings) -> ProjectionGate:
    """Subscribe; the gate returned holds commands back until the registrations are read."""
    group = settings.binding_group_id
    gate = ProjectionGate.of(settings, {BUREAU_ACCOUNTS: f"{group}.{BUREAU_ACCOUNTS}"})
    commands, registry = Outage(BINDING_COMMANDS), Outage(BUREAU_ACCOUNTS)

    # Batches: one Kafka fetch is decided with a few Redis round trips (usecases/commands.py).
    @broker.subscriber(BINDING_COMMANDS, **consumer_options(settings, group, BINDING_COMMANDS, answering=True,
                                                            batch=True,
                                                            max_records=settings.binding_batch_size,
                                                            batch_timeout_ms=settings.binding_batch_timeout_ms,
                                                            listener=gate.listener()))
    async def on_binding_commands(msg: KafkaMessage) -> None:
        await gate.caught_up()
        await answer_batch(broker, [received(r) for r in msg.raw_message], service, commands)

    @broker.subscriber(BUREAU_ACCOUNTS, **consumer_options(settings, group, BUREAU_ACCOUNTS, batch=True,
                                                           max_records=500, batch_timeout_ms=50))
    async def on_bureau_accounts(msg: KafkaMessage) -> None:
        batch = [received(r) for r in msg.raw_message]
        await registry.retrying(lambda: service.register_people(batch))

    # The reference projection (DisputePayment finds a payment by it): its own group, read off
    # the hot path of settlement.
    payments = Outage(f"{SETTLEMENT_RESULTS} references")

    @broker.subscriber(SETTLEMENT_RESULTS, **consumer_options(settings, group, SETTLEMENT_RESULTS, batch=True,
                                                              group_id=references_group(settings),
                                                              max_records=500, batch_timeout_ms=50))
    async def on_settlement_results(msg: KafkaMessage) -> None:
        batch = [received(r) for r in msg.raw_message]
        await payments.retrying(lambda: service.project_payments(batch))

    # Bureau decisions are few: each message on its own, with its own boundary.
    decisions = Outage(BUREAU_DISPUTES)

    @broker.subscriber(BUREAU_DISPUTES, **consumer_options(settings, group, BUREAU_DISPUTES, batch=True,
                                                           max_records=100, batch_timeout_ms=50))
    async def on_bureau_disputes(msg: KafkaMessage) -> None:
        for record in msg.raw_message:
            await answer_or_dead_letter(broker, received(record), service.decide_dispute, decisions)

    return gate


def references_group(settings: BindingSettings) -> str:
    return f"{settings.binding_group_id}.references"


def references_waiter(settings: BindingSettings):
    """Waits until the reference projection has read what settlement.results holds now (a fresh
    gate each time: the end offsets of this moment, not of the last start or rebalance)."""
    async def caught_up() -> None:
        gate = ProjectionGate.of(settings, {SETTLEMENT_RESULTS: references_group(settings)})
        gate.close()
        try:
            await asyncio.wait_for(gate.caught_up(), settings.binding_reference_wait_seconds)
        finally:
            await gate.stop()
    return caught_up


async def answer_batch(broker: KafkaBroker, batch: list[Received], service: BindingService, outage: Outage) -> None:
    """The whole batch at once; should that meet a defect the use case could not pin on one
    command, each message is answered on its own, with its own boundary (PLATFORM_ERROR and a
    dead letter for the one that fails). Answering again is harmless: outcomes are recorded."""
    try:
        await outage.retrying(lambda: service.handle_commands(batch))
    except Exception:  # noqa: BLE001 - not swallowed: every message is answered again below
        for msg in batch:
            await answer_or_dead_letter(broker, msg, service.handle_command, outage, on_defect=service.answer_defect)
