"""The platform measured from outside: charges published, settled by the settlement service and
read back; binding commands; SMS; Redis bytes per person and per binding."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from shared import topics as t
from bench.population import Charge, Command, Population
from bench.report import percentile
from bench.stack import Reader, groups_caught_up, producer, until
from simulator.pacing import pace


@dataclass
class Run:
    """What came back for a set of charges."""

    sent: dict[bytes, float] = field(default_factory=dict)          # charge id -> publish time (s)
    results: dict[bytes, tuple[int, float]] = field(default_factory=dict)  # -> (result's Kafka ms, read time)
    rejected: dict[bytes, str] = field(default_factory=dict)         # -> the ChargeRejected reason
    sms: dict[str, tuple[int, float]] = field(default_factory=dict)  # charge id -> (SmsSent's Kafka ms, read)
    outcomes: dict[bytes, set[bytes]] = field(default_factory=dict)  # charge id -> event ids of its results
    kinds: dict[bytes, list[str]] = field(default_factory=dict)       # charge id -> event types read, in order
    copies: int = 0                                                   # result records read beyond the first
    started: float = 0.0
    published: float = 0.0

    def elapsed(self) -> float:
        return max(seen for _, seen in self.results.values()) - self.started

    def latencies_ms(self, by_kafka_time: bool = True) -> list[float]:
        return sorted((ts - self.sent[k] * 1000) if by_kafka_time else (seen - self.sent[k]) * 1000
                      for k, (ts, seen) in self.results.items())

    def twice_answered(self) -> int:
        """Charges with two different outcomes (different event ids): exactly-once broken. A copy
        with the same event id is a redelivery, harmless by the contract."""
        return sum(1 for ids in self.outcomes.values() if len(ids) > 1)

    def sms_latencies_ms(self) -> list[float]:
        return sorted(ts - self.sent[k.encode()] * 1000 for k, (ts, _) in self.sms.items())


def _reason(value: bytes) -> str:
    try:
        return json.loads(value)["payload"].get("reason_code", "?")
    except (ValueError, KeyError, TypeError):
        return "unreadable"


SETTLED = (b'"ChargeSettled"', b'"ChargeRejected"')  # what answers a ChargeSubmitted
QUOTED = (b'"ChargeQuoted"', b'"ChargeRejected"')    # ... a ChargeQuoteRequested


async def run_charges(bootstrap: str, charges: list[Charge], rate: float | None,
                      timeout: float, sms_timeout: float = 0.0, keep=None, answers=SETTLED) -> Run:
    """Publish the charges (at full speed, or `rate` per second evenly) and read their results
    back from settlement.results; with `sms_timeout`, also wait for each grantor-paid charge's
    SmsSent on notify.deliveries. `keep(record)` sees each charge's first result. Only `answers`
    count as results: a charge's key also carries its quote's messages."""
    run = Run()
    wanted = {c.charge_id for c in charges}
    sms_wanted = {c.charge_id.decode() for c in charges if c.by_grantor} if sms_timeout else set()

    def on_record(r, seen: float) -> None:
        if r.topic == t.SETTLEMENT_RESULTS:
            if r.key not in wanted or not any(kind in r.value[:200] for kind in answers):
                return
            event_id = r.value[13:49] if r.value.startswith(b'{"event_id":"') else r.value
            run.outcomes.setdefault(r.key, set()).add(event_id)
            kind = r.value[:200].split(b'"event_type":"', 1)[-1].split(b'"', 1)[0].decode(errors="replace")
            run.kinds.setdefault(r.key, []).append(kind)
            if r.key in run.results:
                run.copies += 1
            else:
                run.results[r.key] = (r.timestamp, seen)
                if keep:
                    keep(r)
                if b'"ChargeRejected"' in r.value[:200]:
                    run.rejected[r.key] = _reason(r.value)
        elif sms_wanted and b'"SmsSent"' in r.value[:200]:
            cid = json.loads(r.value)["payload"].get("charge_id")
            if cid in sms_wanted and cid not in run.sms:
                run.sms[cid] = (r.timestamp, seen)

    reader = Reader(bootstrap, [t.SETTLEMENT_RESULTS] + ([t.NOTIFY_DELIVERIES] if sms_wanted else []), on_record)
    await reader.start()
    out = producer(bootstrap, linger_ms=0 if rate else 5)
    await out.start()
    try:
        run.started = time.time()
        if rate is None:
            for i, c in enumerate(charges):
                run.sent[c.charge_id] = time.time()
                await out.send(t.HIS_CHARGES, c.value, key=c.key, headers=c.headers)
                if i % 500 == 499:
                    await asyncio.sleep(0)  # let the sender and the reader run while publishing
        else:
            async def send(c: Charge) -> None:
                run.sent[c.charge_id] = time.time()
                await out.send(t.HIS_CHARGES, c.value, key=c.key, headers=c.headers)

            await pace(charges, rate, send)
        await out.flush()
        run.published = time.time()
        await until(lambda: len(run.results) == len(wanted), timeout, f"{len(wanted)} results",
                    progress=lambda: len(run.results), stall=30)
        if sms_wanted:
            try:
                await until(lambda: len(run.sms) == len(sms_wanted), sms_timeout,
                            f"{len(sms_wanted)} SmsSent", interval=0.1, progress=lambda: len(run.sms), stall=15)
            except TimeoutError:
                pass  # reported as a count below what was due
        return run
    finally:
        await out.stop()
        await reader.stop()


async def warm_up(bootstrap: str, population: Population, tag: str, timeout: float = 60) -> None:
    """A few charges until they settle: the institution is known, every consumer has its
    partitions, the process's caches are warm. Raises with the reason if they never settle."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        run = await run_charges(bootstrap, population.charges(200, f"{tag}w{attempt}", 0.5), None,
                                max(5.0, deadline - time.monotonic()))
        if not run.rejected:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"warm-up charges refused: {sorted(set(run.rejected.values()))}")
        await asyncio.sleep(1)


