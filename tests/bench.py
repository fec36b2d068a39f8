"""`make bench`: settlement throughput through the real broker and Redis, and Redis bytes per person.

Prints figures; asserts nothing (speed is measured here, never in tests). Sizes by env:
BENCH_CHARGES (default 20000), BENCH_PEOPLE (default 100000).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared import topics as t
from shared.devstack import start_infra
from shared.envelope import seal
from shared.identity import make_id_number
from shared.kafka import ensure_topics
from shared.regions import all_regions
from shared.settings import ServiceSettings
from shared.state import make_redis
from services.settlement.storage.accounts import SettlementStore
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


async def throughput(bootstrap: str, redis_url: str, charges: int) -> None:
    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap)
    await ensure_topics(settings, [t.HIS_CHARGES, t.SETTLEMENT_RESULTS, t.BUREAU_ACCOUNTS, t.BUREAU_POSTINGS])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1_048_576)
    await producer.start()
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
        await memory_per_person(infra.redis_url, people)
        service.env["LOG_LEVEL"] = "INFO"
        service.start()
        await throughput(infra.kafka_bootstrap, infra.redis_url, charges)
    finally:
        service.stop()
        infra.stop()


if __name__ == "__main__":
    asyncio.run(main())
