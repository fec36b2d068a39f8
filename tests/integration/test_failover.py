"""Losing a Redis host (issue 23), through the real broker and real Valkey processes: settlement on a
replicated primary (tooling/replicaset.py: a primary, a replica, a sentinel), found through the
sentinel, acknowledging a batch only once the replica has its writes (shared/durability.py).

- The replica lost: nothing is acknowledged (and /readyz says why) until a replica is back; then
  every charge is answered once and the books agree.
- The primary's host lost in the middle of a stream (SIGKILL, its data directory deleted): the
  sentinel promotes the replica, settlement follows it by itself and goes on once the lost host
  is replaced (an empty server, now a replica); every charge gets exactly one outcome, every
  published outcome is in the new primary's records, and every account's opening balance less
  its debits is its balance, to the fen.
- A failover while a quote is held and a monthly limit is near its cap: the hold and the month's
  usage are on the new primary, the held split is posted, and the cap still holds.
- Binding likewise: without its replica a command is not answered until one is back.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
import uuid
from collections import defaultdict
from datetime import timedelta

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

from shared import topics as t
from shared.envelope import seal
from shared.state import connect_redis, person_bucket
from tests.ledger_calls import bind
from tests.partners.hospital import HOSPITAL, REGION, Counter, Family
from tests.support import (binding_form, body, charge_submitted, china_today, command, eventually, payload_of,
                           person_registered)
from tooling.replicaset import SERVICE, LocalReplicaSet

pytestmark = pytest.mark.integration
WAIT_MS = 500  # REDIS_REPLICA_WAIT_MS: how long a batch waits for the replica before it is retried


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    replicas = LocalReplicaSet(tmp_path_factory.mktemp("replicated")).start()
    yield replicas
    replicas.stop()


@pytest.fixture(scope="module")
def services(infra, platform_pool, replicated):
    run = uuid.uuid4().hex[:8]
    env = {**infra.env(), **replicated.env(), "LOG_LEVEL": "INFO", "REDIS_REPLICA_WAIT_MS": str(WAIT_MS),
           "SETTLEMENT_GROUP_ID": f"failover-settlement-{run}", "BINDING_GROUP_ID": f"failover-binding-{run}"}
    with platform_pool.alone(("binding", "settlement"), env) as services:
        for service in services.values():
            service.readyz = f"http://127.0.0.1:{service.http_port}/readyz"
        yield services


@pytest.fixture
async def primary(replicated):
    client = connect_redis("redis://127.0.0.1:6379/0", replicated.sentinel_hosts, SERVICE)
    yield client
    await client.aclose()


@pytest.fixture
async def hospital(bus, primary, services):
    counter = Counter(bus, primary)
    await counter.hospital()
    return counter


def readiness(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as refused:  # 503: not ready, with the checks
        return json.loads(refused.read())


async def person(hospital: Family, primary, balance: str = "0.00", scheme: str = "employee") -> dict:
    """Registered by the bureau, once settlement has it (binding does not run here)."""
    p = person_registered(REGION, scheme=scheme, balance=balance)
    await hospital.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
    await eventually(lambda: primary.hexists(f"stl:acct:{person_bucket(p['person_id'])}", p["person_id"]), 30,
                     "the person registered")
    return p


async def send_charge(hospital: Family, patient: dict, borne_fen: int) -> str:
    """A charge sent, its outcome not waited for."""
    charge = charge_submitted(patient, HOSPITAL, REGION, borne_fen)
    await hospital.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=patient["person_id"])
    return charge["charge_id"]


async def reachable(client) -> None:
    """Until the client reaches the primary the sentinel names (for a moment after a promotion
    the sentinel names none)."""
    async def answers() -> bool:
        try:
            return bool(await client.ping())
        except (RedisConnectionError, RedisTimeout):
            return False
    await eventually(answers, 30, "the primary answering through the sentinel")


def outcomes_of(bus, charge_ids: set[str]) -> dict[str, set[bytes]]:
    """Each charge's outcomes as published (keyed by charge id: only those records are parsed)."""
    found: dict[str, set[bytes]] = defaultdict(set)
    keys = {c.encode() for c in charge_ids}
    for r in bus.watchers[t.SETTLEMENT_RESULTS].matching(lambda r: r.key in keys):
        if payload_of(r).get("charge_id") in charge_ids:
            found[payload_of(r)["charge_id"]].add(r.value)
    return found


