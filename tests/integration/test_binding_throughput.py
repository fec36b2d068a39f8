"""How many CreateBinding commands a second one binding service answers, through the real
broker and Redis (issue 12 asks for 1,000/s; this prints the figure and guards a floor)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from shared import topics as t
from shared.bureau import PERSON_REGISTERED
from shared.envelope import seal
from shared.state import person_bucket
from tests.integration.test_binding_service import NAME_KEY, Desk
from tests.support import ServiceProcess, command, new_person_id, payload_of

pytestmark = pytest.mark.integration

BINDINGS = 300


@pytest.fixture(scope="module")
def binding_service(infra, tmp_path_factory):
    service = ServiceProcess("binding", {**infra.env(), "LOG_LEVEL": "INFO", "NAME_DIGEST_KEY": NAME_KEY},
                             tmp_path_factory.mktemp("binding-throughput") / "binding.log")
    service.start()
    yield service
    service.stop()


async def test_binding_commands_per_second(bus, clean_redis, binding_service):
    desk = Desk(bus, clean_redis)
    pairs = []
    for i in range(BINDINGS):
        grantor = {"person_id": new_person_id(), "name": f"授权{i}", "region": "610100", "scheme": "employee",
                   "employer": "某公司", "balance": "100.00", "phone": "13812345678"}
        child = {"person_id": new_person_id("610300"), "name": f"使用{i}", "region": "610300", "scheme": "resident",
                 "community": "某社区", "phone": "13912345678"}
        for p in (grantor, child):
            await bus.send(t.BUREAU_ACCOUNTS, seal(PERSON_REGISTERED, p), key=p["person_id"])
        pairs.append((grantor, child))
    last = pairs[-1][1]["person_id"]
    async with asyncio.timeout(60):
        while not await clean_redis.hexists(f"bnd:person:{person_bucket(last)}", last):
            await asyncio.sleep(0.05)

    ids = [str(uuid.uuid4()) for _ in pairs]
    started = time.monotonic()
    await asyncio.gather(*(bus.send(t.BINDING_COMMANDS, command("CreateBinding", desk.form(g, c, relation="child"),
                                                                cmd_id), key=c["person_id"])
                           for (g, c), cmd_id in zip(pairs, ids)))
    wanted = set(ids)
    outcomes = await bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: payload_of(r).get("command_id") in wanted, count=BINDINGS, timeout=120)
    elapsed = time.monotonic() - started
    print(f"\n{BINDINGS} CreateBinding answered in {elapsed:.2f} s: {BINDINGS / elapsed:.0f} commands/s")
    assert {r.value.split(b'"event_type":"')[1].split(b'"')[0] for r in outcomes} == {b"BindingCreated"}
    assert BINDINGS / elapsed > 20
