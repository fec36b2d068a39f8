"""The answering consumers' fetch waits through the real broker (shared/fetch_waits.py): a
consumer on the short wait goes over to the quiet wait once nothing has come for the quiet spell,
a record still reaches it then, and the fetch that brought it puts it back on the short wait; a
background consumer is never governed. An aiokafka upgrade that moves the Fetcher's wait or its
fetch answering fails here (no governor found), not silently as a busy idle platform."""

from __future__ import annotations

import uuid

import pytest
from faststream.kafka.annotations import KafkaMessage

from shared.kafka import consumer_options, ensure_topics, make_broker
from tests.support import eventually

pytestmark = pytest.mark.integration

SHORT, QUIET, QUIET_AFTER = 10, 300, 500


async def test_an_answering_consumer_goes_quiet_when_idle_and_wakes_on_a_record(infra):
    settings = infra.settings(kafka_fetch_max_wait_ms=SHORT, kafka_quiet_fetch_max_wait_ms=QUIET,
                              kafka_quiet_after_ms=QUIET_AFTER, kafka_background_fetch_max_wait_ms=1000)
    answering, background = f"fetch-waits.a.{uuid.uuid4().hex[:8]}", f"fetch-waits.b.{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, [answering, background])
    broker = make_broker(settings, client_id="fetch-waits-test")
    seen: list[tuple[bytes, int]] = []

    @broker.subscriber(answering, **consumer_options(settings, "fetch-waits-test", answering, answering=True))
    async def on_answering(msg: KafkaMessage) -> None:
        seen.append((msg.raw_message.value, broker.governors[0].wait_ms))

    @broker.subscriber(background, **consumer_options(settings, "fetch-waits-test", background))
    async def on_background(msg: KafkaMessage) -> None:
        pass

    await broker.start()
    try:
        assert len(broker.governors) == 1, "the answering consumer alone is governed"
        governor = broker.governors[0]
        await eventually(lambda: governor.wait_ms == QUIET, 10, "the idle answering consumer on the quiet wait")
        await broker.publish(b"after the quiet spell", answering)
        await eventually(lambda: seen, 10, "the record read on the quiet wait")
        assert seen == [(b"after the quiet spell", SHORT)], "the fetch that brought it set the short wait"
        await eventually(lambda: governor.wait_ms == QUIET, 10, "quiet again once nothing more came")
        [reader] = [s for s in broker.subscribers if background in s.consumer.subscription()]
        assert reader.consumer._fetcher._fetch_max_wait_ms == 1000, "a background consumer keeps its own wait"
    finally:
        await broker.stop()
