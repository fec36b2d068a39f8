"""Broker factory, topic creation and the dead-letter path, shared by every service."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeout

from shared.fetch_waits import FetchWaits, Governor, govern
from shared.kafka_security import client_kwargs
from shared.logs import shown
from shared.settings import KafkaClientSettings, ServiceSettings
from shared.topics import dead_letter_topic

log = logging.getLogger(__name__)

# contract.md, "Reply topics": `reply.` and at most 100 letters, digits, `.`, `_` or `-`. Any
# other reply_to is ignored, so no caller can make the platform write onto one of its own topics.
_REPLY_TOPIC = re.compile(r"reply\.[A-Za-z0-9._-]{1,100}")
# Hostile headers are bounded before anything reads them.
_MAX_HEADERS, _MAX_HEADER_KEY, _MAX_HEADER_BYTES = 32, 64, 1024
REPLY_TIMEOUT_SECONDS = 5.0


class PlatformBroker(KafkaBroker):
    """KafkaBroker whose subscribers all join their groups at once.

    FastStream starts subscribers one after another, and aiokafka's start waits for the group's
    assignment (seconds each): a service with four subscriptions took four joins to start.
    `on_published` (set by shared.observability) counts what `publish_all` sent, by topic, once a
    batch: that path bypasses FastStream's middleware and its per-publish counters.
    `fetch_waits` (set by `make_broker`): the answering consumers' waits, governed once started
    (shared/fetch_waits.py); `governors` holds one per governed consumer.
    """

    on_published: Callable[[Counter[str]], None] | None = None
    fetch_waits: FetchWaits | None = None
    governors: Sequence[Governor] = ()

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(sub.start() for sub in self.subscribers))
        self.governors = [g for sub in self.subscribers for c in _consumers(sub)
                          if self.fetch_waits is not None and (g := govern(c, self.fetch_waits)) is not None]
        for pub in self.publishers:
            await pub.start()
        self.running = True


def _consumers(subscriber: Any) -> list[Any]:
    """The aiokafka consumers a started FastStream subscriber reads with (one, or a subgroup)."""
    return [c for c in getattr(subscriber, "consumer_subgroup", None) or [getattr(subscriber, "consumer", None)]
            if c is not None]


def make_broker(settings: ServiceSettings, *, client_id: str, middlewares: Sequence[Any] = ()) -> KafkaBroker:
    """A broker configured from settings; nothing connects until it starts. `middlewares`: e.g.
    the process's `Observability.kafka_middleware` (shared/observability.py)."""
    broker = PlatformBroker(
        settings.kafka_bootstrap_servers,
        security=settings.kafka_security().faststream(),
        client_id=client_id,
        enable_idempotence=settings.kafka_enable_idempotence,
        acks="all",
        linger_ms=settings.kafka_linger_ms,
        # Batched outcomes overflow the 16 KiB default (platform-notes.md).
        max_batch_size=1_048_576,
        logger=logging.getLogger(f"{client_id}.kafka"),
        middlewares=tuple(middlewares),
    )
    broker.fetch_waits = FetchWaits(settings.kafka_fetch_max_wait_ms, settings.kafka_quiet_fetch_max_wait_ms,
                                    settings.kafka_quiet_after_ms)
    return broker


def admin_client(settings: KafkaClientSettings) -> AIOKafkaAdminClient:
    """An admin client of the broker, with the settings' security; nothing connects until it starts."""
    return AIOKafkaAdminClient(**client_kwargs(settings.kafka_bootstrap_servers, settings.kafka_security()))


