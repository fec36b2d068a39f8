"""FastStream subscribers of the binding service: translate Kafka records into use-case calls.
How they consume (groups, acks, decoding) is `shared.kafka.consumer_options`."""

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.kafka import answer_or_dead_letter, consumer_options, received
from shared.topics import BINDING_COMMANDS, BUREAU_ACCOUNTS
from services.binding.config import BindingSettings
from services.binding.usecases import BindingService


def register(broker: KafkaBroker, service: BindingService, settings: BindingSettings) -> None:
    group = settings.binding_group_id

    @broker.subscriber(BINDING_COMMANDS, **consumer_options(settings, group, BINDING_COMMANDS))
    async def on_binding_command(msg: KafkaMessage) -> None:
        await answer_or_dead_letter(broker, received(msg.raw_message), service.handle_command)

    @broker.subscriber(BUREAU_ACCOUNTS, **consumer_options(settings, group, BUREAU_ACCOUNTS, batch=True,
                                                           max_records=500, batch_timeout_ms=50))
    async def on_bureau_accounts(msg: KafkaMessage) -> None:
        await service.register_people([received(r) for r in msg.raw_message])
