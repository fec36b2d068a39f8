"""The binding service's queries for the gateway, through the real broker and the real Redis:
an earlier command's outcome (QueryCommandOutcome), and the fields a gateway adds to commands
(`clerk_id` at a service window, `requested_by` on ChangePaymentOrder)."""

from __future__ import annotations

import json
import uuid

import pytest

from shared import topics as t
from shared.bureau import PERSON_REGISTERED
from shared.envelope import outcome_id, seal
from tests.support import binding_form, command, payload_of, person_registered, wait_registered

pytestmark = pytest.mark.integration

REPLY_TOPIC = "reply.tests"


class Window:
    """A caller of the binding service as the gateway is: commands, then questions about them
    on its own reply topic."""

    def __init__(self, bus, redis):
        self.bus, self.redis = bus, redis

    async def people(self, *schemes: str) -> list[dict]:
        people = [person_registered(scheme=s) for s in schemes]
        for p in people:
            await self.bus.send(t.BUREAU_ACCOUNTS, seal(PERSON_REGISTERED, p), key=p["person_id"])
        await wait_registered(self.redis, [p["person_id"] for p in people], prefixes=("bnd:person",))
        return people

    async def send(self, event_type: str, payload: dict, key: str | None = None) -> tuple[str, bytes]:
        """The command's id and the outcome binding.events carried for it, as bytes."""
        command_id = str(uuid.uuid4())
        await self.bus.send(t.BINDING_COMMANDS, command(event_type, payload, command_id), key=key)
        [record] = await self.bus.watchers[t.BINDING_EVENTS].wait_for(
            lambda r: payload_of(r).get("command_id") == command_id)
        return command_id, record.value

    async def bind(self, grantor: dict, beneficiary: dict, order: int = 1, relation: str = "father",
                   **fields: object) -> tuple[str, bytes]:
        form = binding_form(grantor, beneficiary, order, relation) | fields
        return await self.send("CreateBinding", form, key=beneficiary["person_id"])

    async def ask(self, event_type: str, payload: dict | str, key: str | None = None) -> tuple[str, bytes]:
        """The query's id and the reply on the reply topic (matched by correlation_id: the reply
        to QueryCommandOutcome carries the asked command's id, not the query's)."""
        query_id = str(uuid.uuid4())
        await self.bus.send(t.BINDING_COMMANDS, command(event_type, payload, query_id), key=key,
                            headers={"reply_to": REPLY_TOPIC, "correlation_id": query_id})
        [reply] = await self.bus.watchers[REPLY_TOPIC].wait_for(
            lambda r: dict(r.headers or ()).get("correlation_id") == query_id.encode())
        return query_id, reply.value

    async def outcome_of(self, command_id: str) -> bytes:
        return (await self.ask("QueryCommandOutcome", {"command_id": command_id}, key=command_id))[1]


@pytest.fixture
async def window(bus, clean_redis, binding_service):
    return Window(bus, clean_redis)


def event(raw: bytes) -> dict:
    return json.loads(raw)


def kind(raw: bytes) -> tuple[str, str | None]:
    """An outcome's type and, for a refusal, its reason."""
    outcome = event(raw)
    return outcome["event_type"], outcome["payload"].get("reason_code")


# --- QueryCommandOutcome ---------------------------------------------------------------------------


async def test_the_outcome_of_a_created_binding_is_the_event_binding_events_carried(window):
    grantor, father = await window.people("employee", "resident")
    command_id, created = await window.bind(grantor, father)
    assert kind(created) == ("BindingCreated", None)
    assert await window.outcome_of(command_id) == created


async def test_the_outcome_of_a_refused_command_is_its_binding_rejected(window):
    grantor, friend = await window.people("employee", "employee")
    command_id, refused = await window.bind(grantor, friend, relation="friend")
    assert kind(refused) == ("BindingRejected", "RELATION_NOT_ALLOWED")
    assert await window.outcome_of(command_id) == refused


async def test_the_outcome_of_a_revocation_and_of_the_creation_before_it(window):
    grantor, mother = await window.people("employee", "resident")
    created_id, created = await window.bind(grantor, mother, relation="mother")
    binding_id = event(created)["payload"]["binding_id"]
    revoked_id, revoked = await window.send("RevokeBinding", {"binding_id": binding_id,
                                                              "requested_by": grantor["person_id"]})
    assert kind(revoked) == ("BindingRevoked", None)
    assert await window.outcome_of(revoked_id) == revoked
    # The binding is revoked now; its creation is still answered as it was first published.
    assert await window.outcome_of(created_id) == created


async def test_a_command_never_seen_is_answered_outcome_unknown(window):
    never_sent = str(uuid.uuid4())
    query_id, reply = await window.ask("QueryCommandOutcome", {"command_id": never_sent}, key=never_sent)
    unknown = event(reply)
    assert (unknown["event_type"], unknown["payload"]) == ("CommandOutcomeUnknown", {"command_id": never_sent})
    assert unknown["event_id"] == outcome_id(query_id, "CommandOutcomeUnknown")


@pytest.mark.parametrize("payload", [{"command_id": 12}, {"command_id": ""}, {"command_id": "c" * 129}, {},
                                     "not an object"],
                         ids=["number", "empty", "too-long", "missing", "not-an-object"])
