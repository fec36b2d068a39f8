"""Request/reply bookkeeping of the gateway: a reply reaches the request waiting on its
correlation id; a late or unknown one is ignored; a request that timed out leaves nothing behind.
Settings: the token key is required and long enough; the reply topic is one the contract allows."""

import asyncio
import json

import pytest
from pydantic import ValidationError

from shared.kafka import is_reply_topic
from services.gateway.config import GatewaySettings, default_instance
from services.gateway.replies import PendingReplies, Requests, UnreadableReply

KEY = "/nonexistent/token_issuers.json"  # GATEWAY_TOKEN_ISSUERS; not read by these tests


class Broker:
    """Records what is published; `answer` says what the other service replies, if anything."""

    def __init__(self, pending: PendingReplies, answer: bytes | None) -> None:
        self.pending, self.answer, self.sent = pending, answer, []

    async def publish(self, value, topic, *, key, correlation_id, reply_to, headers=None):
        self.sent.append((topic, key, correlation_id, reply_to, json.loads(value)))
        if self.answer is not None:
            asyncio.get_running_loop().call_soon(self.pending.deliver, correlation_id, self.answer)


async def test_a_reply_reaches_the_request_waiting_on_its_correlation_id():
    pending = PendingReplies()
    broker = Broker(pending, b'{"event_type": "BindingsListed", "payload": {"bindings": []}}')
    answer = await Requests(broker, pending, "reply.gateway.a").ask(
        "binding.commands", "610102198503150018", "QueryBindings", {"person_id": "x"}, event_id="q-1",
        timeout_seconds=5)
    assert answer == {"event_type": "BindingsListed", "payload": {"bindings": []}}
    [(topic, key, correlation_id, reply_to, sent)] = broker.sent
    assert (topic, key, reply_to) == ("binding.commands", b"610102198503150018", "reply.gateway.a")
    assert sent["event_id"] == "q-1" and sent["event_type"] == "QueryBindings" and correlation_id
    assert len(pending) == 0


async def test_a_request_past_its_timeout_gets_none_and_leaves_nothing_behind():
    pending = PendingReplies()
    broker = Broker(pending, None)
    assert await Requests(broker, pending, "reply.gateway.a").ask(
        "binding.commands", "k", "CreateBinding", {}, event_id="c-1", timeout_seconds=0.01) is None
    assert len(pending) == 0
    late = broker.sent[0][2]
    assert pending.deliver(late, b"{}") is False  # the late reply is ignored


async def test_a_reply_nobody_waits_for_is_ignored():
    pending = PendingReplies()
    waiting = pending.expect("mine")
    assert pending.deliver("someone-else", b"{}") is False and pending.deliver(None, b"{}") is False
    assert not waiting.done()
    assert pending.deliver("mine", b"{}") is True and pending.deliver("mine", b"{}") is False


async def test_an_answer_that_is_not_an_envelope_is_a_defect():
    pending = PendingReplies()
    with pytest.raises(UnreadableReply):
        await Requests(Broker(pending, b"not json"), pending, "reply.gateway.a").ask(
            "t", "k", "QueryBindings", {}, event_id="q", timeout_seconds=5)


def test_the_token_issuers_file_is_required(monkeypatch):
    monkeypatch.delenv("GATEWAY_TOKEN_ISSUERS", raising=False)
    with pytest.raises(ValidationError):
        GatewaySettings()
    assert GatewaySettings(gateway_token_issuers=KEY).gateway_command_timeout_ms == 5000


def test_the_reply_topic_is_one_the_contract_allows():
    assert is_reply_topic(GatewaySettings(gateway_token_issuers=KEY).reply_topic)
    assert is_reply_topic(f"reply.gateway.{default_instance()}")
    with pytest.raises(ValidationError):
        GatewaySettings(gateway_token_issuers=KEY, gateway_instance="a/b")
    with pytest.raises(ValidationError):
        GatewaySettings(gateway_token_issuers=KEY, gateway_instance="x" * 93)
