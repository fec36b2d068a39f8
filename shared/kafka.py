"""Broker factory, topic creation and the dead-letter path, shared by every service."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeout

from shared.settings import ServiceSettings
from shared.topics import dead_letter_topic

log = logging.getLogger(__name__)


def make_broker(settings: ServiceSettings, *, client_id: str) -> KafkaBroker:
    """A broker configured from settings; nothing connects until it starts."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        enable_idempotence=settings.kafka_enable_idempotence,
        acks="all",
        # Batched outcomes overflow the 16 KiB default (platform-notes.md).
        max_batch_size=1_048_576,
        logger=logging.getLogger(f"{client_id}.kafka"),
    )


async def ensure_topics(settings: ServiceSettings, topics: list[str]) -> None:
    """Create the topics this service needs when they are missing (contract.md)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(t, settings.kafka_topic_partitions, settings.kafka_replication_factor) for t in missing
                ])
            except TopicAlreadyExistsError:
                pass  # another service created it between our look and our create
            log.info("created topics %s", missing)
    finally:
        await admin.close()


@dataclass(frozen=True)
class Received:
    """Where a message came from, for the dead-letter record and for replies."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def reply_to(self) -> str:
        return self.headers.get("reply_to", "")

    @property
    def correlation_id(self) -> str | None:
        return self.headers.get("correlation_id")


def received(record: Any) -> Received:
    """Translate an aiokafka ConsumerRecord."""
    return Received(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value or b"",
        headers={k: v.decode("utf-8", "replace") for k, v in (record.headers or ())},
    )


async def dead_letter(broker: KafkaBroker, msg: Received, error: str) -> None:
    """Keep the original bytes, with why and where from, on `<topic>.dlq`."""
    await broker.publish(
        msg.value,
        dead_letter_topic(msg.topic),
        key=msg.key,
        headers={
            **{k: v for k, v in msg.headers.items() if k not in ("reply_to", "correlation_id")},
            "dlq-error": error[:500],
            "dlq-topic": msg.topic,
            "dlq-partition": str(msg.partition),
            "dlq-offset": str(msg.offset),
        },
    )
    log.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, error[:200])


async def reply(broker: KafkaBroker, msg: Received, value: bytes, key: bytes | None = None) -> None:
    """Answer a request/reply caller on its reply topic, when it asked for one."""
    if msg.reply_to:
        headers = {"correlation_id": msg.correlation_id} if msg.correlation_id else {}
        await broker.publish(value, msg.reply_to, key=key, headers=headers)


def raw_bytes(msg: Any) -> Any:
    """Decoder that leaves bodies as bytes: envelopes are read by `shared.envelope.read`, so that
    a malformed message becomes a rejection or a dead letter instead of a decoder exception."""
    return msg.body


# Errors of the infrastructure are worth retrying (the message is put back and read again);
# anything else raised while answering one message is a defect that retrying cannot fix, so the
# message goes to the DLQ with its original bytes instead of blocking its partition forever.
def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, (KafkaError, RedisConnectionError, RedisTimeout, OSError))


async def answer_or_dead_letter(broker: KafkaBroker, msg: Received, answer) -> None:
    """Run `answer(msg)`; on a defect, dead-letter the message with the error and go on."""
    try:
        await answer(msg)
    except Exception as exc:
        if _is_transient(exc):
            raise
        log.exception("defect while answering %s[%d]@%d", msg.topic, msg.partition, msg.offset)
        await dead_letter(broker, msg, f"unhandled {exc.__class__.__name__}")


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str] | None = None


async def publish_all(broker: KafkaBroker, messages: list[Outgoing]) -> None:
    """Send a batch without waiting for each ack in turn, then wait for all of them: the caller
    commits its offsets only after this returns, so nothing is acknowledged unpublished."""
    futures = [await broker.publish(m.value, m.topic, key=m.key, headers=m.headers, no_confirm=True)
               for m in messages]
    await asyncio.gather(*futures)


def consumer_options(settings: ServiceSettings, group: str, topic: str, **extra: Any) -> dict[str, Any]:
    """How every platform subscriber consumes.

    - One consumer group per subscription (`<group>.<topic>`): a member joining or leaving one
      subscription never stops the others for a rebalance.
    - ack_policy NACK_ON_ERROR: the offset is committed only after the handler returned, i.e.
      after its outcomes were recorded and published; an infrastructure error puts the message
      back to be read again, and the idempotency records make that redelivery harmless. (The
      default ACK_FIRST would be at-most-once: wrong for money.)
    - Bodies stay bytes (`raw_bytes`), so malformed input is answered or dead-lettered by the
      use case instead of failing in a decoder; `no_reply`: replies are published explicitly.
    """
    return dict(group_id=f"{group}.{topic}", auto_offset_reset="earliest", decoder=raw_bytes,
                ack_policy=AckPolicy.NACK_ON_ERROR, no_reply=True,
                session_timeout_ms=settings.kafka_session_timeout_ms,
                heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms, **extra)
