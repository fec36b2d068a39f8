"""Every service answers /healthz, /readyz and /metrics on its own HTTP_PORT, as production runs
it: real processes, the real broker and Redis. The counters show a charge that settles and one
that is refused with their labels and amounts; /readyz turns 503 naming redis when the service's
Redis goes away, and the consumer lag shows the records it cannot work off meanwhile."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared import topics as t
from shared.envelope import seal
from tooling.devstack import LocalRedis, free_port
from tests.support import (ServiceProcess, binding_form, body, charge_submitted, command, eventually,
                           institution_registered, payload_of, person_registered, wait_registered)

pytestmark = pytest.mark.integration

SERVICES = ("binding", "settlement", "notify")


@contextmanager
def serving(names: tuple[str, ...], env: dict[str, str], log_dir: Path) -> Iterator[dict[str, tuple[ServiceProcess, str]]]:
    """Like tests.support.running, with an HTTP_PORT of its own for each service: name ->
    (process, base URL)."""
    started: dict[str, tuple[ServiceProcess, str]] = {}
    try:
        for name in names:
            port = free_port()
            process = ServiceProcess(name, {**env, "HTTP_PORT": str(port)}, log_dir / f"{name}.log")
            started[name] = (process, f"http://127.0.0.1:{port}")
            process.start()
        yield started
    finally:
        for process, _ in started.values():
            process.stop()


@pytest.fixture(scope="module")
def services(infra, tmp_path_factory):
    env = {**infra.env(), "LOG_LEVEL": "INFO", "LOG_FORMAT": "json", "QUIET_HOURS": "00:00-00:00"}
    with serving(SERVICES, env, tmp_path_factory.mktemp("observability")) as started:
        yield {name: url for name, (_, url) in started.items()}


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


Samples = dict[tuple[str, frozenset], float]


async def scrape(http: httpx.AsyncClient, url: str) -> Samples:
    answer = await http.get(f"{url}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def lag(samples: Samples) -> dict[tuple[str, str], float]:
    return {(dict(labels)["topic"], dict(labels)["group"]): v for (name, labels), v in samples.items()
            if name == "fma_consumer_lag"}


async def test_every_service_is_alive_and_ready(services, http):
    for name, url in services.items():
        alive = await http.get(f"{url}/healthz")
        assert (alive.status_code, alive.json()) == (200, {"status": "alive", "service": name})
        ready = await http.get(f"{url}/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
        assert set(ready.json()["checks"]) == {"broker", "redis", "consumers", "projections"}
        assert all(check["ok"] for check in ready.json()["checks"].values())


async def test_the_counters_show_a_settled_and_a_refused_charge(services, http, bus, clean_redis):
    before = {name: await scrape(http, url) for name, url in services.items()}
    hospital = f"H610100-OBS-{uuid.uuid4().hex[:6]}"
    await bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", institution_registered(hospital, "610100")),
                   key=hospital)
    patient = person_registered("610100", balance="10.00")
    grantor = person_registered("610300", balance="50.00")  # Baoji pays for a charge in Xi'an
    for p in (patient, grantor):
        await bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
    await wait_registered(clean_redis, [patient["person_id"], grantor["person_id"]])
    await eventually(lambda: clean_redis.hget("stl:inst", hospital), 30, "the hospital registered")

    command_id = str(uuid.uuid4())
    await bus.send(t.BINDING_COMMANDS, command("CreateBinding", binding_form(grantor, patient, 1), command_id),
                   key=patient["person_id"])
    [created] = await bus.watchers[t.BINDING_EVENTS].wait_for(lambda r: payload_of(r).get("command_id") == command_id)
    assert body(created)["event_type"] == "BindingCreated", payload_of(created)

    settles = charge_submitted(patient, hospital, "610100", borne_fen=3_000)
    fraud = charge_submitted(patient, hospital, "610100", borne_fen=500) | {"code_holder_id": grantor["person_id"]}
    for charge in (settles, fraud):
        await bus.send(t.HIS_CHARGES, seal("ChargeSubmitted", charge), key=charge["charge_id"])
    results = bus.watchers[t.SETTLEMENT_RESULTS]
    [settled] = await results.wait_for(lambda r: payload_of(r).get("charge_id") == settles["charge_id"]
                                       and body(r)["event_type"] == "ChargeSettled")
    assert [(x["source"], x["amount"]) for x in payload_of(settled)["lines"]] == [
        ("own", "10.00"), ("grantor", "20.00"), ("cash", "0.00")]
    [refused] = await results.wait_for(lambda r: payload_of(r).get("charge_id") == fraud["charge_id"]
                                       and body(r)["event_type"] == "ChargeRejected")
    assert payload_of(refused)["reason_code"] == "IDENTITY_MISMATCH"

    def grew(name: str, metric: str, **labels: str):
        async def delta() -> float:
            return value(await scrape(http, services[name]), metric, **labels) - value(before[name], metric, **labels)
        return delta

    expected = [("settlement", "fma_charges_total", {"outcome": "settled", "reason": ""}, 1),
                ("settlement", "fma_charges_total", {"outcome": "refused", "reason": "IDENTITY_MISMATCH"}, 1),
                ("settlement", "fma_paid_fen_total", {"source": "own"}, 1_000),
                ("settlement", "fma_paid_fen_total", {"source": "grantor"}, 2_000),
                ("settlement", "fma_paid_fen_total", {"source": "cash"}, 0),
                ("settlement", "fma_cross_region_payments_total", {}, 1),
                ("binding", "fma_binding_commands_total", {"outcome": "created", "reason": ""}, 1)]
    for name, metric, labels, want in expected:
        await eventually(_equal(grew(name, metric, **labels), want), 30, f"{name} {metric}{labels} +{want}")

    # FastStream's own middleware counts what each subscriber handled; the outcomes published a
    # batch at a time (settled and refused: two on settlement.results) are counted by the service.
    scraped = await scrape(http, services["settlement"])
    handled = [v for (name, labels), v in scraped.items()
               if name == "faststream_received_processed_messages_total" and ("handler", t.HIS_CHARGES) in labels]
    published = [v for (name, labels), v in scraped.items()
                 if name == "fma_published_messages_total" and ("topic", t.SETTLEMENT_RESULTS) in labels]
    assert sum(handled) >= 1 and sum(published) >= 2, sorted({name for name, _ in scraped})

    # The grantor hears of the binding and of the payment: those SMS are counted as sent.
    deliveries = bus.watchers[t.NOTIFY_DELIVERIES]
    ours = {body(created)["event_id"], body(settled)["event_id"]}
    sent = await deliveries.wait_for(lambda r: payload_of(r).get("source_event_id") in ours
                                     and body(r)["event_type"] == "SmsSent", count=2)
    await eventually(_at_least(grew("notify", "fma_sms_total", outcome="sent"), len(sent)), 30,
                     f"notify counts {len(sent)} SMS sent")

    # Everything is worked off: no record behind on any subscription, every subscription shown.
    topics = {"binding": {t.BINDING_COMMANDS, t.BUREAU_ACCOUNTS, t.BUREAU_DISPUTES, t.SETTLEMENT_RESULTS},
              "settlement": {t.HIS_CHARGES, t.BUREAU_ACCOUNTS, t.BUREAU_INSTITUTIONS, "settlement.queries",
                             t.BINDING_EVENTS, t.HIS_RECONCILIATION},
              "notify": {t.SETTLEMENT_RESULTS, t.BINDING_EVENTS, t.BUREAU_ACCOUNTS, t.BUREAU_INSTITUTIONS, t.SMS_UPLINK}}
    shown = {}
    for name, url in services.items():
        async def caught_up() -> dict | None:
            found = lag(await scrape(http, url))
            return found if found and not any(found.values()) else None
        shown[name] = await eventually(caught_up, 30, f"{name}: no consumer lag")
        assert {topic for topic, _ in shown[name]} == topics[name]
    # notify reads binding.events twice (answers, projection): one series per consumer group
    assert sorted(group for topic, group in shown["notify"] if topic == t.BINDING_EVENTS) == [
        "notify.binding.events", "notify.projection.binding.events"]


def _equal(read, want):
    async def check():
        return (await read()) == want
    return check


def _at_least(read, want):
    async def check():
        return (await read()) >= want
    return check


async def test_readyz_names_redis_when_it_goes_away_and_lag_shows_what_waits(infra, bus, http, tmp_path):
    """A notify of its own (own consumer groups, own Redis): the Redis is stopped under it."""
    (tmp_path / "redis").mkdir()
    redis = LocalRedis(free_port(), tmp_path / "redis")
    redis.start()
    env = {**infra.env(), "REDIS_URL": redis.url, "NOTIFY_GROUP_ID": f"notify-obs-{uuid.uuid4().hex[:8]}",
           "QUIET_HOURS": "00:00-00:00"}
    try:
        with serving(("notify",), env, tmp_path) as started:
            url = started["notify"][1]
            assert (await http.get(f"{url}/readyz")).status_code == 200

            redis.stop()

            async def not_ready() -> dict | None:
                answer = await http.get(f"{url}/readyz")
                return answer.json() if answer.status_code == 503 else None
            report = await eventually(not_ready, 30, "readyz 503")
            assert report["status"] == "not ready"
            assert report["checks"]["redis"]["ok"] is False, report
            assert report["checks"]["broker"]["ok"] is True, report
            assert (await http.get(f"{url}/healthz")).status_code == 200  # alive all the same

            # Registrations keep coming; notify cannot record them without its Redis, so its
            # bureau.accounts consumer stays where it is and falls behind.
            async def behind() -> float:
                p = person_registered()
                await bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
                return sum(v for (topic, _), v in lag(await scrape(http, url)).items() if topic == t.BUREAU_ACCOUNTS)
            assert await eventually(behind, 30, "bureau.accounts lag above 0") > 0

            redis.start()
            await eventually(lambda: _status(http, f"{url}/readyz", 200), 30, "readyz 200 again")

            async def worked_off() -> bool:
                shown = lag(await scrape(http, url))
                return bool(shown) and not any(shown.values())
            await eventually(worked_off, 60, "lag back to 0")
    finally:
        redis.stop()


async def _status(http: httpx.AsyncClient, url: str, status: int) -> bool:
    return (await http.get(url)).status_code == status
