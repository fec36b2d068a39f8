"""The raw limits the platform is compared with, on the same machine in the same run: a bare
aiokafka consume→produce loop, and the settlement Function called pipelined with no Kafka."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from shared.kafka_security import client_kwargs
from shared.regions import all_regions
from shared.state import make_redis
from tooling.devstack import LocalRedis, free_port
from bench.population import HOSPITAL, REGION, Population, now
from bench.stack import create_topics, producer


async def consume_produce(bootstrap: str, messages: int, size: int) -> float:
    """Messages/s of a group consumer on a 6-partition topic forwarding every message to another
    topic: getmany batches, each batch sent without awaiting each send, the acks awaited together,
    then the offsets committed. Timed from the first batch read to the last commit (the group
    join excluded)."""
    tag = str(time.time_ns())
    source, sink = f"raw.in.{tag}", f"raw.out.{tag}"
    await create_topics(bootstrap, [source, sink])
    out = producer(bootstrap)
    await out.start()
    try:
        body = os.urandom(size // 2).hex().encode()[:size]
        for i in range(messages):
            await out.send(source, body, key=str(i).encode())
        await out.flush()
        consumer = AIOKafkaConsumer(source, **client_kwargs(bootstrap), group_id=f"raw-{tag}",
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    session_timeout_ms=6000, heartbeat_interval_ms=500, fetch_max_wait_ms=10,
                                    max_partition_fetch_bytes=4_194_304)
        await consumer.start()
        try:
            done, started = 0, 0.0
            while done < messages:
                batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
                if not batch:
                    continue
                started = started or time.perf_counter()
                acks = [await out.send(sink, r.value, key=r.key) for records in batch.values() for r in records]
                await asyncio.gather(*acks)
                await consumer.commit()
                done += len(acks)
            return messages / (time.perf_counter() - started)
        finally:
            await consumer.stop()
    finally:
        await out.stop()


def _charge(store_module, n: int, run: str, patient: str, day: int, at: str):
    """A charge for SettlementStore.settle, filled by field name so the bench follows the store's
    dataclass while it changes."""
    known = {"event_id": f"E{run}-{n}", "charge_id": f"F{run}-{n}", "digest": f"d{n}", "borne": 1234,
             "patient_id": patient, "day": day, "settled_at": at, "institution_code": HOSPITAL,
             "institution_region": REGION, "charged_at": at}
    cls = store_module.ChargeToSettle
    return cls(**{f.name: known[f.name] for f in dataclasses.fields(cls) if f.name in known})


async def settle_rates(redis_url: str, calls: int, batch: int, population: Population,
                       singles: int = 2000) -> tuple[float, float]:
    """(settle calls/s pipelined `batch` a round trip, calls/s one round trip each), through the
    settlement service's own store, with the platform's mix: half the charges for beneficiaries
    paid by grantor 1 (their payer index written straight in the binding layout), half paid from
    the patient's own account."""
    from services.settlement.storage import accounts
    from shared.binding_index import Payer, encode_payer, payers_key

    redis = make_redis(redis_url)
    try:
        store = accounts.SettlementStore(redis, [r.code for r in all_regions()], 3600, 3600)
        await store.load_functions()
        people = population.everyone()
        for i in range(0, len(people), 5000):
            await store.register([(p.person_id, REGION, "e" if p.scheme == "employee" else "r",
                                   10_000_000 if p.scheme == "employee" else None) for p in people[i:i + 5000]])
        await store.register_institutions([(HOSPITAL, REGION, "hospital")])
        today = now().date()
        pipe = redis.pipeline(transaction=False)
        for i, ben in enumerate(population.beneficiaries):
            for order in (1, 2):
                g = population.grantors[2 * i + order - 1]
                payer = Payer(f"raw-{i}-{order}", g.person_id, order, today, today + timedelta(days=365), REGION)
                pipe.hset(payers_key(ben.person_id), payer.binding_id, encode_payer(payer))
        await pipe.execute()
        at = now()
        day, iso, run = int(at.strftime("%Y%m%d")), at.isoformat(timespec="seconds"), str(time.time_ns())
        patients = [p.person_id for p, _ in population.patients(max(calls, singles), 0.5)]
        todo = [_charge(accounts, n, run, patients[n], day, iso) for n in range(calls)]
        started = time.perf_counter()
        for i in range(0, calls, batch):
            answers = await store.settle(todo[i:i + batch])
            if answers and answers[0].status != "SETTLED":
                raise RuntimeError(f"the Function answered {answers[0]}")
        pipelined = calls / (time.perf_counter() - started)
        one = [_charge(accounts, n, run + "s", patients[n], day, iso) for n in range(singles)]
        started = time.perf_counter()
        for c in one:
            await store.settle([c])
        return pipelined, singles / (time.perf_counter() - started)
    finally:
        await redis.aclose()


async def fsync_cost(calls: int, population: Population, batch: int = 1000) -> dict[str, tuple[float, float]]:
    """The same settle calls against Valkey with `appendfsync everysec` and `always`, alternating
    twice each in one run so both see the same machine and disk; best of two each."""
    rates: dict[str, list[tuple[float, float]]] = {"everysec": [], "always": []}
    for policy in ("everysec", "always", "everysec", "always"):
        server = LocalRedis(free_port(), Path(tempfile.mkdtemp(prefix=f"bench-{policy}-")), appendfsync=policy)
        server.start()
        try:
            rates[policy].append(await settle_rates(server.url, calls, batch, population))
        finally:
            server.stop()
    return {policy: (max(r[0] for r in runs), max(r[1] for r in runs)) for policy, runs in rates.items()}
