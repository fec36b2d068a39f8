"""`make bench`: settlement throughput through the real broker and Redis, Redis bytes per person,
and what `appendfsync always` costs against `everysec`.

Prints figures; asserts nothing (speed is measured here, never in tests). Sizes by env:
BENCH_CHARGES (default 20000), BENCH_PEOPLE (default 100000), BENCH_FSYNC_CALLS (default 20000).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared import topics as t
from shared.devstack import LocalRedis, free_port, start_infra
from shared.envelope import seal
from shared.identity import make_id_number
from shared.kafka import ensure_topics
from shared.regions import all_regions
from shared.settings import ServiceSettings
from shared.state import make_redis
from services.settlement.storage.accounts import ChargeToSettle, SettlementStore
from tests.support import ServiceProcess

CST = timezone(timedelta(hours=8))


def person(n: int) -> str:
    return make_id_number("610102", date(1940, 1, 1) + timedelta(days=n % 25_000), (n // 25_000) % 1000)


async def memory_per_person(redis_url: str, people: int) -> float:
    redis = make_redis(redis_url)
    await redis.flushdb()
    store = SettlementStore(redis, [r.code for r in all_regions()], 3600, 3600)
    await store.load_functions()
    before = (await redis.info("memory"))["used_memory"]
    batch = []
    for n in range(people):
        batch.append((person(n), "610100", "e", 123_456))
        if len(batch) == 5000:
            await store.register(batch)
            batch = []
    if batch:
        await store.register(batch)
    after = (await redis.info("memory"))["used_memory"]
    keys = await redis.dbsize()
    await redis.flushdb()
    await redis.aclose()
    print(f"  {people} accounts in {keys} bucket hashes: {(after - before) / people:.1f} bytes of Redis per person")
    return (after - before) / people


def _charge(n: int, run: str, patient: str, day: int, at: str) -> ChargeToSettle:
    """A charge to settle, filled by field name so the bench follows the store's dataclass."""
    known = {"event_id": f"E{run}-{n}", "charge_id": f"F{run}-{n}", "digest": f"d{n}", "borne": 1,
             "patient_id": patient, "day": day, "settled_at": at, "institution_code": "H1",
             "institution_region": "610100", "charged_at": at}
    return ChargeToSettle(**{f.name: known[f.name] for f in dataclasses.fields(ChargeToSettle)})


async def _settle_rates(redis_url: str, calls: int, batch: int) -> tuple[float, float]:
    """(pipelined settle calls/s in batches of `batch`, settle calls/s one round trip each)."""
    redis = make_redis(redis_url)
    store = SettlementStore(redis, [r.code for r in all_regions()], 3600, 3600)
    await store.load_functions()
    patients = [person(n) for n in range(1000)]
    await store.register([(p, "610100", "e", 10**12) for p in patients])
    await store.register_institutions([("H1", "610100", "hospital")])
    now = datetime.now(CST)
    day, at, run = int(now.strftime("%Y%m%d")), now.isoformat(timespec="seconds"), str(time.time_ns())
    todo = [_charge(n, run, patients[n % len(patients)], day, at) for n in range(calls)]
    started = time.perf_counter()
    for i in range(0, calls, batch):
        answers = await store.settle(todo[i:i + batch])
        assert all(a.status == "SETTLED" for a in answers), answers[0]
    pipelined = calls / (time.perf_counter() - started)
    singles = [_charge(n, run + "s", patients[n % len(patients)], day, at) for n in range(min(calls, 2000))]
    started = time.perf_counter()
    for c in singles:
        await store.settle([c])
    one_by_one = len(singles) / (time.perf_counter() - started)
    await redis.aclose()
    return pipelined, one_by_one


