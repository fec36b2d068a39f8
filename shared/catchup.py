"""Projections before answers (contract.md, version 2).

A service answers charges or commands from projections of other topics (who is registered,
which institutions are designated). Right after a start, or after a rebalance, its projection
consumers may still be behind, and an answer read off a projection that is behind (say
UNKNOWN_PATIENT for someone registered a moment earlier) would be wrong. The gate closes on
start and on every rebalance of an answering consumer; it opens once every projection consumer
group has committed up to the end offsets its topics had when the gate closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from shared.kafka import Outage
from shared.kafka_security import KafkaSecurity, client_kwargs, from_env
from shared.settings import KafkaClientSettings

log = logging.getLogger(__name__)


class ProjectionGate:
    """Answers wait on `caught_up()`; `close()` re-arms the gate (start, rebalance)."""

    def __init__(self, bootstrap: str, groups: dict[str, str], poll_seconds: float = 0.05,
                 security: KafkaSecurity | None = None) -> None:
        self._bootstrap = bootstrap
        self._security = security or from_env()  # a service's: ProjectionGate.of(settings, ...)
        self._groups = groups  # projection topic -> the consumer group that projects it
        self._poll = poll_seconds
        self._open = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._outage = Outage("projection catch-up")

    @classmethod
    def of(cls, settings: KafkaClientSettings, groups: dict[str, str]) -> ProjectionGate:
        """A service's gate: its settings' broker and security."""
        return cls(settings.kafka_bootstrap_servers, groups, security=settings.kafka_security())

    def close(self) -> None:
        """Answers wait from now until the projections have read what their topics hold now."""
        self._open.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._catch_up())

    async def caught_up(self) -> None:
        await self._open.wait()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def listener(self) -> ConsumerRebalanceListener:
        """For an answering subscriber: a new assignment closes the gate until caught up."""
        gate = self

        class CloseOnAssignment(ConsumerRebalanceListener):
            async def on_partitions_revoked(self, revoked) -> None:
                pass

            async def on_partitions_assigned(self, assigned) -> None:
                gate.close()

        return CloseOnAssignment()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _catch_up(self) -> None:
        try:
            targets = await self._outage.retrying(self._end_offsets)
            # A consumer of each projection's group that never subscribes (so never joins it)
            # reads the committed offsets; aiokafka's admin OffsetFetch is not understood by every
            # broker (Tansu).
            readers = {topic: AIOKafkaConsumer(**self._client(group_id=group, enable_auto_commit=False))
                       for topic, group in self._groups.items()}
            try:
                for reader in readers.values():
                    await self._outage.retrying(reader.start)
                while not await self._outage.retrying(lambda: self._reached(readers, targets)):
                    await asyncio.sleep(self._poll)  # polling the committed offsets, with a period
            finally:
                for reader in readers.values():
                    await reader.stop()
            self._open.set()
            log.info("projections caught up: %s", ", ".join(sorted(self._groups)))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("projection catch-up failed; answering anyway would be wrong, retrying")
            await asyncio.sleep(1.0)  # a defect, not an outage: retry, but not in a hot loop
            self._task = asyncio.create_task(self._catch_up())

    def _client(self, **options: Any) -> dict[str, Any]:
        return client_kwargs(self._bootstrap, self._security, **options)

    async def _end_offsets(self) -> dict[TopicPartition, int]:
        consumer = AIOKafkaConsumer(**self._client(enable_auto_commit=False))
        await consumer.start()
        try:
            partitions = []
            for topic in self._groups:
                found = consumer.partitions_for_topic(topic)
                if not found:
                    await consumer._client.force_metadata_update()  # a topic created a moment ago
                    found = consumer.partitions_for_topic(topic) or set()
                partitions += [TopicPartition(topic, p) for p in found]
            return await consumer.end_offsets(partitions) if partitions else {}
        finally:
            await consumer.stop()

    @staticmethod
    async def _reached(readers: dict[str, AIOKafkaConsumer], targets: dict[TopicPartition, int]) -> bool:
        for tp, end in targets.items():
            if end > 0 and (await readers[tp.topic].committed(tp) or 0) < end:
                return False
        return True
