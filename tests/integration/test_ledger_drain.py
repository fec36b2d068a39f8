"""The upgrade's drain (services/settlement/ledger_drain.py) through the real broker and Redis:
what the retired projection group had not read of settlement.results goes into the ledger, once,
and the group's offsets move to where the topic ended; a group that never committed drains
nothing."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared import topics as t
from shared.envelope import now
from shared.kafka_security import client_kwargs
from services.settlement import outcomes
from services.settlement.config import SettlementSettings
from services.settlement.domain.lines import Line
from services.settlement.ledger_drain import drain, ledger_group
from tests.support import china_today

pytestmark = pytest.mark.integration


async def commit_at_end(settings: SettlementSettings) -> None:
    """The retired group as the old release left it, caught up with settlement.results."""
    consumer = AIOKafkaConsumer(**client_kwargs(settings.kafka_bootstrap_servers, settings.kafka_security(),
                                                group_id=ledger_group(settings), enable_auto_commit=False))
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(t.SETTLEMENT_RESULTS, p) for p in consumer.partitions_for_topic(t.SETTLEMENT_RESULTS)]
        consumer.assign(partitions)
        await consumer.commit(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def test_the_drain_adds_what_the_retired_group_had_not_read_once(infra, bus, clean_redis):
    settings = SettlementSettings(**infra.settings().model_dump(), settlement_group_id=f"drain-{uuid.uuid4().hex[:8]}")
    assert await drain(settings) == 0  # never committed: a new installation

    await commit_at_end(settings)
    institution, at = f"H{uuid.uuid4().hex[:10]}", now().isoformat(timespec="seconds")
    for i in range(3):  # settled by the old release after its ledger consumer stopped reading
        value = outcomes.charge_settled(institution, f"C{i}", "610102195001011234", 100 * (i + 1), at,
                                        [Line("cash", 100 * (i + 1))], at)
        await bus.send(t.SETTLEMENT_RESULTS, value, key=f"C{i}")

    assert await drain(settings) >= 3   # the topic is shared with other tests: theirs may be read too
    book = await clean_redis.hgetall(f"stl:ild:{institution}:{china_today().strftime('%Y%m%d')}")
    assert {k: book[k] for k in (b"t:charges", b"t:borne", b"t:cash")} == {
        b"t:charges": b"3", b"t:borne": b"600", b"t:cash": b"600"}
    assert await drain(settings) == 0   # committed: nothing is read twice
