"""The broker's TLS for real (contract version 3, "The broker knows every client"): the local
stack serves Kafka only through stunnel, with a CA made at start; with mutual TLS it also refuses
a client without a certificate of that CA. Services, the tests' clients and the simulator all
come in this way (tooling/devstack.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from shared.kafka import ensure_topics, make_broker
from shared.kafka_security import KafkaSecurity, client_kwargs
from tooling.devstack import DevCertificates, Infra, start_local
from tests.support import Watcher

pytestmark = pytest.mark.integration


async def refused(bootstrap: str, security: KafkaSecurity) -> bool:
    """True when a producer with this security cannot even start (the handshake fails)."""
    producer = AIOKafkaProducer(**client_kwargs(bootstrap, security, request_timeout_ms=5000))
    try:
        await asyncio.wait_for(producer.start(), 30)
        return False
    except (KafkaConnectionError, asyncio.TimeoutError):
        return True
    finally:
        await producer.stop()


async def round_trip(stack: Infra) -> None:
    """A service's broker (make_broker) publishes; a test's Watcher reads it back."""
    topic = f"test.tls.{uuid.uuid4().hex[:8]}"
    await ensure_topics(stack.settings(kafka_topic_partitions=1), [topic])
    broker = make_broker(stack.settings(), client_id="tls-test")
    await broker.start()
    watcher = Watcher(stack.kafka_bootstrap, [topic], stack.security)
    await watcher.start()
    try:
        await broker.publish(b"through TLS", topic, key=b"k")
        [record] = await watcher.wait_for(lambda r: r.value == b"through TLS", timeout=30)
        assert record.key == b"k"
    finally:
        await watcher.stop()
        await broker.stop()


async def test_the_session_broker_is_reached_through_tls_only(infra, bus):
    if infra.origin != "local binaries":
        pytest.skip(f"the broker comes from {infra.origin}: its security is the operator's")
    assert infra.security.protocol == "SSL" and infra.security.ssl_cafile.exists()
    assert infra.env()["KAFKA_SECURITY_PROTOCOL"] == "SSL"
    assert infra.env()["KAFKA_SSL_CAFILE"] == str(infra.security.ssl_cafile)
    await round_trip(infra)
    # a client that speaks plaintext to it, or trusts another CA, gets nowhere
    assert await refused(infra.kafka_bootstrap, KafkaSecurity())
    other_ca = DevCertificates.create(infra.security.ssl_cafile.parent.parent / f"other-{uuid.uuid4().hex[:6]}").ca
    assert await refused(infra.kafka_bootstrap, KafkaSecurity(protocol="SSL", ssl_cafile=other_ca))


@pytest.fixture(scope="module")
def mutual_stack(tmp_path_factory) -> Infra:
    stack = start_local(tmp_path_factory.mktemp("mtls-stack"), mutual_tls=True)
    yield stack
    stack.stop()


async def test_with_mutual_tls_a_client_shows_a_certificate_of_the_ca(mutual_stack):
    security = mutual_stack.security
    assert security.ssl_certfile and security.ssl_keyfile
    assert mutual_stack.env()["KAFKA_SSL_CERTFILE"] == str(security.ssl_certfile)
    await round_trip(mutual_stack)
    without_certificate = KafkaSecurity(protocol="SSL", ssl_cafile=security.ssl_cafile)
    assert await refused(mutual_stack.kafka_bootstrap, without_certificate)
    # a certificate of another CA is no better than none
    stranger = DevCertificates.create(security.ssl_cafile.parent.parent / "stranger")
    assert await refused(mutual_stack.kafka_bootstrap, KafkaSecurity(
        protocol="SSL", ssl_cafile=security.ssl_cafile, ssl_certfile=stranger.client_cert,
        ssl_keyfile=stranger.client_key))