async def ensure_topics(settings: ServiceSettings, topics: list[str]) -> None:
    """Create the topics this service needs when they are missing (contract.md)."""
    admin = admin_client(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                await admin.create_topics([
                    NewTopic(t, settings.kafka_topic_partitions, settings.kafka_replication_factor,
                             topic_configs={"retention.ms": str(settings.kafka_retention_days * 86_400_000)})
                    for t in missing
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
        """The caller's reply topic when it is one the contract allows, else ''."""
        asked = self.headers.get("reply_to", "")
        return asked if is_reply_topic(asked) else ""

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
        headers=dict(_readable_headers(record.headers)),
    )


def _readable_headers(headers: Any) -> list[tuple[str, str]]:
    """At most _MAX_HEADERS headers, each value cut to _MAX_HEADER_BYTES and decoded leniently."""
    return [(str(k)[:_MAX_HEADER_KEY], (v or b"")[:_MAX_HEADER_BYTES].decode("utf-8", "replace"))
            for k, v in list(headers or ())[:_MAX_HEADERS]]


def is_reply_topic(name: str) -> bool:
    return bool(_REPLY_TOPIC.fullmatch(name))


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
    log.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, shown(error, 200))


async def reply(broker: KafkaBroker, msg: Received, value: bytes, key: bytes | None = None) -> None:
    """Answer a request/reply caller on its reply topic, when it asked for one it may have."""
    await publish_replies(broker, reply_to(msg, key, value))


def reply_to(msg: Received, key: bytes | None, value: bytes) -> list[Outgoing]:
    """The reply a request asked for, as a message to publish with `publish_replies` (none when
    it asked for none, or for a topic the contract does not allow: that is logged)."""
    asked = msg.headers.get("reply_to", "")
    if not asked:
        return []
    if not msg.reply_to:
        log.warning("ignored reply_to %s on %s[%d]@%d: not a reply. topic", shown(asked), msg.topic,
                    msg.partition, msg.offset)
        return []
    headers = {"correlation_id": msg.correlation_id} if msg.correlation_id else None
    return [Outgoing(msg.reply_to, key, value, headers)]


async def publish_replies(broker: KafkaBroker, replies: list[Outgoing]) -> None:
    """Replies are a courtesy to the caller: one that cannot be delivered in a few seconds is
    logged and dropped, never retried, so a missing reply topic never holds up a consumer."""
    async def one(m: Outgoing) -> None:
        try:
            await asyncio.wait_for(broker.publish(m.value, m.topic, key=m.key, headers=m.headers),
                                   REPLY_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the reply is dropped
            log.warning("reply to %s not delivered: %s", shown(m.topic), exc.__class__.__name__)
    await asyncio.gather(*(one(m) for m in replies))


def _bounded_headers(record: Any) -> Any:
    if _within_bounds(record.headers):  # nearly every record: nothing to bound, nothing copied
        return record
    return dataclasses.replace(record, headers=[(k, v.encode("utf-8")) for k, v in _readable_headers(record.headers)])


def _within_bounds(headers: Any) -> bool:
    """Headers that bounding and lenient decoding would leave as they are: few, short keys, short
    ASCII values (any other value takes the long way, which keeps valid UTF-8 as it is)."""
    return len(headers) <= _MAX_HEADERS and all(
        type(k) is str and len(k) <= _MAX_HEADER_KEY
        and type(v) is bytes and len(v) <= _MAX_HEADER_BYTES and v.isascii() for k, v in headers)


async def tolerant_parser(raw: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream's parser decodes every header value as strict UTF-8 before any of our code runs:
    one binary header would raise there, outside every per-message boundary, and the record would
    be read again forever. Headers are bounded and decoded leniently first."""
    if isinstance(raw, tuple):
        return await original(tuple(_bounded_headers(r) for r in raw))
    return await original(_bounded_headers(raw))


def raw_bytes(msg: Any) -> Any:
    """Decoder that leaves bodies as bytes: envelopes are read by `shared.envelope.read`, so that
    a malformed message becomes a rejection or a dead letter instead of a decoder exception."""
    return msg.body


# Errors of the infrastructure are worth retrying (in place, with back-off); anything else raised
# while answering one message is a defect that retrying cannot fix, so the message goes to the
# DLQ with its original bytes instead of blocking its partition forever.
def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, (KafkaError, RedisConnectionError, RedisTimeout, OSError, asyncio.TimeoutError))


class Outage:
    """Retries work that failed on the infrastructure, with back-off, and says so in the log once
    per outage (when it begins and when it ends), not once per message or per attempt."""

    def __init__(self, name: str, first_delay: float = 0.1, longest_delay: float = 5.0) -> None:
        self._name, self._first, self._longest = name, first_delay, longest_delay
        self._since: float | None = None

    async def retrying(self, work: Callable[[], Awaitable[Any]]) -> Any:
        delay = self._first
        while True:
            try:
                result = await work()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self._since is None:
                    self._since = time.monotonic()
                    log.error("%s: infrastructure unreachable (%s: %s); retrying with back-off", self._name,
                              exc.__class__.__name__, shown(str(exc), 200))
                await asyncio.sleep(delay)  # back-off between attempts, not synchronisation
                delay = min(delay * 2, self._longest)
                continue
            if self._since is not None:
                log.warning("%s: infrastructure back after %.1f s", self._name, time.monotonic() - self._since)
                self._since = None
            return result


async def answer_or_dead_letter(broker: KafkaBroker, msg: Received,
                                answer: Callable[[Received], Awaitable[None]],
                                outage: Outage | None = None,
                                on_defect: Callable[[Received], Awaitable[None]] | None = None) -> None:
    """Run `answer(msg)`: transient failures are retried with back-off; on a defect the caller
    still gets an answer (`on_defect`, e.g. a PLATFORM_ERROR refusal) and the message is
    dead-lettered for the operators. Either way the consumer goes on."""
    try:
        await (outage or Outage(msg.topic)).retrying(lambda: answer(msg))
    except Exception as exc:
        log.exception("defect while answering %s[%d]@%d", msg.topic, msg.partition, msg.offset)
        await dead_letter(broker, msg, f"unhandled {exc.__class__.__name__}")
        if on_defect is not None:
            try:
                await on_defect(msg)
            except Exception:  # noqa: BLE001 - the dead letter already keeps the message
                log.exception("could not answer the defect on %s[%d]@%d", msg.topic, msg.partition, msg.offset)


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str] | None = None


async def publish_all(broker: KafkaBroker, messages: list[Outgoing]) -> None:
    """Send a batch without waiting for each ack in turn, then wait for all of them: the caller
    commits its offsets only after this returns, so nothing is acknowledged unpublished.

    Sent by the broker's own aiokafka producer (`raw_producer`): FastStream's publish path, with
    its per-publish middleware, cost about 80 µs of CPU a message against about 20 µs here
    (measured on the local broker, 20,000 messages of 600 B); the services count what they
    publish per batch themselves. FastStream's path remains for a broker without one (its test
    broker in unit tests)."""
    producer = raw_producer(broker)
    if producer is None:
        futures = [await broker.publish(m.value, m.topic, key=m.key, headers=m.headers, no_confirm=True)
                   for m in messages]
    else:
        futures = [await producer.send(m.topic, m.value, key=m.key, headers=_wire_headers(m.headers))
                   for m in messages]
    await asyncio.gather(*futures)
    if messages and (count := getattr(broker, "on_published", None)) is not None:
        count(Counter(m.topic for m in messages))


def raw_producer(broker: KafkaBroker) -> AIOKafkaProducer | None:
    """The aiokafka producer FastStream's broker publishes with once started (faststream 0.7.8,
    pinned in pyproject.toml; tests/integration/test_kafka_publish.py fails if an upgrade moves it)."""
    state = getattr(broker, "_producer", None)
    producer = getattr(getattr(state, "_producer", None), "producer", None)
    return producer if isinstance(producer, AIOKafkaProducer) else None


def _wire_headers(headers: dict[str, str] | None) -> list[tuple[str, bytes]] | None:
    return [(k, v.encode("utf-8")) for k, v in headers.items()] if headers else None


def consumer_options(settings: ServiceSettings, group: str, topic: str, *, answering: bool = False,
                     **extra: Any) -> dict[str, Any]:
    """How every platform subscriber consumes.

    - One consumer group per subscription (`<group>.<topic>`): a member joining or leaving one
      subscription never stops the others for a rebalance.
    - ack_policy NACK_ON_ERROR: the offset is committed only after the handler returned, i.e.
      after its outcomes were recorded and published; an infrastructure error puts the message
      back to be read again, and the idempotency records make that redelivery harmless. (The
      default ACK_FIRST would be at-most-once: wrong for money.)
    - How long a fetch waits for data: `answering` subscriptions (a partner waits for their answer)
      KAFKA_FETCH_MAX_WAIT_MS, short; every other KAFKA_BACKGROUND_FETCH_MAX_WAIT_MS, long. A
      caught-up consumer on the local broker waits that long for every fetch, so short waits cost
      polls while idle and long ones cost latency: only the answering ones pay for speed.
    - Bodies stay bytes (`raw_bytes`), so malformed input is answered or dead-lettered by the
      use case instead of failing in a decoder; headers are bounded and leniently decoded
      (`tolerant_parser`); `no_reply`: replies are published explicitly.
    """
    return {**dict(group_id=f"{group}.{topic}", auto_offset_reset="earliest", decoder=raw_bytes,
                   parser=tolerant_parser,
                   ack_policy=AckPolicy.NACK_ON_ERROR, no_reply=True,
                   session_timeout_ms=settings.kafka_session_timeout_ms,
                   heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
                   fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms if answering
                   else settings.kafka_background_fetch_max_wait_ms), **extra}
