"""FastStream subscribers of the notify service: records in, one use-case call each.
How they consume (groups, acks, decoding) is `shared.kafka.consumer_options`.

binding.events is read twice, by two consumer groups: `notify.binding.events` answers it with
SMS, and `notify.projection.binding.events` projects it (bindings in force, for the ending-soon
check). One group cannot do both: the answers wait for the projections to catch up, and a group
that waits for its own commits never catches up."""

from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from shared.catchup import ProjectionGate
from shared.kafka import Outage, consumer_options, received
from shared.topics import BINDING_EVENTS, BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, SETTLEMENT_RESULTS, SMS_UPLINK
from services.notify.config import NotifySettings
from services.notify.usecases import NotifyService


def register(broker: KafkaBroker, service: NotifyService, settings: NotifySettings) -> ProjectionGate:
    """Subscribe; the gate returned holds answers back until people, bindings and institutions
    are read up to where their topics ended when the gate closed (start, rebalance)."""
    group, projection = settings.notify_group_id, f"{settings.notify_group_id}.projection"
    gate = ProjectionGate.of(settings, {
        BUREAU_ACCOUNTS: f"{group}.{BUREAU_ACCOUNTS}", BUREAU_INSTITUTIONS: f"{group}.{BUREAU_INSTITUTIONS}",
        BINDING_EVENTS: f"{projection}.{BINDING_EVENTS}"})
    # Up to 500 records a batch: a backlog is worked off in few, large batches (each costs a few Redis
    # round trips and one wait for acks whatever its size); a consumer that keeps up gets small ones.
    batched = dict(batch=True, max_records=500, batch_timeout_ms=20)
    people, institutions, bindings = Outage(BUREAU_ACCOUNTS), Outage(BUREAU_INSTITUTIONS), Outage(BINDING_EVENTS)

    @broker.subscriber(SETTLEMENT_RESULTS, **consumer_options(settings, group, SETTLEMENT_RESULTS,
                                                              listener=gate.listener(), **batched))
    async def on_settlement_results(msg: KafkaMessage) -> None:
        await gate.caught_up()
        await service.on_settlement_results([received(r) for r in msg.raw_message])

    @broker.subscriber(BINDING_EVENTS, **consumer_options(settings, group, BINDING_EVENTS,
                                                          listener=gate.listener(), **batched))
    async def on_binding_events(msg: KafkaMessage) -> None:
        await gate.caught_up()
        await service.on_binding_events([received(r) for r in msg.raw_message])

    # A reply is resolved to a person through the contacts: it waits for them as the answers do.
    @broker.subscriber(SMS_UPLINK, **consumer_options(settings, group, SMS_UPLINK, listener=gate.listener(),
                                                      **batched))
    async def on_sms_replies(msg: KafkaMessage) -> None:
        await gate.caught_up()
        await service.on_sms_replies([received(r) for r in msg.raw_message])

    @broker.subscriber(BINDING_EVENTS, **consumer_options(settings, projection, BINDING_EVENTS, **batched))
    async def on_binding_projection(msg: KafkaMessage) -> None:
        batch = [received(r) for r in msg.raw_message]
        await bindings.retrying(lambda: service.on_binding_projection(batch))

    @broker.subscriber(BUREAU_ACCOUNTS, **consumer_options(settings, group, BUREAU_ACCOUNTS, **batched))
    async def on_bureau_accounts(msg: KafkaMessage) -> None:
        batch = [received(r) for r in msg.raw_message]
        await people.retrying(lambda: service.on_bureau_accounts(batch))

    @broker.subscriber(BUREAU_INSTITUTIONS, **consumer_options(settings, group, BUREAU_INSTITUTIONS, **batched))
    async def on_institutions(msg: KafkaMessage) -> None:
        batch = [received(r) for r in msg.raw_message]
        await institutions.retrying(lambda: service.on_institutions(batch))

    return gate
