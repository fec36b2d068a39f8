"""The simulator's I/O: registering the province on Kafka, making its bindings through the
gateway as the app does, and playing the traffic at a steady rate while reading what comes back.

Contract version 3: every message it publishes is signed by the partner it plays (simulator/partners.py:
a HIS with its institution's key, a bureau with its region's, the app's back end with the gateway's),
each institution's registration carries its public key, and the bureaus and the HIS check the
platform's signature on what they read (their region's postings, their reply topics) before they
believe it.

Every line it prints is free of names, full ID numbers and phones (masked where a person is named).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.envelope import now, seal
from shared.kafka_security import client_kwargs
from shared.institutions import INSTITUTION_REGISTERED
from shared.tokens import TokenIssuer
from shared.topics import (BINDING_COMMANDS, BINDING_EVENTS, BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, NOTIFY_DELIVERIES,
                           SETTLEMENT_RESULTS, all_bureau_postings, dead_letter_topic)
from simulator.grantors import GrantorActions
from simulator.pacing import pace
from simulator.partners import Partners, PlatformCheck, reply_topic
from simulator.province import Binding, Province
from simulator.tally import Tally
from simulator.traffic import Outgoing, Traffic

# The projections that must hold the registrations before bindings and charges are answered
# right (a refusal read off a projection that is behind, UNKNOWN_PERSON, would be wrong).
BUREAU_DEAD_LETTERS = dead_letter_topic(BUREAU_ACCOUNTS)
PROJECTIONS = {BUREAU_ACCOUNTS: ("binding", "settlement", "notify"), BUREAU_INSTITUTIONS: ("settlement", "notify")}


@dataclass
class Options:
    bootstrap: str
    rate: float = 20.0
    duration: float = 0.0            # seconds of play; 0: until stopped
    seed: int = 13
    size: str = "small"
    do_seed: bool = True
    do_play: bool = True
    gateway: str | None = None       # the HTTP API; without it bindings go straight to binding.commands
    app_issuer: Path | None = None   # the app back end's token issuer (private JWK file) that mints app tokens
    status_file: Path | None = None
    bind_wait: float = 15.0          # longest the play waits for the bindings to be answered

    @property
    def seed_only(self) -> bool:
        return not self.do_play


def say(text: str) -> None:
    print(f"simulator: {text}", flush=True)


class Publisher:
    """Publishes as the partners do: each message sealed in its envelope and signed by the partner
    it speaks for (`Partners.signer`)."""

    def __init__(self, producer: AIOKafkaProducer, partners: Partners) -> None:
        self.producer, self.partners = producer, partners

    async def send(self, topic: str, key: str, event_type: str, payload: dict, event_id: str | None = None,
                   headers: dict[str, str] | None = None) -> None:
        value = seal(event_type, payload, event_id=event_id)
        raw_key = key.encode()
        await self.producer.send(topic, value, key=raw_key,
                                 headers=self.partners.headers(topic, raw_key, value, payload, headers))

    async def flush(self) -> None:
        await self.producer.flush()


async def simulate(opts: Options, province: Province, stop: asyncio.Event, partners: Partners | None = None,
                   check: PlatformCheck | None = None) -> Tally:
    """Seed and play the province. `partners` (the keys it signs with) and `check` (how it checks the
    platform's signatures) default to the running stack's (DEV_KEYS_DIR, PARTNER_KEYS_FILE)."""
    partners = partners or Partners.from_env()
    check = check or PlatformCheck.from_env()
    tally = Tally({p.person_id: p.region for p in province.people})
    producer = AIOKafkaProducer(**client_kwargs(opts.bootstrap), acks="all", linger_ms=5,
                                enable_idempotence=False)  # the local Tansu broker has no idempotent producer
    await producer.start()
    out = Publisher(producer, partners)
    binding: asyncio.Task | None = None
    grantors = GrantorActions()  # what the grantors may act on in the app: their bindings, payments
    writer = asyncio.create_task(_write_status(tally, opts.status_file)) if opts.status_file else None
    try:
        if opts.do_seed:
            tally.phase = "seeding"
            await register(out, province)
            await projections_caught_up(opts.bootstrap, timeout=90, stop=stop)
            binding = asyncio.create_task(
                bind_through_gateway(opts.gateway, _issuer(opts), province.bindings, tally, stop, grantors)
                if opts.gateway else bind_on_kafka(opts.bootstrap, out, province.bindings, tally, stop, grantors))
            # The play starts once the bindings are answered, or after a while if the API is slow
            # (202s): a beneficiary's charge before the binding is simply paid in cash.
            await asyncio.wait([binding], timeout=None if opts.seed_only else opts.bind_wait)
            if binding.done():
                binding.result()
                say(f"bindings: {dict(tally.bindings)}")
            else:
                say(f"bindings so far: {dict(tally.bindings)}; the rest are made while the play goes on")
        if opts.do_play and not stop.is_set():
            tally.phase = "playing"
            await play(opts, out, province, tally, stop, grantors, check)
        tally.phase = "stopped"
        return tally
    finally:
        if binding is not None and not binding.done():
            binding.cancel()
            await asyncio.gather(binding, return_exceptions=True)
        await producer.stop()
        if writer:
            writer.cancel()
            _dump(tally, opts.status_file)


def _issuer(opts: Options) -> TokenIssuer:
    if opts.app_issuer is None:
        raise RuntimeError("bindings through the gateway need the app's token issuer (APP_TOKEN_ISSUER_FILE)")
    return TokenIssuer.load(opts.app_issuer)


async def register(out: Publisher, province: Province) -> None:
    """Each bureau registers its region's institutions (with their public keys) and people."""
    for inst in province.institutions:
        await out.send(BUREAU_INSTITUTIONS, inst.code, INSTITUTION_REGISTERED,
                       inst.registered(out.partners.institution_public_keys(inst.code)))
    for person in province.people:
        await out.send(BUREAU_ACCOUNTS, person.person_id, "PersonRegistered", person.registered())
    await out.flush()
    cross = sum(b.cross_region for b in province.bindings)
    say(f"registered {len(province.institutions)} institutions in "
        f"{len({i.region for i in province.institutions})} cities and {len(province.people)} people "
        f"({len(province.employees())} employees); {len(province.bindings)} bindings to make, {cross} cross-region")


async def projections_caught_up(bootstrap: str, timeout: float, stop: asyncio.Event, poll: float = 0.2) -> bool:
    """Until every service's projection group has committed the end of the topics it projects
    (it commits only after its Redis write). Read through consumers that do not join their group."""
    deadline = time.monotonic() + timeout
    probe = AIOKafkaConsumer(**client_kwargs(bootstrap))
    await probe.start()
    try:
        ends = {}
        for topic in PROJECTIONS:
            parts = [TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or ())]
            ends[topic] = await probe.end_offsets(parts) if parts else {}
    finally:
        await probe.stop()
    for topic, services in PROJECTIONS.items():
        for service in services:
            group = f"{service}.{topic}"
            reader = AIOKafkaConsumer(**client_kwargs(bootstrap), group_id=group, enable_auto_commit=False)
            await reader.start()
            try:
                while not await _committed_to(reader, ends[topic]):
                    if stop.is_set():
                        return False
                    if time.monotonic() > deadline:
                        say(f"{group} has not read the registrations within {timeout:.0f} s; going on")
                        return False
                    await asyncio.sleep(poll)  # polling a committed offset, with a deadline
            finally:
                await reader.stop()
    return True