def summary(run: Run) -> str:
    reasons: dict[str, int] = {}
    for r in run.rejected.values():
        reasons[r] = reasons.get(r, 0) + 1
    return "; ".join(filter(None, [
        f"{len(run.rejected)} refused: {reasons}" if reasons else "",
        f"{run.copies} redelivered result copies" if run.copies else "",
        f"{run.twice_answered()} CHARGES ANSWERED TWICE ({_twice_kinds(run)})" if run.twice_answered() else ""]))


def _twice_kinds(run: Run) -> str:
    """What the charges answered twice were answered with, e.g. ChargeSettled+ChargeSettled: 3."""
    seen: dict[str, int] = {}
    for key, ids in run.outcomes.items():
        if len(ids) > 1:
            kinds = "+".join(run.kinds.get(key, []))
            seen[kinds] = seen.get(kinds, 0) + 1
    return ", ".join(f"{k}: {n}" for k, n in sorted(seen.items(), key=lambda x: -x[1])[:3])


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def register_people(bootstrap: str, redis: Redis, population: Population, timeout: float) -> tuple[float, float]:
    """(Redis bytes per registered person, registrations/s) with all three services running:
    PersonRegistered for everyone on bureau.accounts, until the binding, settlement and notify
    consumer groups have all committed the end of the topic (each projection has them). Signed by
    Xi'an's bureau before the clock starts."""
    people = population.registrations()
    before = await used_memory(redis)
    out = producer(bootstrap)
    await out.start()
    started = time.time()
    try:
        for i, (key, value, headers) in enumerate(people):
            await out.send(t.BUREAU_ACCOUNTS, value, key=key, headers=headers)
            if i % 500 == 499:
                await asyncio.sleep(0)
        await out.flush()
    finally:
        await out.stop()
    await groups_caught_up(bootstrap, [f"{s}.{t.BUREAU_ACCOUNTS}" for s in ("binding", "settlement", "notify")],
                           t.BUREAU_ACCOUNTS, timeout)
    rate = len(people) / (time.time() - started)
    await asyncio.sleep(0.5)
    return (await used_memory(redis) - before) / len(people), rate


@dataclass
class Bindings:
    per_second: float
    created: int
    refused: dict[str, int]
    sms: int
    bytes_each: float | None
    bytes_with_sink: float | None
    made: list[tuple[str, str]] = field(default_factory=list)  # (binding id, grantor id) of each created


