"""The gateway's Kafka subscriptions: its own reply topic, each reply going to the request
waiting on its correlation id (replies.py); and the audit projection of gateway.audit
(`register_audit`).

The reply topic has no consumer group: the topic is this instance's alone, so it reads every partition itself
(no group join, no rebalance) from the end as it was at start: replies to an earlier process
of the same instance name are no one's now. Nothing is committed, nothing is redelivered: a
reply nobody waits for any more has no use."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Body, Header
from faststream.kafka import KafkaBroker

from shared.catchup import ProjectionGate
from shared.kafka import Outage, consumer_options, raw_bytes, tolerant_parser
from shared.topics import GATEWAY_AUDIT, GATEWAY_REVOCATIONS
from services.gateway.config import GatewaySettings
from services.gateway.replies import PendingReplies
from services.gateway.revocations import RevocationProjection
from services.gateway.usecases import AuditProjection


def register(broker: KafkaBroker, pending: PendingReplies, settings: GatewaySettings) -> Any:
    """Subscribe to the reply topic; returns the subscriber (see `reading_from_now`)."""
    subscriber = broker.subscriber(settings.reply_topic, auto_offset_reset="latest", decoder=raw_bytes,
                                   parser=tolerant_parser, no_reply=True,
                                   fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms)

    # Under faststream-fastapi a subscriber's parameters are read the FastAPI way: the body
    # (bytes, decoded by `raw_bytes`) and the correlation header.
    @subscriber
    async def on_reply(value: Annotated[bytes, Body(embed=True)],
                       correlation_id: Annotated[str | None, Header(convert_underscores=False)] = None) -> None:
        pending.deliver(correlation_id, value)

    return subscriber


async def reading_from_now(subscriber: Any, timeout: float = 30.0) -> None:
    """Returns once the reply consumer has every partition and a fixed position in each: a reply
    published before that could land ahead of the position and be skipped, so no request is
    sent until then."""
    async with asyncio.timeout(timeout):
        while subscriber.consumer is None or not subscriber.consumer.assignment():
            await asyncio.sleep(0.02)  # polling the consumer's assignment, under a deadline
        for partition in subscriber.consumer.assignment():
            await subscriber.consumer.position(partition)


def register_audit(broker: KafkaBroker, projection: AuditProjection, settings: GatewaySettings) -> ProjectionGate:
    """The audit projection: gateway.audit in batches, in a consumer group every gateway
    instance shares (`<GATEWAY_GROUP_ID>.gateway.audit`), offsets committed once the batch is in
    Redis. The gate returned opens once the group has read what the topic held at start: the
    readiness check and GET /v1/audit wait on it."""
    group = f"{settings.gateway_group_id}.{GATEWAY_AUDIT}"
    gate = ProjectionGate.of(settings, {GATEWAY_AUDIT: group})
    outage = Outage(GATEWAY_AUDIT)

    @broker.subscriber(GATEWAY_AUDIT, **consumer_options(settings, settings.gateway_group_id, GATEWAY_AUDIT,
                                                         batch=True, max_records=500, batch_timeout_ms=50))
    async def on_audit(values: Annotated[list[bytes], Body()]) -> None:
        # Under faststream-fastapi the batch's bodies (bytes, `raw_bytes`) are the request body.
        await outage.retrying(lambda: projection.project(values))

    return gate


def register_revocations(broker: KafkaBroker, projection: RevocationProjection, settings: GatewaySettings) -> None:
    """gateway.revocations into Redis, in one consumer group every instance shares
    (`<GATEWAY_GROUP_ID>.gateway.revocations`): one instance writes each revocation, every
    instance reads it there. Offsets are committed once the batch is in Redis (ack after
    handling: a revocation lost between the two would let a revoked token in)."""
    outage = Outage(GATEWAY_REVOCATIONS)

    @broker.subscriber(GATEWAY_REVOCATIONS, **consumer_options(settings, settings.gateway_group_id, GATEWAY_REVOCATIONS,
                                                               batch=True, max_records=500, batch_timeout_ms=10))
    async def on_revocations(values: Annotated[list[bytes], Body()]) -> None:
        await outage.retrying(lambda: projection.project(values))
