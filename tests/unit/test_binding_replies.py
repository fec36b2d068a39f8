"""Replies of the binding service: a reply that cannot be delivered never holds up the consumer
(contract.md, version 2), every reply is signed with binding's key, and a message not believed
(contract version 3) is answered on binding.events alone, a NOT_SIGNERS also where its signer may
read.

The local broker creates a topic when it is first written, so a `reply.` topic that does not
exist cannot be staged through it; here the broker is a stand-in whose reply topics never
answer (or that keeps what it is given), and the real use case must still return promptly. No
Redis: an ill-formed QueryBindings and a message not believed are answered before the store is read."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from shared import kafka
from shared.envelope import outcome_id, seal
from shared.kafka import Received
from shared.signing import PartnerKey, SigningKey, verify
from services.binding.usecases import BindingService

GATEWAY, NOTIFY = SigningKey.generate("gateway:k1"), SigningKey.generate("notify:k1")
BUREAU, BINDING = SigningKey.generate("bureau:610100:k1"), SigningKey.generate("binding:k1")
STRANGER = SigningKey.generate("gateway:k9")  # not in the operator's file
HIS = SigningKey.generate("his:H61010001:k1")  # an institution's: binding holds none of them
NOW = datetime.now(timezone.utc)


def _known(key: SigningKey, owner: str, region: str | None = None) -> PartnerKey:
    return PartnerKey(key.key_id, owner, base64.b64decode(key.public_b64), NOW - timedelta(days=1),
                      NOW + timedelta(days=1), region=region)


RING = {k.key_id: k for k in (_known(GATEWAY, "gateway"), _known(NOTIFY, "platform"),
                               _known(BUREAU, "bureau", "610100"), _known(BINDING, "platform"))}


class BrokerWhoseReplyTopicsNeverAnswer:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, value: bytes, topic: str, **_: object) -> None:
        if topic.startswith("reply."):
            await asyncio.Event().wait()  # a topic that does not exist: metadata never comes
        self.published.append(topic)


class KeepingBroker:
    """Keeps what it is given: (topic, value, headers)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    async def publish(self, value: bytes, topic: str, *, headers: dict[str, str] | None = None,
                      no_confirm: bool = False, **_: object):
        self.published.append((topic, value, headers or {}))
        if no_confirm:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return None

    def on(self, topic: str) -> list[tuple[bytes, dict[str, str]]]:
        return [(v, h) for t, v, h in self.published if t == topic]


def service(broker) -> BindingService:
    return BindingService(None, broker, today=lambda: None, name_key=b"k", payer_grace_days=7,  # type: ignore[arg-type]
                          keys=RING.get, signing_key=BINDING)


def message(event_type: str, payload: dict, reply_to: str, signer: SigningKey | None = GATEWAY,
            event_id: str | None = None) -> Received:
    value = seal(event_type, payload, event_id=event_id or str(uuid.uuid4()))
    headers = {"reply_to": reply_to, "correlation_id": "c-1"}
    if signer is not None:
        headers |= signer.headers("binding.commands", b"k", value)
    return Received("binding.commands", 0, 7, b"k", value, headers)


def query(reply_to: str, signer: SigningKey | None = GATEWAY) -> Received:
    return message("QueryBindings", {"person_id": 12345}, reply_to, signer)


async def test_a_reply_topic_that_never_answers_does_not_hold_up_the_command(monkeypatch, caplog):
    monkeypatch.setattr(kafka, "REPLY_TIMEOUT_SECONDS", 0.2)
    with caplog.at_level(logging.WARNING, logger="shared.kafka"):
        await asyncio.wait_for(service(BrokerWhoseReplyTopicsNeverAnswer()).handle_command(
            query("reply.nobody-listens")), timeout=3)
    assert 'reply to "reply.nobody-listens" not delivered' in caplog.text


@pytest.mark.parametrize("asked", ["binding.events", "bureau.postings", "reply.", "reply.a b"])
async def test_a_reply_to_that_is_not_a_reply_topic_is_never_written_to(asked):
    broker = BrokerWhoseReplyTopicsNeverAnswer()
    await asyncio.wait_for(service(broker).handle_command(query(asked)), timeout=3)
    assert broker.published == []


async def test_a_reply_is_signed_with_bindings_key_over_what_it_carries():
    broker = KeepingBroker()
    await service(broker).handle_command(query("reply.app"))
    [(value, headers)] = broker.on("reply.app")
    assert verify("reply.app", b"k", value, headers, RING.get, NOW).key_id == "binding:k1"
    assert headers["correlation_id"] == "c-1"


@pytest.mark.parametrize("signer, code", [(None, "UNSIGNED"), (STRANGER, "UNKNOWN_SIGNER"),
                                          (BUREAU, "NOT_SIGNERS"), (NOTIFY, "NOT_SIGNERS"), (HIS, "NOT_SIGNERS")])
async def test_a_query_not_believed_is_refused_on_binding_events(signer, code):
    broker = KeepingBroker()
    msg = query("reply.app", signer)
    await service(broker).handle_command(msg)
    [(value, _)] = broker.on("binding.events")
    event = json.loads(value)
    assert (event["event_type"], event["payload"]["reason_code"]) == ("BindingRejected", code)
    command_id = json.loads(msg.value)["event_id"]
    assert event["payload"]["command_id"] == command_id
    # its own event id: never the one an authentic command of this id is answered under
    assert event["event_id"] == outcome_id(command_id, f"BindingRejected/{code}") != outcome_id(
        command_id, "BindingRejected")


@pytest.mark.parametrize("signer", [None, STRANGER, BUREAU, HIS])
async def test_no_reply_to_a_sender_not_proven_or_that_cannot_read_it(signer):
    broker = KeepingBroker()
    # a HIS's own reply topic: its key is not verified here, so anyone could have named it
    await service(broker).handle_command(query("reply.H61010001.results", signer))
    assert broker.on("reply.H61010001.results") == []


async def test_a_bad_signature_is_refused_and_not_replied():
    broker = KeepingBroker()
    msg = query("reply.app")
    tampered = Received(msg.topic, msg.partition, msg.offset, msg.key, msg.value.replace(b"12345", b"12346"),
                        msg.headers)
    await service(broker).handle_command(tampered)
    [(value, _)] = broker.on("binding.events")
    assert json.loads(value)["payload"]["reason_code"] == "BAD_SIGNATURE"
    assert broker.on("reply.app") == []


async def test_notify_may_not_create_a_binding_and_hears_it_on_its_reply_topic():
    broker = KeepingBroker()
    await service(broker).handle_command(message("CreateBinding", {}, "reply.notify", NOTIFY))
    [(value, _)] = broker.on("binding.events")
    payload = json.loads(value)["payload"]
    assert payload["reason_code"] == "NOT_SIGNERS" and "notify:k1 may not send CreateBinding" in payload["message_en"]
    [(replied, headers)] = broker.on("reply.notify")
    assert replied == value and verify("reply.notify", b"k", replied, headers, RING.get, NOW).key_id == "binding:k1"