async def create_bindings(bootstrap: str, redis: Redis, population: Population, timeout: float) -> Bindings:
    """CreateBinding for fresh pairs at full speed on binding.commands, every outcome read back
    from binding.events; then, once notify has sent both SMS of each binding, the Redis bytes
    each binding left behind (with and without the sink provider's `ntf:sink` list, which stands
    in for the SMS gateway)."""
    commands = population.binding_commands()
    wanted = {c.command_id for c in commands}
    grantor_of = {c.command_id: json.loads(c.value)["payload"]["grantor"]["id_number"] for c in commands}
    outcomes: dict[str, tuple[str, str, float]] = {}   # command id -> (event type, binding id|reason, read)
    sms: dict[str, int] = {}

    def on_record(r, seen: float) -> None:
        body = json.loads(r.value)
        p = body.get("payload", {})
        if r.topic == t.BINDING_EVENTS and p.get("command_id") in wanted:
            outcomes.setdefault(p["command_id"], (body["event_type"], p.get("binding_id") or p.get("reason_code", "?"),
                                                  seen))
        elif r.topic == t.NOTIFY_DELIVERIES and body.get("event_type") == "SmsSent" and p.get("binding_id"):
            sms[p["binding_id"]] = sms.get(p["binding_id"], 0) + 1

    reader = Reader(bootstrap, [t.BINDING_EVENTS, t.NOTIFY_DELIVERIES], on_record)
    await reader.start()
    sink_before = await redis.memory_usage("ntf:sink", samples=0) or 0
    before = await used_memory(redis)
    out = producer(bootstrap)
    await out.start()
    try:
        started = time.time()
        for i, c in enumerate(commands):
            await out.send(t.BINDING_COMMANDS, c.value, key=c.key, headers=c.headers)
            if i % 500 == 499:
                await asyncio.sleep(0)
        await out.flush()
        await until(lambda: len(outcomes) == len(wanted), timeout, f"{len(wanted)} binding outcomes",
                    progress=lambda: len(outcomes), stall=30)
        rate = len(commands) / (max(seen for *_, seen in outcomes.values()) - started)
        created = {b for kind, b, _ in outcomes.values() if kind == "BindingCreated"}
        refused: dict[str, int] = {}
        for kind, reason, _ in outcomes.values():
            if kind != "BindingCreated":
                refused[f"{kind} {reason}"] = refused.get(f"{kind} {reason}", 0) + 1
        try:
            await until(lambda: sum(min(2, sms.get(b, 0)) for b in created) >= 2 * len(created), timeout,
                        "both SMS of every binding", interval=0.1, progress=lambda: sum(sms.values()), stall=15)
            await groups_caught_up(bootstrap, [f"notify.{t.BINDING_EVENTS}", f"notify.projection.{t.BINDING_EVENTS}"],
                                   t.BINDING_EVENTS, 30)
            await asyncio.sleep(0.5)
            grown = await used_memory(redis) - before
            sink = (await redis.memory_usage("ntf:sink", samples=0) or 0) - sink_before
            each, with_sink = ((grown - sink) / len(created), grown / len(created)) if created else (None, None)
        except TimeoutError:
            each = with_sink = None
        made = [(b, grantor_of[cid]) for cid, (kind, b, _) in outcomes.items() if kind == "BindingCreated"]
        return Bindings(rate, len(created), refused, sum(sms.get(b, 0) for b in created), each, with_sink, made)
    finally:
        await out.stop()
        await reader.stop()


def latency_figures(run: Run) -> dict[str, float]:
    kafka, read = run.latencies_ms(True), run.latencies_ms(False)
    return {"p50": percentile(kafka, 50), "p95": percentile(kafka, 95), "p99": percentile(kafka, 99),
            "read_p50": percentile(read, 50), "read_p99": percentile(read, 99),
            "offered": len(run.sent) / max(1e-6, run.published - run.started)}


async def run_commands(bootstrap: str, commands: list[Command], timeout: float) -> dict[str, str]:
    """Publish binding commands at full speed and read every outcome back: command id -> event type
    (or `BindingRejected <reason>`)."""
    wanted = {c.command_id for c in commands}
    outcomes: dict[str, str] = {}

    def on_record(r, seen: float) -> None:
        body = json.loads(r.value)
        p = body.get("payload", {})
        if p.get("command_id") in wanted and p["command_id"] not in outcomes:
            outcomes[p["command_id"]] = body["event_type"] + (f" {p['reason_code']}" if "reason_code" in p else "")

    reader = Reader(bootstrap, [t.BINDING_EVENTS], on_record)
    await reader.start()
    out = producer(bootstrap)
    await out.start()
    try:
        for c in commands:
            await out.send(t.BINDING_COMMANDS, c.value, key=c.key, headers=c.headers)
        await out.flush()
        await until(lambda: len(outcomes) == len(wanted), timeout, f"{len(wanted)} command outcomes",
                    progress=lambda: len(outcomes), stall=30)
        return outcomes
    finally:
        await out.stop()
        await reader.stop()
