"""Transient failures are retried in place with back-off and show in the log once per outage
(shared.kafka.Outage), against a real Redis that goes away and comes back."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from redis.asyncio import Redis

from shared.kafka import Outage
from tooling.devstack import LocalRedis, free_port
from tests.support import eventually

pytestmark = pytest.mark.integration


async def test_a_redis_outage_is_retried_with_back_off_and_logged_once(tmp_path, caplog):
    server = LocalRedis(free_port(), tmp_path)
    server.start()
    client = Redis.from_url(server.url, socket_connect_timeout=0.5)
    attempts = 0

    async def work() -> bool:
        nonlocal attempts
        attempts += 1
        return await client.set("outage:probe", "1")

    try:
        await client.ping()
        server.stop()
        outage = Outage("probe", first_delay=0.05, longest_delay=0.4)
        caplog.set_level(logging.INFO, logger="shared.kafka")
        retrying = asyncio.create_task(outage.retrying(work))
        began = time.monotonic()
        await eventually(lambda: attempts >= 6, 30, "six attempts while Redis is down")
        down_for = time.monotonic() - began
        server.start()
        assert await asyncio.wait_for(retrying, 30) is True
    finally:
        await client.aclose()
        server.stop()

    # Back-off, not a hot loop: six attempts took at least 0.05+0.1+0.2+0.4+0.4 s.
    assert down_for >= 1.1
    records = [r for r in caplog.records if "probe" in r.getMessage()]
    assert [r.levelname for r in records] == ["ERROR", "WARNING"], [r.getMessage() for r in records]
    assert "unreachable" in records[0].getMessage() and "back after" in records[1].getMessage()


async def test_a_defect_is_not_retried(tmp_path):
    calls = 0

    async def defect() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError):
        await Outage("defect").retrying(defect)
    assert calls == 1
