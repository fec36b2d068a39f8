"""A reply that cannot be delivered never holds up the binding consumer (contract.md, version 2).

The local broker creates a topic when it is first written, so a `reply.` topic that does not
exist cannot be staged through it; here the broker is a stand-in whose reply topics never
answer, and the real use case must still return promptly. No Redis: an ill-formed QueryBindings
is refused before the store is read."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from shared import kafka
from shared.envelope import seal
from shared.kafka import Received
from services.binding.usecases import BindingService


class BrokerWhoseReplyTopicsNeverAnswer:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, value: bytes, topic: str, **_: object) -> None:
        if topic.startswith("reply."):
            await asyncio.Event().wait()  # a topic that does not exist: metadata never comes
        self.published.append(topic)


def query(reply_to: str) -> Received:
    body = seal("QueryBindings", {"person_id": 12345}, event_id=str(uuid.uuid4()))
    return Received("binding.commands", 0, 7, b"k", body, {"reply_to": reply_to, "correlation_id": "c-1"})


async def test_a_reply_topic_that_never_answers_does_not_hold_up_the_command(monkeypatch, caplog):
    monkeypatch.setattr(kafka, "REPLY_TIMEOUT_SECONDS", 0.2)
    service = BindingService(None, BrokerWhoseReplyTopicsNeverAnswer(), today=lambda: None,  # type: ignore[arg-type]
                             name_key=b"k", payer_grace_days=7)
    with caplog.at_level(logging.WARNING, logger="shared.kafka"):
        await asyncio.wait_for(service.handle_command(query("reply.nobody-listens")), timeout=3)
    assert 'reply to "reply.nobody-listens" not delivered' in caplog.text


@pytest.mark.parametrize("asked", ["binding.events", "bureau.postings", "reply.", "reply.a b"])
async def test_a_reply_to_that_is_not_a_reply_topic_is_never_written_to(asked):
    broker = BrokerWhoseReplyTopicsNeverAnswer()
    service = BindingService(None, broker, today=lambda: None, name_key=b"k", payer_grace_days=7)  # type: ignore[arg-type]
    await asyncio.wait_for(service.handle_command(query(asked)), timeout=3)
    assert broker.published == []
