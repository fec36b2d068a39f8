"""The binding service through the real broker and the real Redis, as partners use it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from datetime import date, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared import topics as t
from shared.bureau import PERSON_REGISTERED
from shared.envelope import seal
from shared.kafka_security import client_kwargs
from shared.state import person_bucket
from services.binding.domain.model import Binding, Relation
from services.binding.domain.rules import name_digest
from services.binding.storage.bindings import BindingStore, Plan, Stored, decode_bindings, decode_insured
from tests.partners.desk import DESK_SIGNATURE as SIGNATURE, GRACE_DAYS, NAME_KEY, Desk, desk_binding_env
from tests.support import body, china_today, command, eventually, new_person_id, payload_of

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def binding_service(infra, platform_pool):
    with platform_pool.alone(("binding",), desk_binding_env(infra)) as services:
        yield services["binding"]


@pytest.fixture
async def desk(bus, clean_redis, binding_service):
    return Desk(bus, clean_redis)


def rejected(outcome: dict, reason: str) -> bool:
    return outcome["event_type"] == "BindingRejected" and outcome["payload"]["reason_code"] == reason


async def test_xian_grantor_binds_a_parent_insured_in_baoji(desk):
    son = await desk.person(region="610100")
    father = await desk.person(region="610300", scheme="resident")
    outcome = await desk.bind(son, father, relation="father", order=1)
    assert outcome["event_type"] == "BindingCreated"
    p = outcome["payload"]
    assert (p["grantor_id"], p["beneficiary_id"]) == (son["person_id"], father["person_id"])
    assert (p["grantor_region"], p["beneficiary_region"], p["payment_order"]) == ("610100", "610300", 1)
    assert p["binding_id"].startswith("BND-")


async def test_grantor_binds_several_family_members(desk):
    grantor = await desk.person()
    family = [await desk.person(region=r) for r in ("610100", "610300", "610400")]
    outcomes = [await desk.bind(grantor, m, relation=rel) for m, rel in zip(family, ("father", "mother", "child"))]
    assert [o["event_type"] for o in outcomes] == ["BindingCreated"] * 3


@pytest.mark.parametrize("relation", ["sibling", "grandfather", "friend"])
async def test_relations_other_than_parents_spouse_children_are_refused(desk, relation):
    grantor, other = await desk.person(), await desk.person()
    assert rejected(await desk.bind(grantor, other, relation=relation), "RELATION_NOT_ALLOWED")


async def test_binding_oneself_is_refused(desk):
    me = await desk.person()
    assert rejected(await desk.bind(me, me, relation="child"), "SELF_BINDING")


async def test_resident_insured_grantor_is_refused(desk):
    grantor, child = await desk.person(scheme="resident"), await desk.person()
    assert rejected(await desk.bind(grantor, child, relation="child"), "GRANTOR_NOT_EMPLOYEE")


async def test_unregistered_beneficiary_is_refused(desk):
    grantor = await desk.person()
    ghost = {"person_id": new_person_id(), "name": "无此人", "region": "610100", "community": "x"}
    assert rejected(await desk.bind(grantor, ghost), "UNKNOWN_PERSON")


async def test_name_not_matching_the_registration_is_refused(desk):
    grantor, mother = await desk.person(), await desk.person()
    assert rejected(await desk.bind(grantor, {**mother, "name": "别的名字"}, relation="mother"), "NAME_MISMATCH")


async def test_region_outside_the_province_is_refused(desk):
    grantor, spouse = await desk.person(), await desk.person()
    assert rejected(await desk.bind(grantor, {**spouse, "region": "110100"}, relation="spouse"), "OUTSIDE_PROVINCE")


async def test_id_number_with_a_wrong_check_digit_is_refused(desk):
    grantor, child = await desk.person(), await desk.person()
    pid = child["person_id"]
    broken = pid[:17] + ("0" if pid[17] != "0" else "1")
    assert rejected(await desk.bind(grantor, {**child, "person_id": broken}, relation="child"), "INVALID_ID_NUMBER")


async def test_malformed_grantor_phone_is_refused(desk):
    grantor, child = await desk.person(), await desk.person()
    assert rejected(await desk.bind({**grantor, "phone": "12345"}, child, relation="child"), "INVALID_PHONE")


async def test_beneficiary_without_a_phone_is_accepted(desk):
    grantor, child = await desk.person(), await desk.person(scheme="resident")
    outcome = await desk.bind(grantor, {**child, "phone": None}, relation="child")
    assert outcome["event_type"] == "BindingCreated"


@pytest.mark.parametrize("start,end", [(10, 0), (-30, -1), (-1, 30)],
                         ids=["start-after-end", "ended", "started-yesterday"])
async def test_start_after_end_an_ended_range_or_a_start_before_today_is_refused(desk, start, end):
    grantor, child = await desk.person(), await desk.person()
    today = china_today()
    outcome = await desk.bind(grantor, child, relation="child", start=today + timedelta(days=start),
                              end=today + timedelta(days=end))
    assert rejected(outcome, "INVALID_DATES")


async def test_notice_not_accepted_is_refused(desk):
    grantor, child = await desk.person(), await desk.person()
    assert rejected(await desk.bind(grantor, child, relation="child", notice_accepted=False), "NOTICE_NOT_ACCEPTED")


@pytest.mark.parametrize("digest", [None, "", "sha256:abc", "md5:" + "0" * 64])
async def test_commitment_without_a_signature_is_refused(desk, digest):
    grantor, child = await desk.person(), await desk.person()
    assert rejected(await desk.bind(grantor, child, relation="child", signature_digest=digest), "SIGNATURE_MISSING")


async def test_third_grantor_is_refused(desk):
    mother = await desk.person(region="610300", scheme="resident")
    son, daughter, third = await desk.person(), await desk.person(region="610400"), await desk.person()
    assert (await desk.bind(son, mother, relation="mother", order=1))["event_type"] == "BindingCreated"
    assert (await desk.bind(daughter, mother, relation="mother", order=2))["event_type"] == "BindingCreated"
    assert rejected(await desk.bind(third, mother, relation="mother", order=2), "TOO_MANY_GRANTORS")


async def test_third_grantor_after_both_others_end_is_accepted(desk):
    father = await desk.person(scheme="resident")
    a, b, c = await desk.person(), await desk.person(), await desk.person()
    today = china_today()
    first = await desk.bind(a, father, order=1, end=today + timedelta(days=30))
    second = await desk.bind(b, father, order=2, end=today + timedelta(days=30))
    assert [first["event_type"], second["event_type"]] == ["BindingCreated", "BindingCreated"]
    during = await desk.bind(c, father, order=1, start=today + timedelta(days=30), end=today + timedelta(days=90))
    assert rejected(during, "TOO_MANY_GRANTORS")  # the two set-up bindings really fill the place
    later = await desk.bind(c, father, order=1, start=today + timedelta(days=31), end=today + timedelta(days=90))
    assert later["event_type"] == "BindingCreated"


async def test_payment_order_already_taken_is_refused(desk):
    child = await desk.person()
    father, mother = await desk.person(), await desk.person()
    await desk.bind(father, child, relation="child", order=1)
    assert rejected(await desk.bind(mother, child, relation="child", order=1), "PAYMENT_ORDER_TAKEN")


async def test_second_active_binding_between_the_same_two_is_refused(desk):
    grantor, spouse = await desk.person(), await desk.person()
    await desk.bind(grantor, spouse, relation="spouse", order=1)
    assert rejected(await desk.bind(grantor, spouse, relation="spouse", order=2), "DUPLICATE_BINDING")


async def test_grantor_revokes_and_the_place_is_free_again(desk):
    child, a, b, c = await desk.person(), await desk.person(), await desk.person(), await desk.person()
    created = await desk.bind(a, child, relation="child", order=1)
    await desk.bind(b, child, relation="child", order=2)
    binding_id = created["payload"]["binding_id"]
    revoked = await desk.send("RevokeBinding", {"binding_id": binding_id, "requested_by": a["person_id"]})
    assert revoked["event_type"] == "BindingRevoked"
    assert revoked["payload"]["binding_id"] == binding_id
    assert (await desk.bind(c, child, relation="child", order=1))["event_type"] == "BindingCreated"
    assert await desk.redis.hget(f"bnd:pay:{child['person_id']}", binding_id) is None


async def test_only_the_grantor_may_revoke(desk):
    grantor, parent = await desk.person(), await desk.person()
    created = await desk.bind(grantor, parent, relation="mother")
    outcome = await desk.send("RevokeBinding", {"binding_id": created["payload"]["binding_id"],
                                                "requested_by": parent["person_id"]})
    assert rejected(outcome, "NOT_GRANTOR")


async def test_revoking_an_unknown_binding_is_refused(desk):
    someone = await desk.person()
    outcome = await desk.send("RevokeBinding", {"binding_id": "BND-nothing", "requested_by": someone["person_id"]})
    assert rejected(outcome, "BINDING_NOT_FOUND")


async def test_changing_to_the_other_grantors_order_swaps_the_two(desk):
    mother, son, daughter = await desk.person(scheme="resident"), await desk.person(), await desk.person()
    first = (await desk.bind(son, mother, relation="mother", order=1))["payload"]["binding_id"]
    second = (await desk.bind(daughter, mother, relation="mother", order=2))["payload"]["binding_id"]
    outcome = await desk.send("ChangePaymentOrder", {"binding_id": second, "payment_order": 1})
    assert outcome["event_type"] == "PaymentOrderChanged"
    moved = {c["binding_id"]: (c["previous_order"], c["payment_order"]) for c in outcome["payload"]["changes"]}
    assert moved == {second: (2, 1), first: (1, 2)}
    payers = await desk.redis.hgetall(f"bnd:pay:{mother['person_id']}")
    assert payers[second.encode()].split(b"|")[1] == b"1" and payers[first.encode()].split(b"|")[1] == b"2"


async def test_role_query_lists_each_role_over_request_reply(desk, bus):
    grantor, father, child = await desk.person(), await desk.person(), await desk.person()
    await desk.bind(grantor, father, relation="father", order=1)
    await desk.bind(child, grantor, relation="child", order=1)
    query_id = str(uuid.uuid4())
    await bus.send(t.BINDING_COMMANDS, command("QueryBindings", {"person_id": grantor["person_id"]}, query_id),
                   key=grantor["person_id"], headers={"reply_to": "reply.tests", "correlation_id": query_id})
    [reply] = await bus.watchers["reply.tests"].wait_for(lambda r: payload_of(r).get("command_id") == query_id)
    assert reply.headers and dict(reply.headers)["correlation_id"] == query_id.encode()
    listed = payload_of(reply)["bindings"]
    assert sorted(b["role"] for b in listed) == ["beneficiary", "grantor"]
    assert all("*" in b["counterpart_id"] for b in listed)


async def test_create_binding_answers_the_caller_on_reply_to(desk, bus):
    grantor, father = await desk.person(), await desk.person()
    cmd_id = str(uuid.uuid4())
    await bus.send(t.BINDING_COMMANDS, command("CreateBinding", desk.form(grantor, father), cmd_id),
                   key=father["person_id"], headers={"reply_to": "reply.tests", "correlation_id": cmd_id})
    [reply] = await bus.watchers["reply.tests"].wait_for(lambda r: payload_of(r).get("command_id") == cmd_id)
    assert body(reply)["event_type"] == "BindingCreated"


async def test_redelivered_command_yields_the_same_outcome_once(desk, bus):
    grantor, father = await desk.person(), await desk.person()
    cmd_id = str(uuid.uuid4())
    raw = command("CreateBinding", desk.form(grantor, father), cmd_id)
    for _ in range(3):
        await bus.send(t.BINDING_COMMANDS, raw, key=father["person_id"])
    outcomes = await bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: payload_of(r).get("command_id") == cmd_id, count=3)
    assert {o.value for o in outcomes} == {outcomes[0].value}
    assert body(outcomes[0])["event_type"] == "BindingCreated"
    assert len(await desk.redis.hgetall(f"bnd:pay:{father['person_id']}")) == 1


@pytest.mark.parametrize("payload,reason", [
    ({"binding_id": 12}, "INVALID_COMMAND"),
    ({}, "INVALID_COMMAND"),
    ("not an object", "INVALID_COMMAND"),
])
async def test_revoke_with_missing_or_ill_typed_fields_is_answered(desk, payload, reason):
    outcome = await desk.send("RevokeBinding", payload)
    assert rejected(outcome, reason)
    assert outcome["payload"]["message_zh"] and outcome["payload"]["message_en"]


async def test_create_binding_with_a_missing_field_is_answered(desk):
    grantor, father = await desk.person(), await desk.person()
    form = desk.form(grantor, father)
    del form["start_date"]
    assert rejected(await desk.send("CreateBinding", form), "INVALID_COMMAND")


async def test_envelope_without_occurred_at_is_answered(desk, bus):
    cmd_id = str(uuid.uuid4())
    raw = b'{"event_id": "%s", "event_type": "RevokeBinding", "payload": {}}' % cmd_id.encode()
    await bus.send(t.BINDING_COMMANDS, raw)
    assert rejected(await desk.outcome(cmd_id), "INVALID_COMMAND")


@pytest.mark.parametrize("raw,error", [
    (b"\xff\xfe not json", "not UTF-8 JSON"),
    (b"[1, 2, 3]", "not a JSON object"),
    (b'{"event_type": "CreateBinding", "payload": {}}', "event_id"),
    (b'{"event_id": "e-1", "event_type": "DeleteEverything", "payload": {}}', "unknown event_type"),
])
async def test_unanswerable_commands_go_to_the_dead_letter_topic_and_the_consumer_goes_on(desk, bus, raw, error):
    marker = uuid.uuid4().hex.encode()
    await bus.send(t.BINDING_COMMANDS, raw, key=marker.decode())
    [dead] = await bus.watchers[t.dead_letter_topic(t.BINDING_COMMANDS)].wait_for(lambda r: r.key == marker)
    headers = {k: v.decode() for k, v in dead.headers}
    assert dead.value == raw
    assert error in headers["dlq-error"] and headers["dlq-topic"] == t.BINDING_COMMANDS
    assert int(headers["dlq-offset"]) >= 0 and int(headers["dlq-partition"]) >= 0
    grantor, father = await desk.person(), await desk.person()
    assert (await desk.bind(grantor, father))["event_type"] == "BindingCreated"


async def test_unreadable_bureau_registration_goes_to_the_dead_letter_topic(desk, bus):
    marker = uuid.uuid4().hex
    await bus.send(t.BUREAU_ACCOUNTS, b"{{{", key=marker)
    bad = seal(PERSON_REGISTERED, {"person_id": "123", "name": "x", "region": "610100", "scheme": "employee"})
    await bus.send(t.BUREAU_ACCOUNTS, bad, key=marker)
    dead = await bus.watchers[t.dead_letter_topic(t.BUREAU_ACCOUNTS)].wait_for(
        lambda r: r.key == marker.encode(), count=2)
    assert {d.value for d in dead} == {b"{{{", bad}
    assert (await desk.person())["person_id"]  # registrations still flow


# --- contract version 2: strict types, reply topics, dates, renewals -----------------------------


@pytest.mark.parametrize("field,value", [("start_date", 0), ("payment_order", True), ("relation", 1),
                                         ("notice_accepted", "true")])
async def test_a_json_number_or_bool_where_the_contract_says_otherwise_is_an_invalid_command(desk, field, value):
    grantor, father = await desk.person(), await desk.person()
    outcome = await desk.send("CreateBinding", desk.form(grantor, father, **{field: value}), key=father["person_id"])
    assert rejected(outcome, "INVALID_COMMAND")
    assert f"{field}: " in outcome["payload"]["message_en"]
    assert await desk.redis.hlen(f"bnd:pay:{father['person_id']}") == 0


async def test_an_envelope_whose_time_is_the_number_zero_is_an_invalid_command(desk, bus):
    cmd_id = str(uuid.uuid4())
    raw = ('{"event_id": "%s", "event_type": "RevokeBinding", "occurred_at": 0, '
           '"payload": {"binding_id": "BND-x", "requested_by": "%s"}}' % (cmd_id, new_person_id())).encode()
    await bus.send(t.BINDING_COMMANDS, raw)
    assert rejected(await desk.outcome(cmd_id), "INVALID_COMMAND")


async def test_a_query_with_a_person_id_sent_as_a_number_is_refused_on_the_reply_topic(desk, bus):
    query_id = str(uuid.uuid4())
    await bus.send(t.BINDING_COMMANDS, command("QueryBindings", {"person_id": 610102198001010011}, query_id),
                   headers={"reply_to": "reply.tests", "correlation_id": query_id})
    [reply] = await bus.watchers["reply.tests"].wait_for(lambda r: payload_of(r).get("command_id") == query_id)
    assert body(reply)["event_type"] == "BindingRejected"
    assert payload_of(reply)["reason_code"] == "INVALID_ID_NUMBER"


async def _every_record(bootstrap: str, topic: str) -> list:
    """Everything `topic` holds now, read by a consumer of its own (not the shared watcher)."""
    consumer = AIOKafkaConsumer(**client_kwargs(bootstrap, enable_auto_commit=False))  # the session's security
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records = []
        async with asyncio.timeout(30):
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records += batch
        return records
    finally:
        await consumer.stop()


@pytest.mark.parametrize("asked", [t.BINDING_EVENTS, t.bureau_postings("610100"), "reply.", "reply.a/b", "REPLY.tests"])
async def test_a_reply_to_that_is_not_a_reply_topic_is_ignored(desk, bus, binding_service, asked):
    grantor, father = await desk.person(), await desk.person()
    cmd_id = str(uuid.uuid4())
    await bus.send(t.BINDING_COMMANDS, command("CreateBinding", desk.form(grantor, father), cmd_id),
                   key=father["person_id"], headers={"reply_to": asked, "correlation_id": cmd_id})
    assert (await desk.outcome(cmd_id))["event_type"] == "BindingCreated"
    # A positive signal from the same partition: a later command of the same beneficiary,
    # answered on a reply topic, is handled only after the first one's reply step.
    later_id = str(uuid.uuid4())
    await bus.send(t.BINDING_COMMANDS, command("QueryBindings", {"person_id": father["person_id"]}, later_id),
                   key=father["person_id"], headers={"reply_to": "reply.tests", "correlation_id": later_id})
    await bus.watchers["reply.tests"].wait_for(lambda r: payload_of(r).get("command_id") == later_id)
    on_events = [r for r in await _every_record(bus.bootstrap, t.BINDING_EVENTS) if cmd_id.encode() in r.value]
    on_postings = [r for r in await _every_record(bus.bootstrap, t.bureau_postings("610100"))
                   if cmd_id.encode() in r.value]
    assert (len(on_events), len(on_postings)) == (1, 0)
    assert f"ignored reply_to {json.dumps(asked)}" in binding_service.log_text()


async def test_a_reply_topic_nobody_created_does_not_hold_up_the_next_command(desk, bus):
    # The local broker creates a topic on its first write, so this is the end-to-end view; a
    # reply topic that never answers is staged in tests/unit/test_binding_replies.py.
    grantor, father = await desk.person(), await desk.person()
    missing = f"reply.nobody-listens-{uuid.uuid4().hex}"
    first_id = str(uuid.uuid4())
    await bus.send(t.BINDING_COMMANDS, command("CreateBinding", desk.form(grantor, father), first_id),
                   key=father["person_id"], headers={"reply_to": missing, "correlation_id": first_id})
    started = time.monotonic()
    # Same beneficiary, so the same partition: it queues behind the first command's reply.
    second = await desk.bind(grantor, father, relation="father", order=2)
    assert time.monotonic() - started < 15
    assert rejected(second, "DUPLICATE_BINDING")
    assert (await desk.outcome(first_id))["event_type"] == "BindingCreated"


async def test_a_renewal_starting_the_day_after_the_binding_ends_is_accepted(desk):
    grantor, mother = await desk.person(), await desk.person(scheme="resident")
    today = china_today()
    current = await desk.bind(grantor, mother, relation="mother", end=today + timedelta(days=20))
    assert current["event_type"] == "BindingCreated"
    overlapping = await desk.bind(grantor, mother, relation="mother", start=today + timedelta(days=20),
                                  end=today + timedelta(days=200))
    assert rejected(overlapping, "DUPLICATE_BINDING")
    renewal = await desk.bind(grantor, mother, relation="mother", start=today + timedelta(days=21),
                              end=today + timedelta(days=386))
    assert renewal["event_type"] == "BindingCreated"
    payers = await desk.redis.hgetall(f"bnd:pay:{mother['person_id']}")
    assert set(payers) == {current["payload"]["binding_id"].encode(), renewal["payload"]["binding_id"].encode()}


async def test_a_binding_still_to_start_counts_toward_the_two_grantors(desk):
    child, a, b, c = await desk.person(), await desk.person(), await desk.person(), await desk.person()
    today = china_today()
    assert (await desk.bind(a, child, relation="child", order=1))["event_type"] == "BindingCreated"
    later = await desk.bind(b, child, relation="child", order=2, start=today + timedelta(days=100))
    assert later["event_type"] == "BindingCreated"
    assert rejected(await desk.bind(c, child, relation="child", order=2, start=today + timedelta(days=150)),
                    "TOO_MANY_GRANTORS")


async def test_the_registry_holds_a_keyed_digest_of_the_name(desk):
    person = await desk.person()
    stored = await desk.redis.hget(f"bnd:person:{person_bucket(person['person_id'])}", person["person_id"])
    digest = decode_insured(person["person_id"], stored).name_digest
    assert digest == name_digest(person["name"], NAME_KEY.encode())
    assert digest != hashlib.sha256(person["name"].encode()).hexdigest()[:len(digest)]


# --- a binding id is used once; ended bindings leave the payer index ------------------------------


async def test_a_late_redelivery_after_the_outcome_expired_never_reactivates_a_revoked_binding(desk, bus):
    grantor, father = await desk.person(), await desk.person()
    cmd_id = str(uuid.uuid4())
    raw = command("CreateBinding", desk.form(grantor, father), cmd_id)
    await bus.send(t.BINDING_COMMANDS, raw, key=father["person_id"])
    [first] = await bus.watchers[t.BINDING_EVENTS].wait_for(lambda r: payload_of(r).get("command_id") == cmd_id)
    binding_id = payload_of(first)["binding_id"]
    revoked = await desk.send("RevokeBinding", {"binding_id": binding_id, "requested_by": grantor["person_id"]})
    assert revoked["event_type"] == "BindingRevoked"
    # A BindingCreated leaves no outcome record (it is rebuilt from the binding as made); should
    # one be there, it has expired now.
    await desk.redis.delete(f"bnd:out:{cmd_id}")

    await bus.send(t.BINDING_COMMANDS, raw, key=father["person_id"])
    _, again = await bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: payload_of(r).get("command_id") == cmd_id, count=2)
    assert body(again)["event_type"] == "BindingCreated"
    assert body(again)["event_id"] == body(first)["event_id"]
    assert payload_of(again) == payload_of(first)
    assert await desk.redis.hget(f"bnd:pay:{father['person_id']}", binding_id) is None
    kept = await BindingStore(desk.redis, outcome_ttl_seconds=60).bindings_of_beneficiary(father["person_id"])
    assert [b.is_revoked for b in kept if b.binding_id == binding_id] == [True]
    # Still revoked for the rules too: the grantor may bind again under a new command.
    assert (await desk.bind(grantor, father))["event_type"] == "BindingCreated"


async def test_a_late_redelivery_answers_with_the_order_the_binding_was_created_with(desk, bus):
    mother, son, daughter = await desk.person(scheme="resident"), await desk.person(), await desk.person()
    cmd_id = str(uuid.uuid4())
    raw = command("CreateBinding", desk.form(son, mother, relation="mother", order=1), cmd_id)
    await bus.send(t.BINDING_COMMANDS, raw, key=mother["person_id"])
    first = await desk.outcome(cmd_id)
    assert (await desk.bind(daughter, mother, relation="mother", order=2))["event_type"] == "BindingCreated"
    swapped = await desk.send("ChangePaymentOrder", {"binding_id": first["payload"]["binding_id"], "payment_order": 2})
    assert swapped["event_type"] == "PaymentOrderChanged"
    await desk.redis.delete(f"bnd:out:{cmd_id}")

    await bus.send(t.BINDING_COMMANDS, raw, key=mother["person_id"])
    _, again = await bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: payload_of(r).get("command_id") == cmd_id, count=2)
    assert payload_of(again) == first["payload"]
    payer = await desk.redis.hget(f"bnd:pay:{mother['person_id']}", first["payload"]["binding_id"])
    assert payer.split(b"|")[1] == b"2"  # the swap stands


def _past_binding(grantor: dict, beneficiary: dict, ended_days_ago: int) -> Binding:
    end = china_today() - timedelta(days=ended_days_ago)
    return Binding(binding_id=f"BND-past-{uuid.uuid4().hex[:12]}", grantor_id=grantor["person_id"],
                   beneficiary_id=beneficiary["person_id"], relation=Relation.FATHER, payment_order=1,
                   start_date=end - timedelta(days=365), end_date=end, grantor_region=grantor["region"],
                   beneficiary_region=beneficiary["region"], signature_digest=SIGNATURE, channel="app")


async def _plant(redis, binding: Binding) -> None:
    """A binding made a year ago, written by the store exactly as the service wrote it then."""
    store = BindingStore(redis, outcome_ttl_seconds=60)
    ben = binding.beneficiary_id
    raw = (await store.bindings_read([ben]))[ben]
    made = Stored(binding, binding.payment_order, 0)
    plan = Plan(ben, expect=raw.decode(), bindings=decode_bindings(ben, raw) + [made],
                new_grantors=[binding.grantor_id], new_ids=[binding.binding_id])
    assert await store.commit([plan], payers_ended_before=date(2000, 1, 1)) == [True]


async def test_the_sweep_removes_bindings_ended_before_the_grace_period_from_the_payer_index(desk):
    grantor, other, father = await desk.person(), await desk.person(), await desk.person()
    long_ended = _past_binding(grantor, father, ended_days_ago=GRACE_DAYS + 1)
    just_ended = _past_binding(other, father, ended_days_ago=1)
    for b in (long_ended, just_ended):
        await _plant(desk.redis, b)
    key = f"bnd:pay:{father['person_id']}"
    assert await desk.redis.hlen(key) == 2
    async def swept() -> bool:
        return not await desk.redis.hexists(key, long_ended.binding_id)
    await eventually(swept, 30, "the sweep (every 0.5 s) removed the long-ended binding", interval=0.1)
    # The sweep that removed the first looked at the second too: within the grace period it
    # still pays for a charge dated while it was in force.
    assert await desk.redis.hexists(key, just_ended.binding_id)


async def test_every_write_prunes_the_beneficiarys_ended_bindings_from_the_payer_index(desk):
    grantor, newcomer, father = await desk.person(), await desk.person(), await desk.person()
    ended = _past_binding(grantor, father, ended_days_ago=GRACE_DAYS + 30)
    await _plant(desk.redis, ended)
    # As written before the sweep existed: unknown to it, only a write can prune it.
    await desk.redis.zrem("bnd:ends", father["person_id"])
    # A witness the sweep does know, planted after: once it is gone, a sweep that started after
    # the index looked as it does now has run, and it left the unknown one alone.
    other_grantor, mother = await desk.person(), await desk.person()
    witness = _past_binding(other_grantor, mother, ended_days_ago=GRACE_DAYS + 30)
    await _plant(desk.redis, witness)

    async def swept() -> bool:
        return not await desk.redis.hexists(f"bnd:pay:{mother['person_id']}", witness.binding_id)
    await eventually(swept, 30, "a sweep (every 0.5 s) removed the witness", interval=0.1)
    assert await desk.redis.hexists(f"bnd:pay:{father['person_id']}", ended.binding_id)
    assert (await desk.bind(newcomer, father))["event_type"] == "BindingCreated"
    assert not await desk.redis.hexists(f"bnd:pay:{father['person_id']}", ended.binding_id)


async def test_restarting_the_service_and_redis_loses_no_binding(desk, bus, infra, binding_service):
    if infra.redis is None:
        pytest.skip("Redis restart needs the local Redis binary (infrastructure given from outside)")
    grantor, mother = await desk.person(), await desk.person(region="610300", scheme="resident")
    created = (await desk.bind(grantor, mother, relation="mother"))["payload"]["binding_id"]
    binding_service.kill()
    infra.redis.stop()
    infra.redis.start()
    await desk.redis.connection_pool.disconnect()
    binding_service.start()
    assert rejected(await desk.bind(grantor, mother, relation="mother", order=2), "DUPLICATE_BINDING")
    query_id = str(uuid.uuid4())
    await bus.send(t.BINDING_COMMANDS, command("QueryBindings", {"person_id": mother["person_id"]}, query_id),
                   headers={"reply_to": "reply.tests"})
    [reply] = await bus.watchers["reply.tests"].wait_for(lambda r: payload_of(r).get("command_id") == query_id)
    assert [b["binding_id"] for b in payload_of(reply)["bindings"]] == [created]
