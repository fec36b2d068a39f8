"""Hostile input on every consumed topic, through the real broker and Redis (issue 11, "Faults").

For each topic a consumer reads (bureau.accounts, bureau.institutions, binding.commands,
his.charges, settlement.queries, settlement.results, binding.events), hypothesis draws a bounded
set of hostile messages: random bytes, text that is not JSON, JSON that is not an object,
envelopes whose fields have the wrong types, extreme numbers, ~100 KB strings, times at the edges
of the calendar, hostile headers (`reply_to` naming a platform topic or a reply topic that
does not exist, huge or binary header values, many headers) and hostile signatures (contract
version 3: none, forged, another algorithm, another partner's key, huge or binary signature
headers; the rest signed as the partner a message speaks for, so the payload checks are reached
too). Then:

- every message ends as a rejection on its outcome topic or as a dead letter carrying its
  original bytes (projection and notification consumers, which have no outcome topic, may also
  ignore a readable message; unreadable bytes always go to `<topic>.dlq`);
- nothing is written onto a topic a `reply_to` named unless it is a `reply.` topic;
- an ordinary message behind the hostile ones (same key, so the same partition) is answered
  within seconds.

The module runs on a broker and a Redis of its own, so its hostile records never reach the other
modules' services (which read their topics from the earliest offset).
"""

from __future__ import annotations

import base64
import json
import os
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, Phase, given, seed as hypothesis_seed, settings, strategies as st

from shared import envelope, topics as t
from shared.kafka import ensure_topics
from shared.state import make_redis
from tooling.devstack import Infra
from tests.support import (ServiceProcess, Watcher, binding_form, cached_balances, charge_submitted, command, dev_keys,
                           eventually, institution_registered, own_stack, person_registered, signed_as, wait_registered)

pytestmark = pytest.mark.integration

REPLY = "reply.fuzz"
ANSWER_WITHIN = 20.0  # seconds for the ordinary message behind the hostile ones (a loaded 2-core CI)
FATE_WITHIN = 60.0
INSTITUTION, REGION = "H61010077", "610100"
POSTINGS = t.all_bureau_postings()
PLATFORM_TOPICS = [t.BUREAU_ACCOUNTS, t.BUREAU_INSTITUTIONS, t.BINDING_COMMANDS, t.BINDING_EVENTS, t.HIS_CHARGES,
                   t.SETTLEMENT_RESULTS, *POSTINGS, t.NOTIFY_DELIVERIES, "settlement.queries"]
CONSUMED = [t.BUREAU_ACCOUNTS, t.BUREAU_INSTITUTIONS, t.BINDING_COMMANDS, t.HIS_CHARGES, "settlement.queries",
            t.SETTLEMENT_RESULTS, t.BINDING_EVENTS]
# Topics whose consumer answers readable messages (a rejection); the others only project or notify.
ANSWERING = {t.HIS_CHARGES, t.BINDING_COMMANDS, "settlement.queries"}
EVENT_TYPES = {
    t.BUREAU_ACCOUNTS: ["PersonRegistered", "AccountCredited", "AccountDebitedLocally", "BalanceSnapshot",
                        "DailyPostingsReported"],
    t.BUREAU_INSTITUTIONS: ["InstitutionRegistered"],
    t.BINDING_COMMANDS: ["CreateBinding", "RevokeBinding", "ChangePaymentOrder", "QueryBindings"],
    t.HIS_CHARGES: ["ChargeSubmitted", "ChargeRefunded"],
    "settlement.queries": ["QueryConsumption"],
    t.SETTLEMENT_RESULTS: ["ChargeSettled", "ChargeRejected", "RefundSettled", "FraudSuspected"],
    t.BINDING_EVENTS: ["BindingCreated", "BindingRevoked", "PaymentOrderChanged", "BindingRejected"],
}
PER_TOPIC = 20  # hostile messages per topic drawn by hypothesis (and 11 fixed): bounded, so the module stays near two minutes

# -- hostile values ------------------------------------------------------------------------------

EDGE_TIMES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00",
              "2026-02-30T10:00:00+08:00", "1970-01-01T00:00:00Z", "2999-12-31T23:59:59+08:00", "", "now"]
