"""The projection gate (shared/catchup.py) against the real broker: answers wait until the
projection's consumer group has committed what its topic held when the gate closed."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.catchup import ProjectionGate
from shared.kafka import ensure_topics
from tooling.devstack import Infra

pytestmark = pytest.mark.integration


async def _project(infra: Infra, topic: str, group: str, how_many: int) -> None:
    """A projection consumer that reads and commits `how_many` records of `topic`."""
    consumer = AIOKafkaConsumer(topic, **infra.kafka_client(group_id=group, enable_auto_commit=False,
                                                            auto_offset_reset="earliest", max_poll_records=how_many))
    await consumer.start()
    try:
        seen = 0
        while seen < how_many:
            for records in (await consumer.getmany(timeout_ms=500, max_records=how_many - seen)).values():
                seen += len(records)
        await consumer.commit()
    finally:
        await consumer.stop()


async def test_the_gate_opens_only_once_the_projection_has_committed_what_its_topic_held(infra):
    topic, group = f"test.projection.{uuid.uuid4().hex[:8]}", f"projector-{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra.settings(kafka_topic_partitions=1), [topic])
    producer = AIOKafkaProducer(**infra.kafka_client())
    await producer.start()
    for i in range(10):
        await producer.send_and_wait(topic, f"registration {i}".encode())
    await producer.stop()

    gate = ProjectionGate(infra.kafka_bootstrap, {topic: group}, security=infra.security)
    gate.close()
    try:
        await _project(infra, topic, group, 6)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(gate.caught_up(), 2.0)  # 6 of 10 read: answers still wait
        await _project(infra, topic, group, 4)
        await asyncio.wait_for(gate.caught_up(), 30.0)
        assert gate.is_open
    finally:
        await gate.stop()


async def test_an_empty_projection_topic_opens_the_gate_at_once(infra):
    topic = f"test.projection.{uuid.uuid4().hex[:8]}"
    await ensure_topics(infra.settings(), [topic])
    # A group that never read (nor committed) anything: nothing to wait for on an empty topic.
    gate = ProjectionGate(infra.kafka_bootstrap, {topic: f"projector-{uuid.uuid4().hex[:8]}"}, security=infra.security)
    gate.close()
    try:
        assert not gate.is_open  # closed until it has looked at the topic
        await asyncio.wait_for(gate.caught_up(), 30.0)
        assert gate.is_open
    finally:
        await gate.stop()
