"""Outcomes go out through the aiokafka producer under FastStream's broker (shared.kafka.publish_all,
raw_producer), through the real broker: the producer is found once the broker has started (an
upgrade of FastStream that moves it fails here, not silently in production), and what arrives is
what was sent, keys and headers (the signatures of contract version 3) included."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer

from shared.kafka import Outgoing, make_broker, publish_all, raw_producer
from tests.support import body

pytestmark = pytest.mark.integration

TOPIC = "reply.tests"


async def test_publish_all_sends_through_the_brokers_own_producer(infra, bus):
    broker = make_broker(infra.settings(), client_id="publish-test")
    await broker.start()
    try:
        assert isinstance(raw_producer(broker), AIOKafkaProducer)
        marker = str(uuid.uuid4())
        sent = [Outgoing(TOPIC, f"k{i}".encode(), f'{{"event_id":"{marker}-{i}","n":{i}}}'.encode(),
                         {"x-signer": "settlement:k1", "x-n": str(i)}) for i in range(3)]
        await publish_all(broker, sent)
        got = await bus.watchers[TOPIC].wait_for(lambda r: body(r).get("event_id", "").startswith(marker), count=3)
    finally:
        await broker.stop()
    by_id = {body(r)["event_id"]: r for r in got}
    for i, m in enumerate(sent):
        record = by_id[f"{marker}-{i}"]
        assert record.key == m.key and record.value == m.value
        assert {k: v.decode() for k, v in record.headers}.items() >= m.headers.items()