async def fsync_cost(calls: int, batch: int = 1000) -> None:
    """The same settle Function calls against Valkey with `appendfsync everysec` and `always`,
    alternating twice each in one run, so both see the same machine and disk."""
    rates: dict[str, list[tuple[float, float]]] = {"everysec": [], "always": []}
    for policy in ("everysec", "always", "everysec", "always"):
        server = LocalRedis(free_port(), Path(tempfile.mkdtemp(prefix=f"bench-{policy}-")), appendfsync=policy)
        server.start()
        try:
            rates[policy].append(await _settle_rates(server.url, calls, batch))
        finally:
            server.stop()
    best = {policy: (max(r[0] for r in runs), max(r[1] for r in runs)) for policy, runs in rates.items()}
    for policy, (pipelined, single) in best.items():
        print(f"  appendfsync {policy:8}: {pipelined:9,.0f} settle calls/s pipelined ({batch} a round trip), "
              f"{single:7,.0f}/s one call a round trip (best of 2)")
    print(f"  cost of always: {1 - best['always'][0] / best['everysec'][0]:.0%} of pipelined throughput, "
          f"{1 - best['always'][1] / best['everysec'][1]:.0%} of one-by-one throughput")


async def throughput(bootstrap: str, redis_url: str, charges: int) -> None:
    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
    await ensure_topics(settings, [t.HIS_CHARGES, t.SETTLEMENT_RESULTS, t.BUREAU_ACCOUNTS, t.BUREAU_POSTINGS,
                                   t.BUREAU_INSTITUTIONS])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1_048_576)
    await producer.start()
    hospital = {"institution_code": "H1", "name": "压测医院", "region": "610100", "kind": "hospital"}
    await producer.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", hospital), key=b"H1")
    patients = [person(n) for n in range(1000)]
    for pid in patients:
        p = {"person_id": pid, "name": "压测", "region": "610100", "scheme": "employee", "employer": "x",
             "balance": "100000.00"}
        await producer.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=pid.encode())
    await producer.flush()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    parts = [TopicPartition(t.SETTLEMENT_RESULTS, p) for p in consumer.partitions_for_topic(t.SETTLEMENT_RESULTS)]
    consumer.assign(parts)
    await consumer.seek_to_end(*parts)
    for tp in parts:
        await consumer.position(tp)
    now = datetime.now(CST).isoformat(timespec="seconds")
    run = int(time.time())
    values = []
    for i in range(charges):
        pid = patients[i % len(patients)]
        values.append((pid, seal("ChargeSubmitted", {
            "charge_id": f"B{run}-{i}", "institution_code": "H1", "institution_region": "610100",
            "patient_id": pid, "patient_name": "压测", "code_holder_id": pid, "presented_via": "own_device",
            "visit_kind": "pharmacy", "total": "12.34", "fund_paid": "0.00", "individual_borne": "12.34",
            "charged_at": now})))
    await asyncio.sleep(2)  # let registrations land before the clock starts (bench only)
    started = time.perf_counter()
    for pid, value in values:
        await producer.send(t.HIS_CHARGES, value, key=pid.encode())
    await producer.flush()
    seen, deadline = 0, time.monotonic() + 300
    while seen < charges and time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
        seen += sum(len(v) for v in batch.values())
    elapsed = time.perf_counter() - started
    if seen < charges:
        print(f"  only {seen} of {charges} results within 300 s")
    print(f"  {seen} charges published and settled (results read back) in {elapsed:.2f} s: "
          f"{charges / elapsed:,.0f} charges/s on one settlement process")
    await consumer.stop()
    await producer.stop()


async def main() -> None:
    charges = int(os.environ.get("BENCH_CHARGES", "20000"))
    people = int(os.environ.get("BENCH_PEOPLE", "100000"))
    infra = start_infra(Path(tempfile.mkdtemp(prefix="bench-")))
    service = ServiceProcess("settlement", {**infra.env(), "LOG_LEVEL": "WARNING"},
                             Path(tempfile.mkdtemp()) / "settlement.log")
    try:
        print(f"infrastructure: {infra.origin}")
        await fsync_cost(int(os.environ.get("BENCH_FSYNC_CALLS", "20000")))
        await memory_per_person(infra.redis_url, people)
        service.env["LOG_LEVEL"] = "INFO"
        service.start()
        await throughput(infra.kafka_bootstrap, infra.redis_url, charges)
    finally:
        service.stop()
        infra.stop()


if __name__ == "__main__":
    asyncio.run(main())
