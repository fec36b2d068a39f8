"""Request/reply over Kafka: the gateway's own reply topic, and the requests waiting on it.

A request registers its correlation id before it is published (the answer may come back before
the publish call returns), waits a bounded time, and forgets the id whatever happened, so a
request that timed out leaves nothing behind. A reply whose correlation id nobody waits for (it
came too late, or from another gateway's past) is ignored."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from faststream.kafka import KafkaBroker

from shared import envelope
from shared.logs import shown
from shared.signing import SigningKey

log = logging.getLogger("gateway.replies")


class PendingReplies:
    """Correlation id -> the future its request awaits."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[bytes]] = {}

    def expect(self, correlation_id: str) -> asyncio.Future[bytes]:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = future
        return future

    def forget(self, correlation_id: str) -> None:
        self._waiting.pop(correlation_id, None)

    def deliver(self, correlation_id: str | None, value: bytes) -> bool:
        """Hand a reply to the request waiting on its correlation id; False when none is."""
        future = self._waiting.pop(correlation_id or "", None)
        if future is None or future.done():
            log.debug("reply %s ignored: nobody waits for it", shown(correlation_id or ""))
            return False
        future.set_result(value)
        return True

    def __len__(self) -> int:
        return len(self._waiting)


class Requests:
    """Publishes a request with `reply_to` and `correlation_id` headers and waits for its answer.
    What it puts on a partner topic (binding.commands, sms.uplink) carries the gateway's signature
    (contract version 3: shared/signing.py, key SIGNING_KEY_ID), so `requested_by`, `channel` and
    `clerk_id` are believed as the platform's word."""

    def __init__(self, broker: KafkaBroker, pending: PendingReplies, reply_topic: str,
                 signing: SigningKey | None = None) -> None:
        self._broker, self._pending, self._reply_topic = broker, pending, reply_topic
        self._signing = signing

    async def publish(self, value: bytes, topic: str, key: str, **options: Any) -> None:
        """One message, signed over exactly the bytes sent (topic, key, value) when the gateway has a key."""
        raw_key = key.encode()
        headers = self._signing.headers(topic, raw_key, value) if self._signing is not None else None
        await self._broker.publish(value, topic, key=raw_key, headers=headers, **options)

    async def ask(self, topic: str, key: str, event_type: str, payload: dict[str, Any], *, event_id: str,
                  timeout_seconds: float) -> dict[str, Any] | None:
        """The answer's envelope as a dict, or None when none came within the timeout (the
        request may still be, or have been, answered: a command's outcome can be asked later)."""
        correlation_id = str(uuid.uuid4())
        answer = self._pending.expect(correlation_id)
        try:
            async with asyncio.timeout(timeout_seconds):
                await self.publish(envelope.seal(event_type, payload, event_id=event_id), topic, key,
                                   correlation_id=correlation_id, reply_to=self._reply_topic)
                raw = await answer
        except TimeoutError:
            return None
        finally:
            self._pending.forget(correlation_id)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("payload"), dict):
            raise UnreadableReply(f"reply to {event_type} is not an envelope")
        return body


class UnreadableReply(Exception):
    """A service answered with something that is not an envelope: a defect, answered 502."""