EXTREMES = [0, -1, 1e308, -1e308, 2**63, -(2**63), 2**64 + 1, 10**400, 0.1, True, False, None]
HUGE = "医" * 34_000  # ~100 KB of UTF-8
WEIRD = ["\u0000", "\x1b[31mred\x1b[0m\nforged log line", "-1.00", "1e2", "0.001", "١٢٣", "' OR 1=1 --",
         "${jndi:ldap://x}", "P-A-1-0", "../../etc/passwd", "\ud7ff\ue000" * 10]

hostile_value = st.one_of(
    st.sampled_from(EXTREMES), st.sampled_from(EDGE_TIMES), st.sampled_from(WEIRD), st.just(HUGE),
    st.integers(), st.floats(allow_nan=False, allow_infinity=False),
    st.recursive(st.integers() | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                 | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10),
)


@dataclass
class Hostile:
    value: bytes
    headers: list[tuple[str, bytes]]
    why: str
    event_id: str | None = None        # a readable envelope's id (binding answers carry it as command_id)
    correlation: str | None = None     # asked for an answer on reply.fuzz with this correlation_id
    charge_id: str | None = None       # a readable charge's id (settlement answers carry it)
    signature: str = "signed"          # how its signature headers are made (SIGNATURES)


# Contract version 3: how a hostile message's signature headers are made. "signed": by the partner
# the message speaks for (so the payload checks are reached); the others must each be refused.
SIGNATURES = ["signed", "unsigned", "forged", "other-algorithm", "other-partner", "huge-signature",
              "binary-signature"]


def _raw(draw) -> tuple[bytes, str]:
    kind = draw(st.sampled_from(["bytes", "text", "json", "envelope-head"]))
    if kind == "bytes":
        return draw(st.binary(min_size=0, max_size=300)), "random bytes"
    if kind == "text":
        return ("{" + draw(st.text(max_size=100))).encode("utf-8", "surrogatepass"), "not JSON"
    if kind == "json":
        value = draw(st.one_of(st.integers(), st.lists(st.integers(), max_size=3), st.text(max_size=20),
                               st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False)))
        return json.dumps(value).encode(), "JSON not an object"
    body = {"event_id": draw(st.sampled_from([None, 0, 12, "", "x" * 200, ["a"], {"a": 1}])),
            "event_type": draw(st.sampled_from(["ChargeSubmitted", "Nope", 7, None])), "payload": {}}
    return json.dumps(body).encode(), f"unanswerable envelope {body['event_id']!r}/{body['event_type']!r}"


def _envelope(draw, topic: str, base: dict[str, Any]) -> tuple[dict, str]:
    """A readable envelope (string id, known type) whose payload or envelope fields are hostile."""
    event_type = draw(st.sampled_from(EVENT_TYPES[topic]))
    payload = dict(base)
    if "charge_id" in payload:  # each its own, so its answer can be told apart
        payload["charge_id"] = f"Z{uuid.uuid4().hex[:15]}"
    where = draw(st.sampled_from(["payload-field", "payload-field", "payload-field", "payload-shape", "occurred_at",
                                  "extra"]))
    if where == "payload-field" and payload:
        name = draw(st.sampled_from(sorted(payload)))
        payload[name] = draw(hostile_value)
        why = f"{event_type}.{name} = {str(payload[name])[:40]!r}"
    elif where == "payload-shape":
        payload = draw(st.sampled_from([[], "payload", 0, None, {"nested": {"deeper": [base]}}]))
        why = f"{event_type} payload {str(payload)[:40]!r}"
    elif where == "occurred_at":
        why = f"{event_type} occurred_at edge"
    else:
        payload["zz_extra"] = HUGE
        why = f"{event_type} with a 100 KB extra field"
    body = {"event_id": str(uuid.uuid4()), "event_type": event_type, "schema_version": draw(st.sampled_from([1, 0, -1])),
            "occurred_at": draw(st.sampled_from(EDGE_TIMES)) if where == "occurred_at" else
            envelope.now().isoformat(), "payload": payload}
    return body, why


