"""FastStream subscribers of the binding service: translate Kafka records into use-case calls.
How they consume (groups, acks, decoding) is `shared.kafka.consumer_options`."""

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.catchup import ProjectionGate
from shared.kafka import Outage, answer_or_dead_letter, consumer_options, received
from shared.topics import BINDING_COMMANDS, BUREAU_ACCOUNTS
from services.binding.config import BindingSettings
from services.binding.usecases import BindingService


def register(broker: KafkaBroker, service: BindingService, settings: BindingSettings) -> ProjectionGate:
    """Subscribe; the gate returned holds commands back until the registrations are read."""
    group = settings.binding_group_id
    gate = ProjectionGate(settings.kafka_bootstrap_servers, {BUREAU_ACCOUNTS: f"{group}.{BUREAU_ACCOUNTS}"})
    commands, registry = Outage(BINDING_COMMANDS), Outage(BUREAU_ACCOUNTS)

    @broker.subscriber(BINDING_COMMANDS, **consumer_options(settings, group, BINDING_COMMANDS,
                                                            listener=gate.listener()))
    async def on_binding_command(msg: KafkaMessage) -> None:
        await gate.caught_up()
        await answer_or_dead_letter(broker, received(msg.raw_message), service.handle_command, commands,
                                    on_defect=service.answer_defect)

    @broker.subscriber(BUREAU_ACCOUNTS, **consumer_options(settings, group, BUREAU_ACCOUNTS, batch=True,
                                                           max_records=500, batch_timeout_ms=50))
    async def on_bureau_accounts(msg: KafkaMessage) -> None:
        batch = [received(r) for r in msg.raw_message]
        await registry.retrying(lambda: service.register_people(batch))

    return gate