async def balance(client, person_id: str) -> int:
    """Straight from the primary's account entry (the sentinels' primary of now)."""
    raw = await client.hget(f"stl:acct:{person_bucket(person_id)}", person_id)
    return int(raw.split(b"|")[0])


async def test_without_its_replica_settlement_acknowledges_nothing_until_one_is_back(hospital, replicated, services,
                                                                                       bus, primary):
    patient = await person(hospital, primary, "100.00")
    await hospital.charge(patient, 100)                 # acknowledged: the replica has it
    replica = replicated.replica()
    replica.process.kill()
    replica.process.wait()

    charge_id = await send_charge(hospital, patient, 200)
    url = services["settlement"].readyz
    await eventually(lambda: not readiness(url)["checks"].get("replicas", {"ok": True})["ok"], 30,
                     "settlement's /readyz saying the replica is missing")
    settled = lambda r: body(r)["event_type"] == "ChargeSettled" and payload_of(r)["charge_id"] == charge_id  # noqa: E731
    with pytest.raises(TimeoutError):                   # six of its waits, and not acknowledged
        await bus.watchers[t.SETTLEMENT_RESULTS].wait_for(settled, timeout=6 * WAIT_MS / 1000)

    await asyncio.to_thread(replicated.rejoin, replica, replicated.primary())   # back, on its own disk
    [outcome] = await bus.watchers[t.SETTLEMENT_RESULTS].wait_for(settled, timeout=60)
    assert [x["amount"] for x in payload_of(outcome)["lines"] if x["source"] == "own"] == ["2.00"]
    assert await balance(primary, patient["person_id"]) == 100_00 - 100 - 200
    await eventually(lambda: readiness(url)["status"] == "ready", 30, "settlement ready again")


async def test_the_primary_host_dying_mid_stream_loses_no_acknowledged_settlement(hospital, replicated, services,
                                                                                  bus, primary):
    people = [await person(hospital, primary, "500.00") for _ in range(10)]
    charge_ids: dict[str, str] = {}                      # charge -> patient

    async def stream(count: int) -> list[str]:
        sent = []
        for _ in range(count):
            patient = people[len(charge_ids) % len(people)]
            sent.append(await send_charge(hospital, patient, 100))
            charge_ids[sent[-1]] = patient["person_id"]
        return sent

    first = await stream(800)
    # (all of them: a batch that waits for the cut-off replica below holds up the ones after it)
    await eventually(lambda: len(outcomes_of(bus, set(first))) == len(first), 120, "the stream's first part answered",
                     interval=0.5)
    # The replica falls behind: stopped, and cut off by the primary (what was sent before is in its
    # socket's buffer and reaches it when it runs again; nothing after). So the primary holds
    # writes the replica lacks: had settlement acknowledged them, the failover below would lose
    # acknowledged settlements.
    replica = replicated.replica()
    replica.process.send_signal(signal.SIGSTOP)
    replicated.cut_off_replicas()
    behind = await stream(400)

    async def written_on_the_primary() -> bool:
        return any([await primary.hexists(f"stl:charge:{HOSPITAL}:{c}", "digest") for c in behind])
    await eventually(written_on_the_primary, 60, "charges the replica lacks written on the primary")
    old = replicated.kill_primary(lose_disk=True)        # the primary's host dies, disk and all
    replica.process.send_signal(signal.SIGCONT)
    await stream(800)
    promoted = await asyncio.to_thread(replicated.wait_failover, old)
    assert promoted is replica
    # The promoted primary has no replica: settlement acknowledges nothing until the lost host is
    # replaced (a new, empty one, a replica of the new primary), as it must.
    await asyncio.to_thread(replicated.rejoin, old, promoted)

    await reachable(primary)
    wanted = set(charge_ids)
    await eventually(lambda: len(outcomes_of(bus, wanted)) == len(wanted), 120,
                     f"an outcome for each of the {len(wanted)} charges", interval=0.5)
    found = outcomes_of(bus, wanted)
    assert all(len(values) == 1 for values in found.values()), "a charge answered twice, differently"
    outcomes = {c: json.loads(next(iter(v))) for c, v in found.items()}
    refused = [o["payload"] for o in outcomes.values() if o["event_type"] != "ChargeSettled"]
    assert not refused, refused[:3]

    # every published outcome is in the new primary's records: nothing acknowledged was lost
    for charge_id in wanted:
        assert await primary.hexists(f"stl:charge:{HOSPITAL}:{charge_id}", "digest"), charge_id
    # each account: opening balance less its debits is its balance, to the fen
    debits: dict[str, int] = defaultdict(int)
    for charge_id, o in outcomes.items():
        debits[charge_ids[charge_id]] += sum(int(x["amount"].replace(".", "")) for x in o["payload"]["lines"]
                                             if x["source"] == "own")
    for p in people:
        assert await balance(primary, p["person_id"]) == 500_00 - debits[p["person_id"]], p["person_id"]
    assert sum(debits.values()) == len(charge_ids) * 100 == 2_000 * 100


