"""FastStream subscribers of the notify service: records in, one use-case call each.
How they consume (groups, acks, decoding) is `shared.kafka.consumer_options`."""

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.kafka import consumer_options, received
from shared.topics import BINDING_EVENTS, BUREAU_ACCOUNTS, SETTLEMENT_RESULTS
from services.notify.config import NotifySettings
from services.notify.usecases import NotifyService


def register(broker: KafkaBroker, service: NotifyService, settings: NotifySettings) -> None:
    group = settings.notify_group_id
    batched = dict(batch=True, max_records=200, batch_timeout_ms=20)

    @broker.subscriber(SETTLEMENT_RESULTS, **consumer_options(settings, group, SETTLEMENT_RESULTS, **batched))
    async def on_settlement_results(msg: KafkaMessage) -> None:
        await service.on_settlement_results([received(r) for r in msg.raw_message])

    @broker.subscriber(BINDING_EVENTS, **consumer_options(settings, group, BINDING_EVENTS, **batched))
    async def on_binding_events(msg: KafkaMessage) -> None:
        await service.on_binding_events([received(r) for r in msg.raw_message])

    @broker.subscriber(BUREAU_ACCOUNTS, **consumer_options(settings, group, BUREAU_ACCOUNTS, **batched))
    async def on_bureau_accounts(msg: KafkaMessage) -> None:
        await service.on_bureau_accounts([received(r) for r in msg.raw_message])