def _headers(draw) -> tuple[list[tuple[str, bytes]], str, str | None]:
    """(headers, why, correlation id when the answer is asked on reply.fuzz)."""
    kind = draw(st.sampled_from(["reply", "reply", "reply", "reply-platform", "reply-bad", "reply-missing", "huge",
                                 "binary", "many"]))
    correlation = str(uuid.uuid4())
    if kind == "reply":
        return [("reply_to", REPLY.encode()), ("correlation_id", correlation.encode())], "", correlation
    if kind == "reply-platform":
        target = draw(st.sampled_from([t.bureau_postings(REGION), t.BINDING_EVENTS, t.SETTLEMENT_RESULTS, t.HIS_CHARGES]))
        return [("reply_to", target.encode()), ("correlation_id", correlation.encode())], f" reply_to {target}", None
    if kind == "reply-bad":
        target = draw(st.sampled_from(["reply.", "reply." + "x" * 101, "reply./../x", "REPLY.x", "reply.a b",
                                       "reply.\u00e9", "reply.x\n"]))
        return [("reply_to", target.encode()), ("correlation_id", correlation.encode())], f" reply_to {target!r}", None
    if kind == "reply-missing":  # a valid name nobody created: answering must not hold the consumer up
        return ([("reply_to", f"reply.missing-{uuid.uuid4().hex[:8]}".encode()), ("correlation_id", correlation.encode())],
                " reply_to a missing reply. topic", None)
    if kind == "huge":
        return [("reply_to", REPLY.encode() * 10_000), ("x-big", b"h" * 100_000)], " 100 KB headers", None
    if kind == "binary":
        return [("reply_to", b"\xff\xfe\x00reply.fuzz"), ("correlation_id", b"\x00\xff" * 50)], " binary headers", None
    return [(f"h{i}", b"v" * 64) for i in range(2000)], " 2,000 headers", None