async def test_a_held_quote_and_a_limits_month_survive_a_failover(hospital, replicated, services, bus, primary):
    patient = await person(hospital, primary, scheme="resident")
    grantor = await person(hospital, primary, "1000.00")
    today = china_today()
    days = [int(d.strftime("%Y%m%d")) for d in (today - timedelta(days=1), today + timedelta(days=30))]
    binding_id = await bind(primary, patient["person_id"], grantor["person_id"], 1, REGION, start=days[0],
                            end=days[1], limit=100_00)        # the payer index as binding writes it
    month = today.strftime("%Y%m")
    await hospital.settle(hospital.new_charge(patient, 90_00))
    held = hospital.new_charge(patient, 8_00)
    quote_id = (await hospital.quote(held))["payload"]["quote_id"]
    assert int(await primary.hget(f"stl:used:{binding_id}", month)) == 98_00   # paid 90.00, holds 8.00

    old = replicated.kill_primary(lose_disk=True)
    promoted = await asyncio.to_thread(replicated.wait_failover, old)
    await asyncio.to_thread(replicated.rejoin, old, promoted)

    after = connect_redis("redis://127.0.0.1:6379/0", replicated.sentinel_hosts, SERVICE)
    try:
        await reachable(after)
        assert int(await after.hget(f"stl:used:{binding_id}", month)) == 98_00
        assert (await after.hget(f"stl:quote:{HOSPITAL}:{held['charge_id']}", "state")) == b"held"
        posted = await hospital.settle(held, quote_id=quote_id)
        assert [(x["source"], x["amount"]) for x in posted["payload"]["lines"] if x["amount"] != "0.00"] == [
            ("grantor", "8.00")]
        over = await hospital.settle(hospital.new_charge(patient, 5_00))   # 2.00 left under the cap
        assert [(x["source"], x["amount"]) for x in over["payload"]["lines"] if x["amount"] != "0.00"] == [
            ("grantor", "2.00"), ("cash", "3.00")]
        assert int(await after.hget(f"stl:used:{binding_id}", month)) == 100_00
        assert await balance(after, grantor["person_id"]) == 1000_00 - 90_00 - 8_00 - 2_00
    finally:
        await after.aclose()


async def test_without_its_replica_binding_answers_no_command_until_one_is_back(hospital, replicated, services,
                                                                                 bus, primary):
    grantor, beneficiary = await hospital.person(balance="10.00"), await hospital.person(scheme="resident")
    replica = replicated.replica()
    replica.process.kill()
    replica.process.wait()

    command_id = str(uuid.uuid4())
    form = binding_form(grantor, beneficiary, 1)
    await bus.send(t.BINDING_COMMANDS, command("CreateBinding", form, command_id), key=beneficiary["person_id"])
    url = services["binding"].readyz
    await eventually(lambda: not readiness(url)["checks"].get("replicas", {"ok": True})["ok"], 30,
                     "binding's /readyz saying the replica is missing")
    answered = lambda r: payload_of(r).get("command_id") == command_id  # noqa: E731
    with pytest.raises(TimeoutError):                   # six of its waits, and not answered
        await bus.watchers[t.BINDING_EVENTS].wait_for(answered, timeout=6 * WAIT_MS / 1000)

    await asyncio.to_thread(replicated.rejoin, replica, replicated.primary())
    [created] = await bus.watchers[t.BINDING_EVENTS].wait_for(answered, timeout=60)
    assert body(created)["event_type"] == "BindingCreated", payload_of(created)
    await reachable(primary)
    assert await primary.hlen(f"bnd:pay:{beneficiary['person_id']}") == 1   # the payer index, on the primary