async def _committed_to(reader: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if ((await reader.committed(tp)) or 0) < end:
            return False
    return True


async def bind_through_gateway(gateway: str, issuer: TokenIssuer, bindings: list[Binding], tally: Tally,
                               stop: asyncio.Event, grantors: GrantorActions | None = None,
                               concurrency: int = 64) -> None:
    """POST /v1/bindings as each grantor's app would: the grantor's own app token, the form."""
    start = now().date()
    gate = asyncio.Semaphore(concurrency)

    async def create(client: httpx.AsyncClient, b: Binding) -> None:
        async with gate:
            if stop.is_set():
                return
            token = issuer.mint("app", person_id=b.grantor.person_id, ttl_seconds=600)
            try:
                r = await client.post("/v1/bindings", json=b.form(start), headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError as exc:
                tally.bindings[f"error:{type(exc).__name__}"] += 1
                return
            if r.status_code in (200, 201):
                tally.bindings["created"] += 1
                binding_id = (r.json().get("outcome") or {}).get("binding_id")
                if grantors is not None and binding_id:
                    grantors.binding_event("BindingCreated", {"binding_id": binding_id,
                                                              "grantor_id": b.grantor.person_id})
            elif r.status_code == 202:
                tally.bindings["pending"] += 1
            else:
                tally.bindings[f"refused:{_reason(r)}"] += 1

    async with httpx.AsyncClient(base_url=gateway, timeout=30) as client:
        await asyncio.gather(*(create(client, b) for b in bindings))


async def bind_on_kafka(bootstrap: str, out: Publisher, bindings: list[Binding], tally: Tally,
                        stop: asyncio.Event, grantors: GrantorActions | None = None, timeout: float = 60) -> None:
    """Without a gateway: CreateBinding on binding.commands as the gateway would put it there for
    the app (signed with the gateway's key), outcomes read back."""
    start = now().date()
    commands = {f"SIM-BIND-{os.getpid()}-{i}": b for i, b in enumerate(bindings)}
    answered: set[str] = set()

    def on_record(event_type: str, payload: dict) -> None:
        cid = payload.get("command_id")
        if cid in commands and cid not in answered:
            answered.add(cid)
            key = "created" if event_type == "BindingCreated" else f"refused:{payload.get('reason_code', '?')}"
            tally.bindings[key] += 1
            if grantors is not None:
                grantors.binding_event(event_type, payload)

    async with _Reader(bootstrap, [BINDING_EVENTS], lambda record, t, p: on_record(t, p)):
        for cid, b in commands.items():
            form = b.form(start) | {"channel": "app"}
            await out.send(BINDING_COMMANDS, b.beneficiary.person_id, "CreateBinding", form, event_id=cid)
        await out.flush()
        deadline = time.monotonic() + timeout
        while len(answered) < len(commands) and not stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # waiting on the outcomes, with a deadline
    tally.bindings["unanswered"] += len(commands) - len(answered)


async def play(opts: Options, out: Publisher, province: Province, tally: Tally,
               stop: asyncio.Event, grantors: GrantorActions | None = None, check: PlatformCheck | None = None) -> None:
    """The traffic at `opts.rate`, signed, while the outcomes are read back. The bureaus apply to
    their books only the postings whose platform signature verifies (`check`); each HIS asks for
    its quotes on its own reply topic (`reply.<institution code>.sim`) and believes only a
    verified reply."""
    check = check or PlatformCheck.from_env()
    # a HIS never reuses a charge id, and a later run's bureau events must be newer than this one's
    tag = f"SIM{int(time.time()):x}".upper()
    traffic = Traffic(province, random.Random(opts.seed), tag, seq_base=int(time.time() * 1000),
                      books_known=opts.do_seed)
    grantors = grantors or GrantorActions()

    postings = set(all_bureau_postings())
    replies = {reply_topic(i.code) for i in province.institutions}

    def on_record(record, event_type: str, payload: dict) -> None:
        topic = record.topic
        if topic in postings or topic in replies:
            refusal = check.check(topic, record.key, record.value, record.headers, now())
            tally.platform_message(topic, refusal)
            if refusal is not None:
                return  # not the platform's word: a bureau or a HIS does not act on it
        if topic in replies:
            if event_type == "ChargeQuoted":
                traffic.quoted(payload)  # the HIS learns its quote's id on its own reply topic
        elif topic == SETTLEMENT_RESULTS:
            tally.result(event_type, payload)
            if event_type == "ChargeSettled":
                traffic.settled(payload)
                grantors.paid(payload)
            elif event_type == "RefundSettled":
                traffic.refund_settled(payload)
            elif event_type == "InstitutionReconciled":
                traffic.reconciled(payload)
        elif topic == BINDING_EVENTS:
            tally.binding_event(event_type, payload)
            grantors.binding_event(event_type, payload)
            if event_type == "DisputeOpened":
                traffic.dispute_opened(payload, tally.regions.get(payload.get("grantor_id", ""), ""))
        elif topic in postings:
            if event_type == "Posting":
                traffic.posted(payload)
            elif event_type == "AccountDriftDetected":
                tally.drift += 1
        elif topic == NOTIFY_DELIVERIES:
            tally.delivery(event_type, payload)
        elif topic == BUREAU_DEAD_LETTERS:
            tally.bureau_refused += 1  # a bureau event the platform refused: the books disagree

    def messages():
        while True:
            yield traffic.next(now())

    async def send(m: Outgoing) -> None:
        tally.sent[m.kind] += 1
        asked = {"reply_to": m.reply_to, "correlation_id": m.event_id} if m.reply_to else None
        await out.send(m.topic, m.key, m.event_type, m.payload, event_id=m.event_id, headers=asked)

    await create_topics(opts.bootstrap, sorted(replies))
    topics = [SETTLEMENT_RESULTS, BINDING_EVENTS, *sorted(postings), *sorted(replies), NOTIFY_DELIVERIES,
              BUREAU_DEAD_LETTERS]
    async with _Reader(opts.bootstrap, topics, on_record):
        say(f"playing at {opts.rate:g} messages/s" + (f" for {opts.duration:g} s" if opts.duration else ""))
        acting = asyncio.create_task(act_in_app(opts, grantors, tally, stop)) if opts.gateway else None
        try:
            sent = await pace(messages(), opts.rate, send, duration=opts.duration or None, stop=stop)
        finally:
            if acting:
                acting.cancel()
                await asyncio.gather(acting, return_exceptions=True)
        await out.flush()
    say(f"sent {sent} messages: {dict(tally.sent)}; grantors in the app: {dict(tally.grantor_actions)}")


async def act_in_app(opts: Options, grantors: GrantorActions, tally: Tally, stop: asyncio.Event,
                     every: float = 2.0) -> None:
    """Every couple of seconds a grantor sets a limit, pauses or resumes a binding, or disputes a
    payment, through the HTTP API with his or her own app token."""
    rng = random.Random(opts.seed + 1)
    issuer = _issuer(opts)
    async with httpx.AsyncClient(base_url=opts.gateway, timeout=30) as client:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), every)
                return
            except asyncio.TimeoutError:
                pass  # the pause between two actions is over
            call = grantors.next(rng)
            if call is None:
                continue
            token = issuer.mint("app", person_id=call.grantor_id, ttl_seconds=300)
            try:
                r = await client.request(call.method, call.path, json=call.body,
                                         headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError as exc:
                tally.grantor_actions[f"{call.action}:error:{type(exc).__name__}"] += 1
                continue
            if r.status_code < 300:
                tally.grantor_actions[call.action] += 1
            else:
                tally.grantor_actions[f"{call.action}:refused:{_reason(r)}"] += 1


def _reason(r: httpx.Response) -> str:
    """A refusal's reason code (problem+json), or its HTTP status."""
    try:
        return str(r.json().get("reason_code") or r.status_code)
    except (ValueError, AttributeError):
        return str(r.status_code)


async def create_topics(bootstrap: str, topics: list[str]) -> None:
    """The HIS's reply topics, made before the play asks for replies on them (an operator makes
    them for a real HIS; the platform only writes to a reply topic that exists)."""
    if not topics:
        return
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap))
    await admin.start()
    try:
        missing = sorted(set(topics) - set(await admin.list_topics()))
        if missing:
            try:
                await admin.create_topics([NewTopic(t, 1, 1) for t in missing])
            except TopicAlreadyExistsError:
                pass  # a simulator before this one made them
    finally:
        await admin.close()