async def test_a_malformed_outcome_query_is_refused_on_the_reply_topic(window, payload):
    query_id, reply = await window.ask("QueryCommandOutcome", payload)
    refused = event(reply)
    assert (refused["event_type"], refused["payload"]["reason_code"]) == ("BindingRejected", "INVALID_COMMAND")
    assert refused["payload"]["command_id"] == query_id


# --- requested_by on ChangePaymentOrder ------------------------------------------------------------


async def test_the_grantor_named_as_requested_by_changes_the_payment_order(window):
    child, father, mother = await window.people("resident", "employee", "employee")
    _, first = await window.bind(father, child, relation="child")
    await window.bind(mother, child, order=2, relation="child")
    binding_id = event(first)["payload"]["binding_id"]
    command_id, changed = await window.send("ChangePaymentOrder", {
        "binding_id": binding_id, "payment_order": 2, "requested_by": father["person_id"]}, key=child["person_id"])
    assert kind(changed) == ("PaymentOrderChanged", None)
    assert await window.outcome_of(command_id) == changed


async def test_anyone_but_the_grantor_named_as_requested_by_is_refused_not_grantor(window):
    child, father = await window.people("resident", "employee")
    _, first = await window.bind(father, child, relation="child")
    binding_id = event(first)["payload"]["binding_id"]
    _, refused = await window.send("ChangePaymentOrder", {
        "binding_id": binding_id, "payment_order": 2, "requested_by": child["person_id"]}, key=child["person_id"])
    assert kind(refused) == ("BindingRejected", "NOT_GRANTOR")
    payer = await window.redis.hget(f"bnd:pay:{child['person_id']}", binding_id)
    assert payer.split(b"|")[1] == b"1"  # the order did not move


# --- clerk_id ------------------------------------------------------------------------------------


async def test_a_command_keyed_in_at_a_window_with_its_clerks_id_is_decided_as_usual(window):
    grantor, father = await window.people("employee", "resident")
    _, created = await window.bind(grantor, father, channel="window", clerk_id="XA-clerk_0042")
    assert kind(created) == ("BindingCreated", None)
    binding_id = event(created)["payload"]["binding_id"]
    _, changed = await window.send("ChangePaymentOrder", {"binding_id": binding_id, "payment_order": 2,
                                                          "clerk_id": "XA-clerk_0042"}, key=father["person_id"])
    assert kind(changed) == ("PaymentOrderChanged", None)
    _, revoked = await window.send("RevokeBinding", {"binding_id": binding_id, "requested_by": grantor["person_id"],
                                                     "clerk_id": "XA-clerk_0042"}, key=father["person_id"])
    assert kind(revoked) == ("BindingRevoked", None)


@pytest.mark.parametrize("clerk_id", ["clerk 42", "柜员42", "c" * 33, "", 42],
                         ids=["space", "not-ascii", "too-long", "empty", "number"])
async def test_a_malformed_clerk_id_is_an_invalid_command(window, clerk_id):
    grantor, father = await window.people("employee", "resident")
    _, refused = await window.bind(grantor, father, channel="window", clerk_id=clerk_id)
    assert kind(refused) == ("BindingRejected", "INVALID_COMMAND")
    assert "clerk_id" in event(refused)["payload"]["message_en"]
    assert await window.redis.hlen(f"bnd:pay:{father['person_id']}") == 0


# --- QueryPerson -----------------------------------------------------------------------------------


async def test_query_person_compares_the_name_by_its_digest_and_never_echoes_it(window, binding_service):
    employee, resident = await window.people("employee", "resident")
    answers = {}
    for label, person, name in (("right", employee, employee["name"]), ("padded", employee, f" {employee['name']} "),
                                ("wrong", employee, "张三丰"), ("none", employee, None),
                                ("resident", resident, resident["name"])):
        payload = {"person_id": person["person_id"]} | ({"name": name} if name is not None else {})
        query_id, reply = await window.ask("QueryPerson", payload, key=person["person_id"])
        answers[label] = event(reply)
        assert answers[label]["event_type"] == "PersonFound"
        assert answers[label]["event_id"] == outcome_id(query_id, "PersonFound")
        assert answers[label]["payload"]["command_id"] == query_id
        assert (name or "~").strip() not in reply.decode()
    # Fields that are null are left out of the envelope, as in every event.
    assert {k: a["payload"].get("name_matches") for k, a in answers.items()} == {
        "right": True, "padded": True, "wrong": False, "none": None, "resident": True}
    assert answers["right"]["payload"] | {"command_id": None} == {
        "command_id": None, "person_id": employee["person_id"][:3] + "*" * 11 + employee["person_id"][-4:],
        "registered": True, "region": "610100", "scheme": "employee", "name_matches": True}
    assert answers["resident"]["payload"]["scheme"] == "resident"
    assert employee["name"] not in binding_service.log_text() and "张三丰" not in binding_service.log_text()


async def test_query_person_for_someone_unregistered_and_a_malformed_one(window):
    nobody = person_registered()["person_id"]
    _, reply = await window.ask("QueryPerson", {"person_id": nobody, "name": "李四"}, key=nobody)
    assert event(reply)["payload"] | {"command_id": None} == {
        "command_id": None, "person_id": nobody[:3] + "*" * 11 + nobody[-4:], "registered": False}
    _, refused = await window.ask("QueryPerson", {"person_id": nobody, "name": 12}, key=nobody)
    assert kind(refused) == ("BindingRejected", "INVALID_COMMAND")