def signature_headers(kind: str, topic: str, key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
    """The x-signer / x-signature-alg / x-signature headers of a hostile message (SIGNATURES)."""
    own = signed_as(topic, value)
    if kind == "unsigned" or (kind == "signed" and own is None):
        return []
    if kind in ("signed", "other-algorithm"):
        headers = (own or dev_keys().gateway()).headers(topic, key, value)
        if kind == "other-algorithm":
            headers["x-signature-alg"] = "sm2"
        return [(k, v.encode()) for k, v in headers.items()]
    if kind == "other-partner":  # a real key of someone else: another region's bureau, a HIS for a command
        other = dev_keys().bureau("610300") if topic != t.BUREAU_ACCOUNTS else dev_keys().institution(INSTITUTION)
        return [(k, v.encode()) for k, v in other.headers(topic, key, value).items()]
    signer = (own.key_id if own else "gateway:k1").encode()
    if kind == "forged":
        return [(b"x-signer".decode(), signer), ("x-signature-alg", b"ed25519"),
                ("x-signature", base64.b64encode(os.urandom(64)))]
    if kind == "huge-signature":
        return [("x-signer", signer * 2000), ("x-signature-alg", b"ed25519" * 1000), ("x-signature", b"A" * 100_000)]
    return [("x-signer", b"\xff\xfe\x00" + signer), ("x-signature-alg", b"\x00ed25519"), ("x-signature", b"\xff" * 88)]


def draw_hostile(topic: str, base: dict[str, Any], count: int, seed: int) -> list[Hostile]:
    """`count` hostile messages for `topic`, drawn by hypothesis (derandomised: the same each run)."""
    found: list[Hostile] = []

    @st.composite
    def one(draw) -> Hostile:
        if draw(st.integers(0, 9)) < 3:
            value, why = _raw(draw)
            headers, hwhy, correlation = _headers(draw)
            return Hostile(value, headers, why + hwhy)
        body, why = _envelope(draw, topic, base)
        headers, hwhy, correlation = _headers(draw)
        payload = body["payload"]
        charge_id = payload.get("charge_id") if isinstance(payload, dict) else None
        return Hostile(json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass"), headers, why + hwhy,
                       body["event_id"], correlation, charge_id if isinstance(charge_id, str) else None)

    @hypothesis_seed(seed)
    @settings(max_examples=count * 2, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(one())
    def collect(message: Hostile) -> None:
        found.append(message)
    collect()
    # The first examples hypothesis draws are the simplest; a spread over all of them, the same each run.
    rng = random.Random(seed)
    chosen = rng.sample(found, min(count, len(found))) + fixed_hostile(topic, base)
    # Signatures drawn apart, so they do not change which payloads and headers are drawn: every
    # kind at least once on every topic, the rest signed as their partner.
    kinds = [k for k in SIGNATURES if k != "signed"]
    for i, h in enumerate(chosen):
        h.signature = kinds[i] if i < len(kinds) else "signed" if rng.random() < 0.8 else rng.choice(kinds)
        h.why += "" if h.signature == "signed" else f" signature {h.signature}"
    return chosen


def fixed_hostile(topic: str, base: dict[str, Any]) -> list[Hostile]:
    """The values the issue names, each once, in the payload's fields in turn (hypothesis may
    not happen to draw every one of them in a bounded run)."""
    out, fields = [], sorted(base)
    for i, value in enumerate(EXTREMES[:7] + EDGE_TIMES[:2] + [HUGE, {"nested": {"deeper": [[{}]]}}]):
        payload = dict(base)
        if "charge_id" in payload:
            payload["charge_id"] = f"Z{uuid.uuid4().hex[:15]}"
        name = fields[i % len(fields)]
        payload[name] = value
        event_id, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        body = {"event_id": event_id, "event_type": EVENT_TYPES[topic][i % len(EVENT_TYPES[topic])],
                "schema_version": 1, "occurred_at": envelope.now().isoformat(), "payload": payload}
        cid = payload.get("charge_id")
        out.append(Hostile(json.dumps(body, ensure_ascii=False).encode(), [("reply_to", REPLY.encode()),
                           ("correlation_id", correlation.encode())], f"{body['event_type']}.{name} = {str(value)[:30]}",
                           event_id, correlation, cid if isinstance(cid, str) else None))
    return out


# -- the stack and its services ------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Infra:
    infra = own_stack(tmp_path_factory.mktemp("fuzz-stack"))
    yield infra
    infra.stop()


@pytest.fixture(scope="module")
async def platform(stack, tmp_path_factory):
    """Binding, settlement and notify on the module's own broker and Redis, and a watcher over
    every topic they write, the dead-letter topics and the reply topic."""
    settings_ = stack.settings()
    watched = PLATFORM_TOPICS + [REPLY] + [t.dead_letter_topic(x) for x in CONSUMED]
    await ensure_topics(settings_, watched)
    logs = tmp_path_factory.mktemp("fuzz-logs")
    env = {**stack.env(), "LOG_LEVEL": "INFO", "SMS_PROVIDER": "sink", "QUIET_HOURS": "00:00-00:00",
           "BINDING_GROUP_ID": "fuzz-binding", "SETTLEMENT_GROUP_ID": "fuzz-settlement", "NOTIFY_GROUP_ID": "fuzz-notify"}
    services = [ServiceProcess(name, env, logs / f"{name}.log") for name in ("binding", "settlement", "notify")]
    producer = AIOKafkaProducer(**stack.kafka_client(max_request_size=4_000_000))
    watcher = Watcher(stack.kafka_bootstrap, watched, stack.security)
    try:
        for s in services:
            s.start()
        await producer.start()
        await watcher.start()
        yield Platform(stack, producer, watcher, services)
    finally:
        await watcher.stop()
        await producer.stop()
        for s in services:
            s.stop()


@dataclass
class Platform:
    stack: Infra
    producer: AIOKafkaProducer
    watcher: Watcher
    services: list[ServiceProcess]
    published: set[bytes] = field(default_factory=set)  # what the tests themselves put on any topic

    async def send(self, topic: str, value: bytes, key: str | None, headers: list[tuple[str, bytes]] | None = None,
                   signature: str = "signed"):
        """Publish, signed as `signature` says (SIGNATURES); signature headers come first, so a
        message with thousands of headers still shows them to a consumer that reads the first few."""
        self.published.add(value)
        raw_key = key.encode() if key else None
        headers = signature_headers(signature, topic, raw_key, value) + list(headers or [])
        return await self.producer.send_and_wait(topic, value, key=raw_key, headers=headers)

    def on(self, topic: str, match) -> list[Any]:
        return [r for r in self.watcher.records if r.topic == topic and match(r)]

    async def first(self, topic: str, match, what: str, timeout: float = ANSWER_WITHIN) -> Any:
        found = await eventually(lambda: self.on(topic, match), timeout, what, interval=0.1)
        return found[0]

    async def register(self, *people: dict) -> None:
        for p in people:
            await self.send(t.BUREAU_ACCOUNTS, command("PersonRegistered", p), p["person_id"])
        redis = make_redis(self.stack.redis_url)
        try:
            await wait_registered(redis, [p["person_id"] for p in people],
                                  prefixes=("stl:acct", "bnd:person", "ntf:person"))
        finally:
            await redis.aclose()

    def alive(self) -> None:
        dead = [s.name for s in self.services if s.process.poll() is not None]
        assert not dead, f"services died: {dead}"


def _json(record: Any) -> dict:
    try:
        value = json.loads(record.value)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _payload(record: Any) -> dict:
    p = _json(record).get("payload")
    return p if isinstance(p, dict) else {}


def _header(record: Any, name: str) -> bytes | None:
    return next((v for k, v in record.headers or () if k == name), None)


@dataclass
class Sent:
    hostile: Hostile
    topic: str
    partition: int
    offset: int


def fate(platform: Platform, sent: Sent) -> str | None:
    """How a hostile message ended: 'dead letter', 'rejection', or None (not yet, or never)."""
    h = sent.hostile
    for r in platform.on(t.dead_letter_topic(sent.topic), lambda r: _header(r, "dlq-offset") == str(sent.offset).encode()
                         and _header(r, "dlq-partition") == str(sent.partition).encode()):
        assert r.value == h.value, f"the dead letter of {h.why} does not keep the original bytes"
        return "dead letter"
    if sent.topic not in ANSWERING:
        return None
    if h.correlation and platform.on(REPLY, lambda r: _header(r, "correlation_id") == h.correlation.encode()):
        return "rejection"
    if sent.topic == t.BINDING_COMMANDS and h.event_id:
        if platform.on(t.BINDING_EVENTS, lambda r: _payload(r).get("command_id") == h.event_id):
            return "rejection"
    if sent.topic == t.HIS_CHARGES and (h.charge_id or h.event_id):
        if platform.on(t.SETTLEMENT_RESULTS, lambda r: (h.charge_id and _payload(r).get("charge_id") == h.charge_id)
                       or (h.event_id and _payload(r).get("source_event_id") == h.event_id)):
            return "rejection"
    return None


async def send_hostile(platform: Platform, topic: str, hostile: list[Hostile], key: str) -> list[Sent]:
    """All on the partition of `key` (most of them), so the ordinary message queues behind them."""
    sent = []
    for i, h in enumerate(hostile):
        meta = await platform.send(topic, h.value, key if i % 4 else None, h.headers, h.signature)
        sent.append(Sent(h, topic, meta.partition, meta.offset))
    return sent


async def assert_fates(platform: Platform, sent: list[Sent], ordinary_answered: bool) -> None:
    """Each hostile message on an answering topic ends as a rejection or a dead letter; unreadable
    bytes end as a dead letter on every topic; nothing lands on a platform topic a reply_to named."""
    def must_end(s: Sent) -> bool:
        # Queries are answered only on their reply topic: with none allowed, ignoring them is the contract.
        query = s.topic == "settlement.queries" or b'"QueryBindings"' in s.hostile.value
        asked_elsewhere = query and not s.hostile.correlation
        return (s.topic in ANSWERING and not asked_elsewhere) or s.hostile.event_id is None

    def pending() -> list[Sent]:
        return [s for s in sent if must_end(s) and fate(platform, s) is None]
    if pending():
        try:
            await eventually(lambda: not pending(), FATE_WITHIN, "every hostile message answered or dead-lettered")
        except AssertionError:
            left = pending()
            raise AssertionError(f"{len(left)} of {len(sent)} hostile messages on {sent[0].topic} neither rejected nor "
                                 f"dead-lettered, e.g. {[s.hostile.why for s in left[:5]]}") from None
    assert ordinary_answered
    correlations = {v.decode("utf-8", "replace") for s in sent for k, v in s.hostile.headers
                    if k == "correlation_id" and len(v) == 36}  # the unique (uuid) ones
    ours = {s.hostile.value for s in sent}
    stray = [(r.topic, r.value[:120]) for r in platform.watcher.records
             if not r.topic.startswith("reply.") and not r.topic.endswith(".dlq") and r.value not in ours
             and (_header(r, "correlation_id") or b"").decode("utf-8", "replace") in correlations
             and r.topic in (*POSTINGS, t.BINDING_EVENTS, t.SETTLEMENT_RESULTS, t.HIS_CHARGES)
             and r.topic != sent[0].topic]
    assert not stray, f"a reply_to steered output onto a platform topic: {stray[:3]}"
    def foreign(r) -> bool:
        """A record on a platform topic of a type no platform service writes there."""
        if r.value in platform.published:
            return False
        if r.topic in POSTINGS:
            return _json(r).get("event_type") not in ("Posting", "ReconciliationReport", "AccountDriftDetected")
        return (r.topic in (t.BINDING_EVENTS, t.SETTLEMENT_RESULTS) and r.topic != sent[0].topic
                and _json(r).get("event_type") not in EVENT_TYPES[r.topic])
    wrong_types = [(r.topic, _json(r).get("event_type")) for r in platform.watcher.records if foreign(r)]
    assert not wrong_types, f"foreign records on platform topics: {wrong_types[:3]}"
    platform.alive()


# -- the tests: one per consumed topic -----------------------------------------------------------

async def family(platform: Platform) -> tuple[dict, dict]:
    """A registered Xi'an employee (grantor) and a resident (beneficiary), and the institution."""
    grantor = person_registered(REGION, "employee", "5000.00", phone="13812345678")
    beneficiary = person_registered(REGION, "resident", phone="13712345678")
    await platform.register(grantor, beneficiary)
    await platform.send(t.BUREAU_INSTITUTIONS, command("InstitutionRegistered",
                                                       institution_registered(INSTITUTION, REGION)), INSTITUTION)
    return grantor, beneficiary


async def settles(platform: Platform, patient: dict, charge_id: str | None = None, institution: str = INSTITUTION,
                  timeout: float = ANSWER_WITHIN) -> dict:
    """An ordinary charge settles (resent when refused for a projection not yet read: not final in v2)."""
    charge = charge_submitted(patient, institution, REGION, 12_34, 1_00, charge_id=charge_id)

    async def settled():
        results = [_json(r) for r in platform.on(t.SETTLEMENT_RESULTS,
                                                 lambda r: _payload(r).get("charge_id") == charge["charge_id"])]
        if any(b.get("event_type") == "ChargeSettled" for b in results):
            return next(b for b in results if b.get("event_type") == "ChargeSettled")
        # provisional refusals (a projection not yet read: the institution, its keys, the patient)
        if results and results[-1]["payload"].get("reason_code") in ("UNKNOWN_INSTITUTION", "UNKNOWN_PATIENT",
                                                                     "UNKNOWN_SIGNER") \
                and len(results) < 20:
            await platform.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), patient["person_id"])
            await eventually(lambda: len(platform.on(t.SETTLEMENT_RESULTS, lambda r: _payload(r).get("charge_id")
                                                     == charge["charge_id"])) > len(results), timeout, "a resend")
        return None
    await platform.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), patient["person_id"])
    return await eventually(settled, timeout, f"charge {charge['charge_id']} settles", interval=0.1)