class _Reader:
    """Reads topics from their end at entry, without a consumer group: `on_record(record, event_type,
    payload)` for each message (the record for its topic, key, value and headers)."""

    def __init__(self, bootstrap: str, topics: list[str], on_record) -> None:
        self._consumer = AIOKafkaConsumer(**client_kwargs(bootstrap), enable_auto_commit=False, fetch_max_wait_ms=100)
        self._topics, self._on_record = topics, on_record
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "_Reader":
        consumer = self._consumer
        await consumer.start()
        await consumer._client.force_metadata_update()
        # Topics not created yet (a dead-letter topic nobody needed) are simply not read.
        ends = await consumer.end_offsets(
            [TopicPartition(t, p) for t in self._topics for p in sorted(consumer.partitions_for_topic(t) or ())])
        consumer.assign(list(ends))
        for tp, end in ends.items():
            consumer.seek(tp, end)  # from the end as it is now, before anything is published
        self._task = asyncio.create_task(self._pump())
        return self

    async def _pump(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200, max_records=5_000)
            for records in batch.values():
                for r in records:
                    try:
                        body = json.loads(r.value)
                        event_type, payload = body["event_type"], body["payload"]
                    except (ValueError, KeyError, TypeError):
                        event_type, payload = "", {}  # a dead letter may hold anything
                    try:
                        self._on_record(r, event_type, payload)
                    except (ValueError, KeyError, TypeError) as exc:  # one odd record must not stop the reading
                        say(f"could not read a {event_type or 'record'} on {r.topic}: {type(exc).__name__}")

    async def __aexit__(self, *exc) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._consumer.stop()


async def _write_status(tally: Tally, path: Path) -> None:
    while True:
        _dump(tally, path)
        await asyncio.sleep(1)


def _dump(tally: Tally, path: Path | None) -> None:
    if path is None:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(tally.as_dict() | {"at": now().isoformat(timespec="seconds")}))
    tmp.replace(path)

