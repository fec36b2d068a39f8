"""Contract version 3 at the binding service, through the real broker and Redis: binding.commands
is believed only from the gateway's key (notify's for DisputePayment), a refusal is never
recorded, the registry changes only by the bureau a person belongs to (a transfer lets another
region register him), a bureau decides only its own grantors' disputes, and the service does not
start without NAME_DIGEST_KEY."""

from __future__ import annotations

import json
import uuid

import pytest

from shared import topics as t
from shared.bureau import PERSON_REGISTERED, PERSON_TRANSFERRED
from shared.envelope import now, outcome_id, seal
from shared.signing import KeyRing, SigningKey, verify
from shared.state import person_bucket
from services.binding.storage.bindings import decode_insured
from tests.partners.desk import Desk, desk_binding_env
from tests.support import ServiceProcess, body, command, dev_keys, eventually, payload_of

pytestmark = pytest.mark.integration

GATEWAY = "gateway"


@pytest.fixture(scope="module")
def binding_service(infra, platform_pool):
    with platform_pool.alone(("binding",), desk_binding_env(infra)) as services:
        yield services["binding"]


@pytest.fixture
async def desk(bus, clean_redis, binding_service):
    return Desk(bus, clean_redis)


def signer_of(kind: str) -> SigningKey | None:
    keys = dev_keys()
    return {"unsigned": None, "unknown key": SigningKey.generate("gateway:k2"), GATEWAY: keys.gateway(),
            "bureau": keys.bureau("610100"), "his": keys.institution("H61019901"),
            "notify": keys.service("notify"), "settlement": keys.service("settlement")}[kind]


async def send_as(desk: Desk, kind: str, event_type: str, payload: dict, key: str, event_id: str,
                  headers: dict | None = None, tamper: bool = False) -> None:
    value = command(event_type, payload, event_id)
    signer = signer_of(kind)
    signed = signer.headers(t.BINDING_COMMANDS, key.encode(), value) if signer else {}
    if tamper:  # signed over other bytes than those sent
        signed = signer.headers(t.BINDING_COMMANDS, key.encode(), value.replace(b'"window"', b'"app"'))
    await desk.bus.send(t.BINDING_COMMANDS, value, key=key, headers=signed | (headers or {}), signer=None)


async def answer(desk: Desk, command_id: str, event_type: str, reason: str | None = None) -> dict:
    [record] = await desk.bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: payload_of(r).get("command_id") == command_id and body(r)["event_type"] == event_type
        and payload_of(r).get("reason_code") == reason)
    return body(record)


@pytest.mark.parametrize("kind, code, tamper", [
    ("unsigned", "UNSIGNED", False), ("unknown key", "UNKNOWN_SIGNER", False), (GATEWAY, "BAD_SIGNATURE", True),
    ("bureau", "NOT_SIGNERS", False), ("his", "NOT_SIGNERS", False), ("notify", "NOT_SIGNERS", False),
    ("settlement", "NOT_SIGNERS", False)])
async def test_a_command_not_believed_is_refused_unrecorded_and_a_resend_signed_by_the_gateway_is_decided(
        desk, kind, code, tamper):
    grantor, father = await desk.person(), await desk.person()
    command_id, form = str(uuid.uuid4()), desk.form(grantor, father, channel="window", clerk_id="W0001")
    await send_as(desk, kind, "CreateBinding", form, father["person_id"], command_id, tamper=tamper)
    refused = await answer(desk, command_id, "BindingRejected", code)
    # an event id of its own: the authentic outcome of this command id is another event
    assert refused["event_id"] == outcome_id(command_id, f"BindingRejected/{code}")
    assert refused["payload"]["message_zh"] and refused["payload"]["message_en"]
    # nothing recorded: the same command, signed by the gateway, makes the binding
    await send_as(desk, GATEWAY, "CreateBinding", form, father["person_id"], command_id)
    created = await answer(desk, command_id, "BindingCreated")
    assert created["event_id"] == outcome_id(command_id, "BindingCreated") != refused["event_id"]
    assert (await desk.redis.get(f"bnd:out:{command_id}")) is None


async def test_a_sender_not_proven_gets_no_reply_and_the_gateway_gets_a_signed_one(desk):
    grantor, father = await desk.person(), await desk.person()
    refused_id, answered_id = str(uuid.uuid4()), str(uuid.uuid4())
    for kind, command_id in (("unsigned", refused_id), (GATEWAY, answered_id)):  # one partition, in this order
        await send_as(desk, kind, "QueryBindings", {"person_id": father["person_id"]}, father["person_id"], command_id,
                      headers={"reply_to": "reply.tests", "correlation_id": command_id})
    [replied] = await desk.bus.watchers["reply.tests"].wait_for(
        lambda r: payload_of(r).get("command_id") == answered_id)
    assert body(replied)["event_type"] == "BindingsListed"
    headers = {k: v.decode() for k, v in replied.headers}
    ring = KeyRing.load(dev_keys().partner_keys_file)
    assert verify("reply.tests", replied.key, replied.value, headers, ring.find, now()).key_id == "binding:k1"
    await answer(desk, refused_id, "BindingRejected", "UNSIGNED")
    assert desk.bus.watchers["reply.tests"].matching(lambda r: payload_of(r).get("command_id") == refused_id) == []