BASES = {
    t.HIS_CHARGES: lambda p: charge_submitted(p, INSTITUTION, REGION, 10_00, 0),
    t.BINDING_COMMANDS: lambda p: {"binding_id": "B-x", "requested_by": p["person_id"], "payment_order": 1,
                                   "person_id": p["person_id"], "role": "grantor"},
    "settlement.queries": lambda p: {"grantor_id": p["person_id"], "date_from": "2026-01-01", "date_to": "2026-12-31"},
    t.BUREAU_ACCOUNTS: lambda p: {"person_id": p["person_id"], "name": "甲", "region": REGION, "scheme": "employee",
                                  "employer": "单位", "phone": "13912345678", "balance": "10.00", "amount": "1.00",
                                  "bureau_seq": 5, "postings_applied_through": 0},
    t.BUREAU_INSTITUTIONS: lambda p: institution_registered("H61019999", REGION),
    t.SETTLEMENT_RESULTS: lambda p: {"charge_id": "C1", "patient_id": p["person_id"], "individual_borne": "1.00",
                                     "institution_code": INSTITUTION, "lines": [{"source": "cash", "amount": "1.00"}]},
    t.BINDING_EVENTS: lambda p: {"command_id": "c", "binding_id": "b", "grantor_id": p["person_id"],
                                 "beneficiary_id": p["person_id"], "relation": "father", "payment_order": 1,
                                 "start_date": "2026-01-01", "end_date": "2026-12-31", "grantor_region": REGION,
                                 "beneficiary_region": REGION},
}


