"""The binding use case on whole batches, against the real Redis (no broker: a stand-in records
what would be published): commands of one beneficiary decided in order, the same command twice
in a batch answered twice alike, a commit that lost a race decided again, and what a refusal
costs in Redis."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid

import pytest

from shared.kafka import Received
from shared.signing import KeyRing, SigningKey
from services.binding.domain.model import Insured, Scheme
from services.binding.domain.rules import name_digest
from services.binding.storage.bindings import BindingStore, Plan
from services.binding.usecases import BindingService, binding_id_for
from tests.support import binding_form, china_today, command, dev_keys, new_person_id

pytestmark = pytest.mark.integration
KEY = b"batch-test-key"


class RecordingBroker:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, value: bytes, topic: str, *, no_confirm: bool = False, **_: object):
        self.published.append((topic, value))
        if no_confirm:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done

    def outcomes(self) -> list[dict]:
        return [json.loads(v) for topic, v in self.published if topic == "binding.events"]


def person(scheme: str = "employee") -> dict:
    return {"person_id": new_person_id(), "name": f"批量{uuid.uuid4().hex[:4]}", "region": "610100",
            "scheme": scheme, "phone": "13812345678"}


@functools.cache
def gateway() -> SigningKey:
    return dev_keys().gateway()


def msg(event_type: str, payload: dict, command_id: str | None = None) -> Received:
    """A command as the gateway sends it: signed with its key."""
    value = command(event_type, payload, command_id or str(uuid.uuid4()))
    return Received("binding.commands", 0, 0, None, value, gateway().headers("binding.commands", None, value))


@pytest.fixture
async def service(clean_redis):
    store = BindingStore(clean_redis, outcome_ttl_seconds=3600)
    await store.load_functions()
    broker = RecordingBroker()
    svc = BindingService(store, broker, today=china_today, name_key=KEY, payer_grace_days=7,  # type: ignore[arg-type]
                         keys=KeyRing.load(dev_keys().partner_keys_file).find,
                         signing_key=dev_keys().service("binding"))

    async def register(*people: dict) -> None:
        await store.save_insured(Insured(p["person_id"], p["region"], Scheme(p["scheme"]), name_digest(p["name"], KEY))
                                 for p in people)
    return svc, broker, store, register


async def test_commands_for_one_beneficiary_in_one_batch_are_decided_in_order(service):
    svc, broker, _, register = service
    mother, son, daughter, third = person("resident"), person(), person(), person()
    await register(mother, son, daughter, third)
    first_id = str(uuid.uuid4())
    batch = [msg("CreateBinding", binding_form(son, mother, 1, "mother"), first_id),
             msg("CreateBinding", binding_form(daughter, mother, 2, "mother")),
             msg("CreateBinding", binding_form(third, mother, 2, "mother")),
             msg("RevokeBinding", {"binding_id": binding_id_for(first_id), "requested_by": son["person_id"]}),
             msg("CreateBinding", binding_form(third, mother, 1, "mother"))]
    await svc.handle_commands(batch)
    answers = [(o["event_type"], o["payload"].get("reason_code")) for o in broker.outcomes()]
    assert answers == [("BindingCreated", None), ("BindingCreated", None), ("BindingRejected", "TOO_MANY_GRANTORS"),
                       ("BindingRevoked", None), ("BindingCreated", None)]


async def test_the_same_command_twice_in_a_batch_is_answered_twice_with_the_same_bytes_and_binds_once(service):
    svc, broker, store, register = service
    father, son = person(), person()
    await register(father, son)
    again = msg("CreateBinding", binding_form(son, father, 1))
    await svc.handle_commands([again, again])
    await svc.handle_commands([again])
    values = [v for topic, v in broker.published if topic == "binding.events"]
    assert len(values) == 3 and len(set(values)) == 1
    assert len(await store.bindings_of_beneficiary(father["person_id"])) == 1


async def test_a_commit_whose_bindings_changed_since_they_were_read_is_refused_and_changes_nothing(service):
    _, _, store, _ = service
    ben = new_person_id()
    await store.commit([Plan(ben, expect="", bindings=[])], payers_ended_before=china_today())
    stale = Plan(ben, expect="something else", bindings=[])
    assert await store.commit([stale], payers_ended_before=china_today()) == [False]


async def test_a_refusal_read_off_the_registry_in_one_batch_becomes_a_binding_once_registered(service):
    svc, broker, _, register = service
    father, son = person(), person()
    await register(son)
    await svc.handle_commands([msg("CreateBinding", binding_form(son, father, 1))])
    await register(father)
    await svc.handle_commands([msg("CreateBinding", binding_form(son, father, 1))])
    assert [o["event_type"] for o in broker.outcomes()] == ["BindingRejected", "BindingCreated"]


async def test_a_refused_command_costs_a_field_of_a_shared_hash_and_is_answered_alike_again(service, clean_redis):
    svc, broker, store, register = service
    son = person()
    await register(son)
    refused = [msg("CreateBinding", binding_form(son, person(), 1)) for _ in range(6_000)]  # UNKNOWN_PERSON
    before = await used_memory(clean_redis)
    await svc.handle_commands(refused)
    cost = (await used_memory(clean_redis) - before) / len(refused)
    first = [v for topic, v in broker.published if topic == "binding.events"]
    assert {json.loads(v)["payload"]["reason_code"] for v in first} == {"UNKNOWN_PERSON"}
    assert not [k async for k in clean_redis.scan_iter(match="bnd:out:*")]
    buckets = [k async for k in clean_redis.scan_iter(match="bnd:rej:*")]
    assert sum([await clean_redis.hlen(k) for k in buckets]) == len(refused)
    assert {await clean_redis.object("encoding", k) for k in buckets} == {b"listpack"}
    # each bucket expires, no sooner than the outcome TTL (3600 s here) and no later than twice it
    assert all(3_590 <= ttl <= 7_200 for ttl in [await clean_redis.ttl(k) for k in buckets])
    # a redelivery (even after the person registered) is answered from the record, byte for byte
    broker.published.clear()
    await svc.handle_commands(refused[:50])
    assert [v for topic, v in broker.published if topic == "binding.events"] == first[:50]
    # what it costs, against the same records as a key each with its TTL (the layout before): here
    # about 6 refusals a bucket, where a bucket's own cost still shows (measured: 109 B against
    # 188 B); at 20 a bucket and more, 66-72 B a refusal

    await clean_redis.flushdb()
    before = await used_memory(clean_redis)
    pipe = clean_redis.pipeline(transaction=False)
    for m in refused:
        pipe.set(f"bnd:out:{json.loads(m.value)['event_id']}", f"1780000000|{new_person_id()}|BindingRejected|"
                 "UNKNOWN_PERSON|", ex=3600)
    await pipe.execute()
    a_key_each = (await used_memory(clean_redis) - before) / len(refused)
    assert cost < a_key_each * 0.7, (cost, a_key_each)


async def used_memory(redis) -> int:
    await redis.execute_command("MEMORY", "PURGE")
    return (await redis.info("memory"))["used_memory"]
