"""Fixtures shared by the integration tests: one broker and one Redis per test session, real
services in their own processes, and a Kafka client watching the outcome topics."""

from __future__ import annotations

import os

import pytest

from shared.kafka import ensure_topics
from shared.state import make_redis
from shared import topics as t
from tooling.devstack import Infra, start_infra
from tests.support import Bus

ALL_TOPICS = [t.BUREAU_ACCOUNTS, t.BUREAU_INSTITUTIONS, t.BINDING_COMMANDS, t.BINDING_EVENTS, t.HIS_CHARGES, t.SETTLEMENT_RESULTS,
              "settlement.queries",
              *t.all_bureau_postings(), t.NOTIFY_DELIVERIES, "reply.tests", t.GATEWAY_AUDIT,
              t.HIS_RECONCILIATION, t.BUREAU_DISPUTES, t.SMS_UPLINK, t.GATEWAY_REVOCATIONS]
ALL_TOPICS += [t.dead_letter_topic(x) for x in (t.BUREAU_ACCOUNTS, t.BUREAU_INSTITUTIONS, t.BINDING_COMMANDS, t.HIS_CHARGES,
                                                 t.SETTLEMENT_RESULTS, t.BINDING_EVENTS,
                                                 t.HIS_RECONCILIATION, t.BUREAU_DISPUTES, t.SMS_UPLINK)]


@pytest.fixture(scope="session")
def infra(tmp_path_factory) -> Infra:
    infra = start_infra(tmp_path_factory.mktemp("infra"))
    # The partners' keys (tests sign as them) and the trust anchor, for this process and every
    # service, simulator or bench process it starts.
    os.environ.update(infra.keys.env())
    # The broker's security (TLS through stunnel on the local stack) for this process's own Kafka
    # clients that read it from the environment (shared.kafka_security.from_env, ServiceSettings).
    os.environ.update(infra.security.env())
    yield infra
    infra.stop()


@pytest.fixture(scope="session")
async def bus(infra: Infra) -> Bus:
    await ensure_topics(infra.settings(kafka_topic_partitions=3), ALL_TOPICS)
    bus = Bus(infra.kafka_bootstrap, infra.security)
    await bus.start(ALL_TOPICS)
    yield bus
    await bus.stop()


@pytest.fixture
async def redis(infra: Infra):
    client = make_redis(infra.redis_url)
    yield client
    await client.aclose()


def may_flush(infra: Infra) -> bool:
    """Only a Redis the tests started themselves is flushed; one named by REDIS_URL may be a
    developer's (or worse), so flushing it takes an explicit TESTS_MAY_FLUSH_REDIS=1."""
    return infra.origin != "environment" or os.environ.get("TESTS_MAY_FLUSH_REDIS") == "1"


@pytest.fixture
async def clean_redis(infra: Infra, redis):
    """The test session's Redis, emptied (FUNCTION libraries survive FLUSHDB)."""
    if not may_flush(infra):
        pytest.skip("REDIS_URL names a Redis the tests did not start; set TESTS_MAY_FLUSH_REDIS=1 to use it")
    await redis.flushdb()
    return redis
