"""docs/partners.md's example messages, published verbatim against the real broker and Redis with
the settlement, binding and notify services as processes, each answer checked against the one the
guide documents.

The guide marks each fenced block with an HTML comment just before it:
`<!-- example: NAME | ROLE | topic=... | key=... | headers=k:v,k:v | signer=... | varies=path,path -->`,
where ROLE is `input` (published as it stands: the block's text is the message value), `output`
(what the platform publishes in answer to the input before it), `sms` (the text of an SMS that
input causes, `phone=` and `template=` naming it: looked for where notify's `sink` provider keeps
what it sends, `_sms_sent`), or `given` (a fact the examples stand on that no partner message
makes; see `_given`). `varies` names the fields the platform
fills in from its clock or from where the record landed (dotted paths into the JSON,
`header.NAME` for a header); they are left out of the comparison, everything else must be equal.

Contract version 3: every input is signed as a partner signs it, with this session's development
keys (tests/support.py, `Bus.send`): by the institution of a HIS message, the bureau of a bureau
message's region, the gateway for binding.commands and sms.uplink. An input's `signer=` names
another partner (`his:<institution code>`, `bureau:<region>`) or `none` (unsigned), for the
examples of refused signatures. The guide's InstitutionRegistered examples list the guide's own
example keys (section 2.6 publishes one private half); this test cannot sign with keys whose
private halves it does not hold for every institution, so it publishes those registrations with
`public_keys` replaced by the session's development key of that institution (`_as_published`),
and that one field is the only change. What the platform sends partners (postings and reports on
bureau.postings.<region>, replies on reply. topics) and what notify puts on binding.commands is
checked to verify, by the platform key the guide names, against the session's trust anchor.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pytest

from shared import bureau, envelope, topics
from shared.institutions import INSTITUTION_REGISTERED
from shared.kafka import ensure_topics
from shared.signing import KeyRing, SigningKey, Signer, verify
from shared.state import person_bucket
from services.binding.domain.model import Binding, Relation
from services.binding.storage.bindings import BindingStore, Plan, Stored, epoch
from tests.support import AUTO, ROOT, Watcher, dev_keys, eventually

pytestmark = pytest.mark.integration

GUIDE = ROOT / "docs" / "partners.md"
_BLOCK = re.compile(r"<!-- example: (?P<attrs>[^>]*?) -->\n```[a-z]*\n(?P<text>.*?)\n```", re.S)
# The examples carry fixed dates (charges of 2026-11-20), so a reader can follow every figure and
# the documented answers never change. Settlement refuses charges older than
# SETTLEMENT_MAX_CHARGE_AGE_DAYS (default 7) as INVALID_CHARGE, so this test gives it a century:
# the examples stay valid on any later day, and nothing else about settling depends on it.
SETTLEMENT_ENV = {"SETTLEMENT_MAX_CHARGE_AGE_DAYS": "36500", "LOG_LEVEL": "INFO"}
# A grantor may dispute a payment BINDING_DISPUTE_WINDOW_DAYS (default 90) after its charge; the
# examples' charges are of November 2026, so the binding service is given its longest window (ten
# years) for the same reason. Notify runs with its default provider (`sink`): the SMS it sends are
# not partner messages, but it is what turns an SMS reply into a DisputePayment (section 11).
BINDING_ENV = {"BINDING_DISPUTE_WINDOW_DAYS": "3650"}
SERVICES = ("settlement", "binding", "notify")
ANSWER_TIMEOUT = 30.0


@dataclass
class Block:
    name: str
    role: str
    topic: str
    text: str
    key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    varies: tuple[str, ...] = ()
    signer: str = AUTO
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def value(self) -> bytes:
        return self.text.encode("utf-8")

    def json(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.text)
        except json.JSONDecodeError:
            return None


@dataclass
class Step:
    given_or_input: Block
    outputs: list[Block] = field(default_factory=list)


def guide_blocks(text: str) -> list[Block]:
    blocks = []
    for match in _BLOCK.finditer(text):
        name, role, *rest = [part.strip() for part in match["attrs"].split("|")]
        attrs = dict(part.split("=", 1) for part in rest)
        headers = dict(h.split(":", 1) for h in attrs.get("headers", "").split(",") if h)
        varies = tuple(v for v in attrs.get("varies", "").split(",") if v)
        blocks.append(Block(name, role, attrs["topic"], match["text"], attrs.get("key"), headers, varies,
                            attrs.get("signer", AUTO), attrs))
    return blocks


def guide_steps() -> list[Step]:
    steps: list[Step] = []
    for block in guide_blocks(GUIDE.read_text(encoding="utf-8")):
        if block.role in ("output", "sms"):
            assert steps and steps[-1].given_or_input.name == block.name, f"output {block.name} follows no input"
            steps[-1].outputs.append(block)
        else:
            assert block.role in ("input", "given"), block.role
            steps.append(Step(block))
    return steps


def _without(value: Any, paths: tuple[str, ...]) -> Any:
    """`value` less the dotted paths (list indexes as numbers) the guide says vary by run."""
    value = json.loads(json.dumps(value))
    for path in paths:
        *parents, last = path.split(".")
        node = value
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.get(part, {})
        if isinstance(node, dict):
            node.pop(last, None)
    return value


def test_the_guide_documents_an_answer_for_its_examples() -> None:
    steps = guide_steps()
    assert len(steps) >= 10 and sum(len(s.outputs) for s in steps) >= 10
    for step in steps:
        for out in step.outputs:
            if out.role == "sms":
                assert out.attrs.get("phone") and out.attrs.get("template"), f"{out.name}: an SMS names phone and template"
                continue
            # Every answer is an envelope, except a dead letter: the very bytes that were sent.
            assert out.json() is not None or (out.topic.endswith(".dlq") and out.text == step.given_or_input.text), \
                f"{out.name}: an answer that is neither JSON nor the dead-lettered input"


async def test_every_example_in_the_partner_guide_gets_its_documented_answer(
    infra, bus, clean_redis, platform_pool
) -> None:
    steps = guide_steps()
    # The outputs' topics (reply topics are the partner's to have; the operator makes them) and
    # settlement.results, the platform's record of every outcome (_settled_day, _nothing_undocumented).
    watched = sorted({b.topic for s in steps for b in s.outputs} | {topics.SETTLEMENT_RESULTS})
    await ensure_topics(infra.settings(kafka_topic_partitions=3), watched)
    watcher = Watcher(infra.kafka_bootstrap, watched, infra.security)
    await watcher.start()
    try:
        with platform_pool.alone(SERVICES, {**infra.env(), **SETTLEMENT_ENV, **BINDING_ENV}):
            answers: set[str] = set()
            for step in steps:
                await _play(step, bus, watcher, clean_redis, answers)
        _nothing_undocumented(steps, watcher, answers)
        signed = [out for s in steps for out in s.outputs if _expected_signer(s, out)]
        assert len(signed) >= 20, f"only {len(signed)} of the guide's answers were checked for the platform's signature"
    finally:
        await watcher.stop()


def _nothing_undocumented(steps: list[Step], watcher: Watcher, answers: set[str]) -> None:
    """No answer the guide does not show: every result and dead letter keyed by one of the guide's
    charges or people is a documented one (a registration dead-lettered, say, would be caught).
    `answers`: the event ids of the answers found for the guide's outputs, which for an answer
    whose id varies by run (a reconciliation's, derived from the day) is this run's id."""
    documented = {_event_id(out.value) or out.text for s in steps for out in s.outputs} | answers
    keys = {b.key.encode() for s in steps for b in (s.given_or_input, *s.outputs)  # not regions: shared
            if b.key and not (b.key.isdigit() and len(b.key) == 6)}
    stray = [(r.topic, r.value.decode(errors="replace")[:300]) for r in watcher.records
             if (r.topic == topics.SETTLEMENT_RESULTS or r.topic.endswith(".dlq")) and r.key in keys
             and (_event_id(r.value) or r.value.decode(errors="replace")) not in documented]
    assert not stray, f"answers the guide does not document: {stray}"


async def _play(step: Step, bus, watcher: Watcher, redis, answers: set[str]) -> None:
    block = step.given_or_input
    if block.role == "given":
        await _given(block, redis)
        return
    # What was there before: a rerun against a broker that keeps its topics finds the answers
    # of earlier runs (same ids), and a resend's answer is the same message again.
    texts = [out for out in step.outputs if out.role == "sms"]
    outputs = [out for out in step.outputs if out.role != "sms"]
    matchers = [_matcher(out) for out in outputs]
    before = [len(watcher.matching(m)) for m in matchers]
    await bus.send(block.topic, _as_published(block, watcher), key=block.key, headers=block.headers or None,
                   signer=_signer(block.signer))
    for out in texts:
        await _sms_sent(out, redis)
    for out, match, seen in zip(outputs, matchers, before):
        try:
            found = await watcher.wait_for(match, ANSWER_TIMEOUT, count=seen + 1)
        except TimeoutError:
            dlq = out.topic.endswith(".dlq")  # where the reason is in a header
            latest = [r.value.decode(errors="replace") + (f"  headers {dict(r.headers or ())}" if dlq else "")
                      for r in watcher.matching(lambda r: r.topic == out.topic)][-3:]
            raise AssertionError(f"{out.name}: no answer on {out.topic} within {ANSWER_TIMEOUT:.0f} s; "
                                 f"the latest there:\n" + "\n".join(latest)) from None
        _check(out, found[-1])
        _check_signed(step, out, found[-1])
        answers.add(_event_id(found[-1].value) or "")
    if not step.outputs:
        await _applied(block, redis)


def _signer(name: str) -> SigningKey | None | str:
    """An input's `signer=`: the partner a message speaks for (AUTO), another partner's key, or none."""
    if name == AUTO:
        return AUTO
    if name == "none":
        return None
    owner, who = name.split(":", 1)
    assert owner in ("his", "bureau"), f"signer={name}: his:<institution code>, bureau:<region> or none"
    return dev_keys().institution(who) if owner == "his" else dev_keys().bureau(who)


# Who signs what the platform sends (docs/partners.md, section 2.5): the service that answers.
_ANSWERED_BY = {topics.HIS_CHARGES: "settlement:k1", topics.HIS_RECONCILIATION: "settlement:k1",
                topics.BINDING_COMMANDS: "binding:k1"}


def _expected_signer(step: Step, out: Block) -> str | None:
    """The platform key an output must verify by, where a partner (or a service) reads it: the
    postings topics, reply topics, and the DisputePayment notify puts on binding.commands."""
    if out.topic.startswith(topics.BUREAU_POSTINGS + "."):
        return "settlement:k1"
    if out.topic.startswith("reply."):
        return _ANSWERED_BY[step.given_or_input.topic]
    if out.topic == topics.BINDING_COMMANDS:
        return "notify:k1"
    return None


def _check_signed(step: Step, out: Block, record: Any) -> None:
    expected = _expected_signer(step, out)
    if expected is None:
        return
    headers = {k: v.decode() for k, v in record.headers or ()}
    ring = KeyRing.load(dev_keys().partner_keys_file)
    signer = verify(record.topic, record.key, record.value, headers, ring.find, envelope.now())
    assert isinstance(signer, Signer) and signer.key_id == expected and signer.owner == "platform", (
        f"{out.name} on {out.topic}: signed {headers.get('x-signer')!r}, verified as {signer!r}, not by {expected}")


def _as_published(block: Block, watcher: Watcher) -> bytes:
    """The block's text, as it stands, but for two fields. A registration's `public_keys`: the
    guide shows its own example keys, the test signs with the session's development key of the
    institution (see the module's docstring). A daily report's `day`: the day the platform posted
    (China time, its own clock), which in the guide's story is the charges' day and in this run is
    the day the test settled them; it is taken from their postings."""
    if block.json() is not None and block.json().get("event_type") == INSTITUTION_REGISTERED:
        body = json.loads(block.text)
        code = body["payload"]["institution_code"]
        assert [k["key_id"].split(":")[:2] for k in body["payload"]["public_keys"]] == [["his", code]], block.name
        body["payload"]["public_keys"] = dev_keys().institution_public_keys(code)
        return json.dumps(body, ensure_ascii=False, indent=2).encode()
    if "payload.day" not in block.varies:
        return block.value
    body = json.loads(block.text)
    if body["event_type"] in ("InstitutionDailyTotals", "InstitutionDailyDetail"):
        body["payload"]["day"] = _settled_day(block, body["payload"]["institution_code"], watcher)
        return json.dumps(body, ensure_ascii=False, indent=2).encode()
    listed = {p["posting_id"] for p in body["payload"]["postings"]}
    postings = topics.bureau_postings(body["payload"]["region"])
    latest = {_posting_id(r.value): json.loads(r.value)["payload"]["posted_at"][:10]  # this run's, on a rerun
              for r in watcher.matching(lambda r: r.topic == postings and _posting_id(r.value) in listed)}
    days = set(latest.values())
    assert len(days) == 1, f"{block.name}: the listed postings were posted on {sorted(days)}"
    body["payload"]["day"] = days.pop()
    return json.dumps(body, ensure_ascii=False, indent=2).encode()


def _settled_day(block: Block, institution: str, watcher: Watcher) -> str:
    """An institution's reconciliation day (section 12) is the China date of the platform's
    settled_at: in this run, the day the test settled the institution's charges."""
    latest = {}  # charge id -> day: this run's, on a rerun
    for r in watcher.matching(lambda r: r.topic == topics.SETTLEMENT_RESULTS):
        body = json.loads(r.value)
        if body.get("event_type") == "ChargeSettled" and body["payload"].get("institution_code") == institution:
            latest[body["payload"]["charge_id"]] = datetime.fromisoformat(body["payload"]["settled_at"]).date()
    days = {day.isoformat() for day in latest.values()}
    assert len(days) == 1, f"{block.name}: {institution}'s charges were settled on {sorted(days)}"
    return days.pop()


def _posting_id(value: bytes) -> str | None:
    try:
        return json.loads(value)["payload"].get("posting_id")
    except (ValueError, KeyError, AttributeError, TypeError):
        return None


def _matcher(out: Block):
    expected = out.json()
    if out.topic.endswith(".dlq"):  # a dead letter: the original bytes, with the documented reason
        varies = {v.removeprefix("header.") for v in out.varies}
        fixed = {k: v.encode() for k, v in out.headers.items() if k not in varies}
        value = out.value if expected is None else None
        event_id = None if expected is None else expected["event_id"]
        return lambda r: r.topic == out.topic and fixed.items() <= dict(r.headers or ()).items() and (
            r.value == value if value is not None else _event_id(r.value) == event_id)
    if "event_id" not in out.varies:
        event_id = expected["event_id"]
        return lambda r: r.topic == out.topic and _event_id(r.value) == event_id
    # An id derived from something that varies by run (a report's day): the answer is the record
    # equal to the documented one in everything that does not vary.
    paths = tuple(v for v in out.varies if not v.startswith("header."))
    wanted = _without(expected, paths)
    return lambda r: r.topic == out.topic and _event_id(r.value) is not None \
        and _without(json.loads(r.value), paths) == wanted


def _event_id(value: bytes) -> str | None:
    try:
        return json.loads(value).get("event_id")
    except (ValueError, AttributeError):
        return None


def _check(out: Block, record: Any) -> None:
    where = f"{out.name} on {out.topic}"
    if out.key is not None:
        assert record.key == out.key.encode(), f"{where}: key {record.key!r}"
    headers = {k: v.decode() for k, v in record.headers or ()}
    header_varies = tuple(v.removeprefix("header.") for v in out.varies if v.startswith("header."))
    for name, value in out.headers.items():
        if name not in header_varies:
            assert headers.get(name) == value, f"{where}: header {name} is {headers.get(name)!r}"
    for name in header_varies:
        assert name in headers, f"{where}: header {name} missing"
    expected = out.json()
    if expected is None:
        assert record.value == out.value, where
        return
    paths = tuple(v for v in out.varies if not v.startswith("header."))
    actual = json.loads(record.value)
    assert _without(actual, paths) == _without(expected, paths), (
        f"{where}: the platform published\n{json.dumps(actual, ensure_ascii=False, indent=2)}")


async def _sms_sent(out: Block, redis) -> None:
    """The SMS the guide quotes, as notify's `sink` provider kept it (ntf:sink, newest first: the
    masked phone, the template, the text): the very text a real gateway would have been given."""
    phone, template = out.attrs["phone"], out.attrs["template"]

    async def sent() -> bool:
        kept = [json.loads(r) for r in await redis.lrange("ntf:sink", 0, -1)]
        return any(r["phone"] == phone and r["template"] == template and r["text"] == out.text for r in kept)
    try:
        await eventually(sent, ANSWER_TIMEOUT, f"{out.name}: SMS {template} to {phone}")
    except (AssertionError, TimeoutError):
        kept = [json.loads(r) for r in await redis.lrange("ntf:sink", 0, -1)]
        raise AssertionError(f"{out.name}: no SMS {template} to {phone} with the guide's text; notify sent "
                             f"{[(r['phone'], r['template'], r['text']) for r in kept][:5]}") from None


async def _applied(block: Block, redis) -> None:
    """An input the platform answers with nothing (bureau data) is waited for where settlement
    keeps it, so the next example is not decided on a projection that has not read it yet."""
    body = json.loads(block.text)
    payload, event_type = body["payload"], body["event_type"]
    if event_type == INSTITUTION_REGISTERED:
        # registered, with the key the test signs its HIS messages with (one atomic step in settlement)
        code, region = payload["institution_code"], payload["region"].encode()
        key_id = dev_keys().institution(code).key_id.encode()
        await eventually(lambda: _institution_known(redis, code, region, key_id), ANSWER_TIMEOUT, f"institution {code}")
        return
    person = payload["person_id"]
    if event_type == bureau.PERSON_TRANSFERRED:
        to_region = payload["to_region"].encode()

        async def transferred() -> bool:
            return await redis.hget("stl:moving", person) == to_region
        await eventually(transferred, ANSWER_TIMEOUT, f"{event_type} of {block.name} applied")
        return
    seq = 0 if event_type == bureau.PERSON_REGISTERED else payload["bureau_seq"]
    region = payload["region"].encode() if event_type == bureau.PERSON_REGISTERED else None

    async def applied() -> bool:
        raw = await redis.hget(f"stl:acct:{person_bucket(person)}", person)
        fields = (raw or b"").split(b"|")
        return raw is not None and int(fields[1]) >= seq and region in (None, fields[2])
    await eventually(applied, ANSWER_TIMEOUT, f"{event_type} of {block.name} applied")


async def _institution_known(redis, code: str, region: bytes, key_id: bytes) -> bool:
    registered = (await redis.hget("stl:inst", code) or b"").split(b"|")[0] == region
    return registered and key_id in (await redis.hget("stl:ikeys", code) or b"")


async def _given(block: Block, redis) -> None:
    """A binding in force on the examples' dates. The binding service refuses a binding that
    starts before the day it is made (contract version 2), so one in force on 2026-11-20 cannot be
    made through it on a later day; the test writes what the binding service writes when it
    publishes this BindingCreated, through the binding service's own store and Function: its
    record of the binding (what its limit, pause and dispute commands act on) and the payer index
    entry settlement reads (shared/binding_index.py)."""
    body = json.loads(block.text)
    assert body["event_type"] == "BindingCreated", f"{block.name}: only a BindingCreated can be given"
    p = body["payload"]
    binding = Binding(binding_id=p["binding_id"], grantor_id=p["grantor_id"], beneficiary_id=p["beneficiary_id"],
                      relation=Relation(p["relation"]), payment_order=p["payment_order"],
                      start_date=date.fromisoformat(p["start_date"]), end_date=date.fromisoformat(p["end_date"]),
                      grantor_region=p["grantor_region"], beneficiary_region=p["beneficiary_region"],
                      signature_digest="", channel="app")
    made = Stored(binding, p["payment_order"], epoch(datetime.fromisoformat(body["occurred_at"])))
    store = BindingStore(redis, outcome_ttl_seconds=86400)
    await store.load_functions()
    plan = Plan(p["beneficiary_id"], expect="", bindings=[made], new_grantors=[p["grantor_id"]],
                new_ids=[p["binding_id"]])
    assert await store.commit([plan], payers_ended_before=binding.start_date) == [True], f"{block.name}: not written"
