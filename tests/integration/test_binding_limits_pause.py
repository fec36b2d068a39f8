"""共济限额 and pause (issue 15) through the real broker and Redis: the grantor sets a monthly
limit, pauses and resumes a binding; the payer index settlement reads carries both (I-1)."""

from __future__ import annotations

import uuid

import pytest

from shared import topics as t
from shared.envelope import outcome_id
from tests.partners.grantors import Grantors
from tests.support import body, command, payload_of

pytestmark = pytest.mark.integration


@pytest.fixture
async def desk(bus, clean_redis, binding_service):
    return Grantors(bus, clean_redis)


def kind(outcome: dict) -> tuple[str, str | None]:
    return outcome["event_type"], outcome["payload"].get("reason_code")


async def family(desk: Grantors) -> tuple[dict, dict, str]:
    grantor, father = await desk.person(), await desk.person(scheme="resident")
    return grantor, father, await desk.bind(grantor, father)


async def test_the_grantor_sets_a_monthly_limit_and_the_payer_index_carries_it(desk):
    grantor, father, binding_id = await family(desk)
    ask = {"binding_id": binding_id, "requested_by": grantor["person_id"]}
    limited = await desk.send("SetGrantorLimit", ask | {"monthly_limit": "500.00"}, binding_id)
    assert limited["event_type"] == "GrantorLimitSet"
    assert limited["payload"] | {"command_id": None} == {
        "command_id": None, "binding_id": binding_id, "grantor_id": grantor["person_id"],
        "beneficiary_id": father["person_id"], "monthly_limit": "500.00"}       # no previous limit: absent
    payer, raw = await desk.payer(father, binding_id)
    assert (payer.monthly_limit_fen, payer.paused) == (50_000, False)
    assert raw.split("|")[5:] == ["50000", ""]

    zero = await desk.send("SetGrantorLimit", ask | {"monthly_limit": "0.00"}, binding_id)
    assert (zero["payload"]["monthly_limit"], zero["payload"]["previous_limit"]) == ("0.00", "500.00")
    assert (await desk.payer(father, binding_id))[0].monthly_limit_fen == 0

    lifted = await desk.send("SetGrantorLimit", ask | {"monthly_limit": None}, binding_id)
    assert "monthly_limit" not in lifted["payload"] and lifted["payload"]["previous_limit"] == "0.00"
    assert (await desk.payer(father, binding_id))[0].monthly_limit_fen is None


async def test_a_limit_over_a_million_yuan_or_negative_is_refused_invalid_limit(desk):
    grantor, father, binding_id = await family(desk)
    ask = {"binding_id": binding_id, "requested_by": grantor["person_id"]}
    for limit in ("1000000.01", "-5.00", "12.345"):
        refused = await desk.send("SetGrantorLimit", ask | {"monthly_limit": limit}, binding_id)
        assert kind(refused) == ("BindingRejected", "INVALID_LIMIT"), limit
    assert (await desk.payer(father, binding_id))[0].monthly_limit_fen is None


@pytest.mark.parametrize("event_type,extra", [("SetGrantorLimit", {"monthly_limit": "10.00"}),
                                              ("PauseBinding", {}), ("ResumeBinding", {})])
async def test_only_the_grantor_limits_pauses_or_resumes(desk, event_type, extra):
    grantor, father, binding_id = await family(desk)
    refused = await desk.send(event_type, {"binding_id": binding_id, "requested_by": father["person_id"]} | extra,
                              binding_id)
    assert kind(refused) == ("BindingRejected", "NOT_GRANTOR")
    payer, _ = await desk.payer(father, binding_id)
    assert (payer.monthly_limit_fen, payer.paused) == (None, False)


async def test_pause_and_resume_flip_the_payer_index_flag_and_are_refused_twice(desk):
    grantor, father, binding_id = await family(desk)
    ask = {"binding_id": binding_id, "requested_by": grantor["person_id"], "clerk_id": "XA-clerk_0042"}
    paused = await desk.send("PauseBinding", ask, binding_id)
    assert paused["event_type"] == "BindingPaused"
    assert paused["payload"] | {"command_id": None} == {
        "command_id": None, "binding_id": binding_id, "grantor_id": grantor["person_id"],
        "beneficiary_id": father["person_id"], "cause": "grantor"}
    payer, raw = await desk.payer(father, binding_id)
    assert payer.paused and raw.endswith("|p")                      # still in the index, paying nothing
    assert kind(await desk.send("PauseBinding", ask, binding_id)) == ("BindingRejected", "ALREADY_PAUSED")

    resumed = await desk.send("ResumeBinding", ask, binding_id)
    assert resumed["event_type"] == "BindingResumed"
    assert not (await desk.payer(father, binding_id))[0].paused
    assert kind(await desk.send("ResumeBinding", ask, binding_id)) == ("BindingRejected", "NOT_PAUSED")


async def test_a_paused_binding_keeps_its_limit_and_is_listed_with_both(desk):
    grantor, father, binding_id = await family(desk)
    ask = {"binding_id": binding_id, "requested_by": grantor["person_id"]}
    await desk.send("SetGrantorLimit", ask | {"monthly_limit": "300.50"}, binding_id)
    await desk.send("PauseBinding", ask, binding_id)
    payer, _ = await desk.payer(father, binding_id)
    assert (payer.monthly_limit_fen, payer.paused) == (30_050, True)
    for person, role in ((grantor, "grantor"), (father, "beneficiary")):
        listed = await desk.send("QueryBindings", {"person_id": person["person_id"]}, person["person_id"], reply=True)
        [b] = listed["payload"]["bindings"]
        assert (b["role"], b["monthly_limit"], b["paused"]) == (role, "300.50", True)


async def test_a_redelivered_pause_is_answered_the_same_and_changes_nothing_more(desk):
    grantor, father, binding_id = await family(desk)
    ask = {"binding_id": binding_id, "requested_by": grantor["person_id"]}
    command_id = str(uuid.uuid4())
    first = await desk.send("PauseBinding", ask, binding_id, event_id=command_id)
    await desk.send("ResumeBinding", ask, binding_id)
    await desk.bus.send(t.BINDING_COMMANDS, command("PauseBinding", ask, command_id), key=binding_id)
    [_, again] = await desk.bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: payload_of(r).get("command_id") == command_id, count=2)
    assert body(again) == first and first["event_id"] == outcome_id(command_id, "BindingPaused")
    assert not (await desk.payer(father, binding_id))[0].paused    # the resume after it stands


async def test_a_revoked_binding_cannot_be_limited_or_paused(desk):
    grantor, father, binding_id = await family(desk)
    ask = {"binding_id": binding_id, "requested_by": grantor["person_id"]}
    assert (await desk.send("RevokeBinding", ask, binding_id))["event_type"] == "BindingRevoked"
    assert kind(await desk.send("PauseBinding", ask, binding_id)) == ("BindingRejected", "BINDING_NOT_FOUND")
    assert kind(await desk.send("SetGrantorLimit", ask | {"monthly_limit": "1.00"}, binding_id)) == (
        "BindingRejected", "BINDING_NOT_FOUND")
