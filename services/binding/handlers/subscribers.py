"""FastStream subscribers of the binding service: translate Kafka records into use-case calls.

ack_policy NACK_ON_ERROR: the offset is committed only after the handler returned, i.e. after the
outcome was recorded in Redis and published; an infrastructure error puts the message back to be
read again, and the recorded outcome makes that redelivery harmless.
"""

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.kafka import answer_or_dead_letter, raw_bytes, received
from shared.topics import BINDING_COMMANDS, BUREAU_ACCOUNTS
from services.binding.config import BindingSettings
from services.binding.usecases import BindingService


def register(broker: KafkaBroker, service: BindingService, settings: BindingSettings) -> None:
    group = dict(group_id=settings.binding_group_id, auto_offset_reset="earliest", decoder=raw_bytes,
                 ack_policy=AckPolicy.NACK_ON_ERROR, no_reply=True,
                 session_timeout_ms=settings.kafka_session_timeout_ms,
                 heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms)

    @broker.subscriber(BINDING_COMMANDS, **group)
    async def on_binding_command(msg: KafkaMessage) -> None:
        await answer_or_dead_letter(broker, received(msg.raw_message), service.handle_command)

    @broker.subscriber(BUREAU_ACCOUNTS, batch=True, max_records=500, batch_timeout_ms=50, **group)
    async def on_bureau_accounts(msg: KafkaMessage) -> None:
        await service.register_people([received(r) for r in msg.raw_message])