def seed_of(topic: str) -> int:
    return sum(topic.encode())


async def test_his_charges_survive_hostile_messages(platform):
    grantor, beneficiary = await family(platform)
    await settles(platform, grantor, timeout=60)  # the institution is read before the hostile ones come
    hostile = draw_hostile(t.HIS_CHARGES, BASES[t.HIS_CHARGES](grantor), PER_TOPIC, seed_of(t.HIS_CHARGES))
    sent = await send_hostile(platform, t.HIS_CHARGES, hostile, grantor["person_id"])
    settled = await settles(platform, grantor)
    settled_lines = settled["payload"]["lines"]
    assert settled_lines[0]["source"] == "own"
    await assert_fates(platform, sent, True)


async def test_binding_commands_survive_hostile_messages(platform):
    grantor, beneficiary = await family(platform)
    hostile = draw_hostile(t.BINDING_COMMANDS, BASES[t.BINDING_COMMANDS](grantor), PER_TOPIC // 2,
                           seed_of(t.BINDING_COMMANDS))
    create = binding_form(grantor, beneficiary, 1)
    for h in draw_hostile(t.BINDING_COMMANDS, create, PER_TOPIC // 2, seed_of(t.BINDING_COMMANDS) + 1):
        if h.event_id and b'"CreateBinding"' in h.value:
            hostile.append(h)
    sent = await send_hostile(platform, t.BINDING_COMMANDS, hostile, beneficiary["person_id"])
    command_id = str(uuid.uuid4())
    await platform.send(t.BINDING_COMMANDS, command("CreateBinding", create, command_id), beneficiary["person_id"])
    answer = await platform.first(t.BINDING_EVENTS, lambda r: _payload(r).get("command_id") == command_id,
                                  "the ordinary CreateBinding answered")
    assert _json(answer)["event_type"] == "BindingCreated", _payload(answer)
    created = [s.hostile.why for s in sent if s.hostile.event_id and any(
        _json(r).get("event_type") == "BindingCreated" for r in platform.on(
            t.BINDING_EVENTS, lambda r, s=s: _payload(r).get("command_id") == s.hostile.event_id))]
    assert not created, f"hostile commands created bindings: {created}"
    await assert_fates(platform, sent, True)


async def test_settlement_queries_survive_hostile_messages(platform):
    grantor, _ = await family(platform)
    hostile = draw_hostile("settlement.queries", BASES["settlement.queries"](grantor), PER_TOPIC,
                           seed_of("settlement.queries"))
    sent = await send_hostile(platform, "settlement.queries", hostile, grantor["person_id"])
    correlation = str(uuid.uuid4())
    query = {"grantor_id": grantor["person_id"], "date_from": "2026-01-01", "date_to": "2026-12-31"}
    await platform.send("settlement.queries", command("QueryConsumption", query), grantor["person_id"],
                        [("reply_to", REPLY.encode()), ("correlation_id", correlation.encode())])
    answer = await platform.first(REPLY, lambda r: _header(r, "correlation_id") == correlation.encode(),
                                  "the ordinary QueryConsumption answered")
    assert _json(answer)["event_type"] == "ConsumptionListed", _json(answer)
    await assert_fates(platform, sent, True)


async def test_bureau_accounts_survive_hostile_messages(platform):
    grantor, _ = await family(platform)
    hostile = draw_hostile(t.BUREAU_ACCOUNTS, BASES[t.BUREAU_ACCOUNTS](grantor), PER_TOPIC, seed_of(t.BUREAU_ACCOUNTS))
    newcomer = person_registered(REGION, "employee", "100.00")
    sent = await send_hostile(platform, t.BUREAU_ACCOUNTS, hostile, newcomer["person_id"])
    await platform.register(newcomer)  # projected by all three services, behind the hostile ones
    await assert_fates(platform, sent, True)
    redis = make_redis(platform.stack.redis_url)
    try:
        assert (await cached_balances(redis, [grantor["person_id"]]))[grantor["person_id"]] >= 0
    finally:
        await redis.aclose()


async def test_bureau_institutions_survive_hostile_messages(platform):
    grantor, _ = await family(platform)
    code = f"H{uuid.uuid4().hex[:8].upper()}"
    hostile = draw_hostile(t.BUREAU_INSTITUTIONS, institution_registered(code, REGION), PER_TOPIC,
                           seed_of(t.BUREAU_INSTITUTIONS))
    sent = await send_hostile(platform, t.BUREAU_INSTITUTIONS, hostile, code)
    await platform.send(t.BUREAU_INSTITUTIONS, command("InstitutionRegistered", institution_registered(code, REGION)),
                        code)
    await settles(platform, grantor, institution=code)  # the registration behind the hostile ones was read
    await assert_fates(platform, sent, True)


async def bind(platform, grantor, beneficiary):
    """An ordinary CreateBinding, and its BindingCreated."""
    command_id = str(uuid.uuid4())
    await platform.send(t.BINDING_COMMANDS, command("CreateBinding", binding_form(grantor, beneficiary, 1), command_id),
                        beneficiary["person_id"])
    created = await platform.first(t.BINDING_EVENTS, lambda r: _payload(r).get("command_id") == command_id,
                                   "an ordinary binding", timeout=60)
    assert _json(created)["event_type"] == "BindingCreated", _payload(created)
    return created


async def test_notify_survives_hostile_settlement_results(platform):
    grantor, beneficiary = await family(platform)
    await bind(platform, grantor, beneficiary)
    charge_id = f"C{uuid.uuid4().hex[:12]}"
    hostile = draw_hostile(t.SETTLEMENT_RESULTS, BASES[t.SETTLEMENT_RESULTS](grantor), PER_TOPIC,
                           seed_of(t.SETTLEMENT_RESULTS))
    sent = await send_hostile(platform, t.SETTLEMENT_RESULTS, hostile, charge_id)  # the key settlement will use
    settled = await settles(platform, beneficiary, charge_id=charge_id)
    assert any(x["source"] == "grantor" for x in settled["payload"]["lines"]), settled
    await platform.first(t.NOTIFY_DELIVERIES, lambda r: _payload(r).get("source_event_id") == settled["event_id"],
                         "notify tells the grantor of the payment, behind the hostile results")
    await assert_fates(platform, sent, True)


async def test_notify_survives_hostile_binding_events(platform):
    grantor, beneficiary = await family(platform)
    hostile = draw_hostile(t.BINDING_EVENTS, BASES[t.BINDING_EVENTS](grantor), PER_TOPIC, seed_of(t.BINDING_EVENTS))
    sent = await send_hostile(platform, t.BINDING_EVENTS, hostile, beneficiary["person_id"])  # BindingCreated's key
    created = await bind(platform, grantor, beneficiary)
    await platform.first(t.NOTIFY_DELIVERIES, lambda r: _payload(r).get("source_event_id") == _json(created)["event_id"],
                         "notify tells of the binding, behind the hostile binding events")
    await assert_fates(platform, sent, True)


def test_hostile_draws_cover_what_the_issue_lists(infra):
    """The generator really produces each kind the issue names (so a passing fuzz run means something).
    (`infra`: the session's development keys, which registrations carry.)"""
    drawn = [h for topic in CONSUMED for h in draw_hostile(topic, BASES[topic](person_registered()), PER_TOPIC,
                                                           seed_of(topic))]
    whys = " ".join(h.why for h in drawn)
    for kind in ("random bytes", "not JSON", "JSON not an object", "reply_to bureau.postings", "reply_to binding.events",
                 "missing reply.", "100 KB headers", "binary headers", "2,000 headers", "100 KB extra field",
                 *(f"signature {kind}" for kind in SIGNATURES if kind != "signed")):
        assert kind in whys, f"no hostile message of kind {kind!r}"
    assert any(len(h.value) > 100_000 for h in drawn)
    values = b" ".join(h.value for h in drawn)
    assert b"0001-01-01T00:00:00+14:00" in values and b"9999-12-31T23:59:59-12:00" in values
    assert b"1e+308" in values or b"1e308" in values
    assert str(2**63).encode() in values
