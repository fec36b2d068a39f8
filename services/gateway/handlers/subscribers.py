"""The gateway's one Kafka subscription: its own reply topic. Each reply goes to the request
waiting on its correlation id (replies.py).

No consumer group: the topic is this instance's alone, so it reads every partition itself
(no group join, no rebalance) from the end as it was at start: replies to an earlier process
of the same instance name are no one's now. Nothing is committed, nothing is redelivered: a
reply nobody waits for any more has no use."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import Body, Header
from faststream.kafka import KafkaBroker

from shared.kafka import raw_bytes, tolerant_parser
from services.gateway.config import GatewaySettings
from services.gateway.replies import PendingReplies


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