async def test_notify_may_dispute_a_payment_for_a_grantor_who_replied_by_sms(desk):
    grantor = await desk.person()
    command_id = str(uuid.uuid4())
    dispute = {"reference": "7K2P9QXM", "requested_by": grantor["person_id"], "channel": "sms"}
    await send_as(desk, "notify", "DisputePayment", dispute, "7K2P9QXM", command_id)
    # believed, and decided: there is no such payment
    await answer(desk, command_id, "BindingRejected", "UNKNOWN_REFERENCE")


# -- bureau.accounts: who may change a person ----------------------------------------------------

async def registered_region(desk: Desk, person_id: str) -> str | None:
    raw = await desk.redis.hget(f"bnd:person:{person_bucket(person_id)}", person_id)
    return decode_insured(person_id, raw).region if raw else None


async def refused_registration(desk: Desk, event: bytes, signer: SigningKey) -> dict[str, str]:
    """Sent signed by `signer`; the dead letter binding (or another projection) made of it."""
    person_id = json.loads(event)["payload"]["person_id"]
    await desk.bus.send(t.BUREAU_ACCOUNTS, event, key=person_id, signer=signer)
    event_id = json.loads(event)["event_id"]
    [dead] = await desk.bus.watchers[t.dead_letter_topic(t.BUREAU_ACCOUNTS)].wait_for(
        lambda r: body(r)["event_id"] == event_id)
    return {k: v.decode() for k, v in dead.headers}


async def test_a_bureau_cannot_register_or_change_another_regions_person(desk):
    person = await desk.person(region="610100")
    baoji = dev_keys().bureau("610300")
    moved = seal(PERSON_REGISTERED, {**person, "region": "610300", "phone": "13900000000"})
    assert (await refused_registration(desk, moved, baoji))["dlq-error"].startswith("NOT_SIGNERS: ")
    # Baoji's key on an event naming Xi'an: it speaks for Baoji only
    renamed = seal(PERSON_REGISTERED, {**person, "name": "别人"})
    assert (await refused_registration(desk, renamed, baoji))["dlq-error"].startswith("NOT_SIGNERS: ")
    # each refused before anything was saved of its batch: his region and his name are as they were
    assert await registered_region(desk, person["person_id"]) == "610100"
    grantor = await desk.person()
    assert (await desk.bind(grantor, person))["event_type"] == "BindingCreated"  # his name still his


async def test_a_person_moves_to_another_region_once_his_own_bureau_transferred_him(desk):
    person = await desk.person(region="610100", scheme="resident")
    xian, baoji = dev_keys().bureau("610100"), dev_keys().bureau("610300")
    to_baoji = {"person_id": person["person_id"], "to_region": "610300"}
    # only his own region's bureau lets him go
    error = (await refused_registration(desk, seal(PERSON_TRANSFERRED, to_baoji), baoji))["dlq-error"]
    assert error.startswith("NOT_SIGNERS: PersonTransferred")
    await desk.bus.send(t.BUREAU_ACCOUNTS, seal(PERSON_TRANSFERRED, to_baoji), key=person["person_id"], signer=xian)
    moving = f"bnd:moving:{person_bucket(person['person_id'])}"
    await wait_until(lambda: desk.redis.hget(moving, person["person_id"]), b"610300")
    # then Baoji registers him: he is Baoji's, the transfer spent
    await desk.bus.send(t.BUREAU_ACCOUNTS, seal(PERSON_REGISTERED, {**person, "region": "610300"}),
                        key=person["person_id"], signer=baoji)
    await wait_until(lambda: registered_region(desk, person["person_id"]), "610300")
    assert await desk.redis.hget(moving, person["person_id"]) is None
    # and Xi'an no longer changes him
    back = seal(PERSON_REGISTERED, {**person, "region": "610100"})
    assert (await refused_registration(desk, back, xian))["dlq-error"].startswith("NOT_SIGNERS: ")
    assert await registered_region(desk, person["person_id"]) == "610300"


async def wait_until(read, expected, timeout: float = 30) -> None:
    async def reached() -> bool:
        return await read() == expected
    await eventually(reached, timeout, f"{expected!r} read", interval=0.02)


# -- NAME_DIGEST_KEY -----------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["", "too-short"])
def test_binding_does_not_start_without_a_name_digest_key(infra, tmp_path, key):
    service = ServiceProcess("binding", {**infra.env(), "NAME_DIGEST_KEY": key}, tmp_path / "binding.log")
    with pytest.raises(RuntimeError, match="binding exited"):
        service.start(timeout=60)
    assert "name_digest_key" in service.log_text() and (not key or key not in service.log_text())
