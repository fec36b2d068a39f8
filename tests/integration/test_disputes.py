"""非本人授权 (issue 15) through the real broker and Redis, with the binding and settlement services
running as processes: a grantor disputes a settled payment by the reference its SMS carried; the
binding pauses at once, a FraudSuspected goes to the bureau, and the bureau's decision closes the
dispute (upheld: stays paused; dismissed: the grantor may resume)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared import envelope, topics as t
from shared.envelope import outcome_id
from shared.references import payment_reference
from services.binding.domain.rules import dispute_id_for
from tests.integration.test_binding_limits_pause import Grantors
from tests.integration.test_money_in_flight import HOSPITAL, REGION, Family, services  # noqa: F401 (fixture)
from tests.support import AUTO, body, command, dev_keys, payload_of

pytestmark = pytest.mark.integration


class Bureau(Family, Grantors):
    """Grantors, a hospital's HIS (test_money_in_flight's) and the regional bureau."""

    async def dispute(self, grantor: dict, reference: str, channel: str = "app", event_id: str | None = None,
                      **extra) -> dict:
        return await self.send("DisputePayment", {"reference": reference, "requested_by": grantor["person_id"],
                                                  "channel": channel} | extra, reference, event_id=event_id,
                               reply=True)

    async def decide(self, dispute_id: str, decision: str, region: str = REGION, signer=AUTO, **changes) -> str:
        """Sent signed by the bureau of `region` unless `signer` says otherwise."""
        event_id = str(uuid.uuid4())
        payload = {"dispute_id": dispute_id, "region": region, "decision": decision,
                   "decided_at": envelope.now().isoformat(timespec="seconds")} | changes
        await self.bus.send(t.BUREAU_DISPUTES, command("DisputeDecided", payload, event_id), key=dispute_id,
                            signer=signer)
        return event_id

    async def resolved(self, dispute_id: str, count: int = 1) -> list[dict]:
        return [body(r) for r in await self.bus.watchers[t.BINDING_EVENTS].wait_for(
            lambda r: body(r)["event_type"] == "DisputeResolved" and payload_of(r)["dispute_id"] == dispute_id,
            count=count)]

    async def dead_letter(self, event_id: str) -> dict[str, str]:
        [r] = await self.bus.watchers[t.dead_letter_topic(t.BUREAU_DISPUTES)].wait_for(
            lambda r: body(r).get("event_id") == event_id)
        return {k: v.decode() for k, v in r.headers}

    async def paused(self, beneficiary: dict, binding_id: str) -> bool:
        return (await self.payer(beneficiary, binding_id))[0].paused


@pytest.fixture
async def bureau(bus, clean_redis, services):
    bureau = Bureau(bus, clean_redis)
    await bureau.hospital()
    return bureau


async def paid_by_grantor(bureau: Bureau, balance: str = "100.00", borne_fen: int = 3_000):
    """A resident father whose son's account paid a charge: (son, father, binding id, charge, reference)."""
    son, father = await bureau.person(balance=balance), await bureau.person(scheme="resident")
    binding_id = await bureau.bind(son, father, 1)
    charge, settled = await bureau.charge(father, borne_fen)
    [line] = [x for x in settled["payload"]["lines"] if x["source"] == "grantor"]
    reference = payment_reference(HOSPITAL, charge["charge_id"], son["person_id"])
    assert line.get("reference", reference) == reference and line.get("binding_id", binding_id) == binding_id
    return son, father, binding_id, charge, reference


def kind(outcome: dict) -> tuple[str, str | None]:
    return outcome["event_type"], outcome["payload"].get("reason_code")


async def test_a_grantor_disputes_a_settled_payment_and_the_binding_pauses_at_once(bureau):
    son, father, binding_id, charge, reference = await paid_by_grantor(bureau)
    opened = await bureau.dispute(son, reference, channel="sms")
    dispute_id = dispute_id_for(son["person_id"], reference)
    assert opened["event_type"] == "DisputeOpened", opened["payload"]
    p = opened["payload"]
    assert {k: v for k, v in p.items() if k not in ("command_id", "opened_at")} == {
        "dispute_id": dispute_id, "reference": reference, "binding_id": binding_id, "grantor_id": son["person_id"],
        "beneficiary_id": father["person_id"], "charge_id": charge["charge_id"], "institution_code": HOSPITAL,
        "amount": "30.00", "channel": "sms", "grantor_region": REGION}
    assert await bureau.paused(father, binding_id)

    command_id = p["command_id"]
    [paused] = await bureau.bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: body(r)["event_type"] == "BindingPaused" and payload_of(r)["command_id"] == command_id)
    assert payload_of(paused) | {"command_id": None} == {
        "command_id": None, "binding_id": binding_id, "grantor_id": son["person_id"],
        "beneficiary_id": father["person_id"], "cause": "dispute", "dispute_id": dispute_id}
    assert paused.key == father["person_id"].encode()
    [fraud] = await bureau.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: body(r)["event_type"] == "FraudSuspected" and payload_of(r).get("dispute_id") == dispute_id)
    assert fraud.key == charge["charge_id"].encode()
    assert payload_of(fraud) == {"charge_id": charge["charge_id"], "patient_id": father["person_id"],
                                 "institution_code": HOSPITAL, "kind": "grantor_dispute", "dispute_id": dispute_id,
                                 "grantor_id": son["person_id"], "binding_id": binding_id, "amount": "30.00"}

    # the binding pays nothing now: the next charge is the father's cash
    _, later = await bureau.charge(father, 1_000)
    assert [(x["source"], x["amount"]) for x in later["payload"]["lines"]] == [("cash", "10.00")]


async def test_an_unknown_reference_and_someone_elses_payment_are_refused_unknown_reference(bureau):
    son, father, binding_id, _, reference = await paid_by_grantor(bureau)
    assert kind(await bureau.dispute(son, "0000AAAA")) == ("BindingRejected", "UNKNOWN_REFERENCE")
    assert kind(await bureau.dispute(father, reference)) == ("BindingRejected", "UNKNOWN_REFERENCE")
    assert not await bureau.paused(father, binding_id)


async def test_a_payment_disputed_twice_is_refused_already_disputed_and_a_redelivery_is_the_same(bureau):
    son, father, binding_id, _, reference = await paid_by_grantor(bureau)
    command_id = str(uuid.uuid4())
    first = await bureau.dispute(son, reference, event_id=command_id)
    assert first["event_type"] == "DisputeOpened"
    again = await bureau.dispute(son, reference, channel="window", clerk_id="XA-clerk_0042")
    assert kind(again) == ("BindingRejected", "ALREADY_DISPUTED")

    await bureau.bus.send(t.BINDING_COMMANDS, command("DisputePayment", {
        "reference": reference, "requested_by": son["person_id"], "channel": "app"}, command_id), key=reference)
    events = await bureau.bus.watchers[t.BINDING_EVENTS].wait_for(
        lambda r: payload_of(r).get("command_id") == command_id, count=4)
    assert sorted(body(r)["event_type"] for r in events) == ["BindingPaused", "BindingPaused",
                                                             "DisputeOpened", "DisputeOpened"]
    assert len({r.value for r in events}) == 2                       # republished byte for byte
    frauds = await bureau.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: body(r)["event_type"] == "FraudSuspected" and body(r)["event_id"] == outcome_id(
            command_id, "FraudSuspected"), count=2)
    assert frauds[0].value == frauds[1].value


async def test_a_window_dispute_without_its_clerk_is_an_invalid_command(bureau):
    son, _, _, _, reference = await paid_by_grantor(bureau)
    assert kind(await bureau.dispute(son, reference, channel="window")) == ("BindingRejected", "INVALID_COMMAND")


async def test_resume_is_refused_while_the_dispute_is_open_and_allowed_once_dismissed(bureau):
    son, father, binding_id, charge, reference = await paid_by_grantor(bureau)
    dispute_id = (await bureau.dispute(son, reference))["payload"]["dispute_id"]
    ask = {"binding_id": binding_id, "requested_by": son["person_id"]}
    assert kind(await bureau.send("ResumeBinding", ask, binding_id)) == ("BindingRejected", "DISPUTE_OPEN")

    await bureau.decide(dispute_id, "dismissed", note="本人家属代为就医，确认授权")
    [resolved] = await bureau.resolved(dispute_id)
    assert resolved["event_id"] == outcome_id(dispute_id, "DisputeResolved")
    assert {k: v for k, v in resolved["payload"].items() if k != "decided_at"} == {
        "dispute_id": dispute_id, "decision": "dismissed", "binding_id": binding_id, "grantor_id": son["person_id"],
        "beneficiary_id": father["person_id"], "charge_id": charge["charge_id"], "institution_code": HOSPITAL,
        "amount": "30.00"}
    assert await bureau.paused(father, binding_id)                   # a decision resumes nothing by itself
    assert (await bureau.send("ResumeBinding", ask, binding_id))["event_type"] == "BindingResumed"
    assert not await bureau.paused(father, binding_id)

    listed = await bureau.send("QueryDisputes", {"person_id": son["person_id"]}, son["person_id"], reply=True)
    [d] = listed["payload"]["disputes"]
    assert (d["dispute_id"], d["status"], d["reference"], d["amount"], d["charge_id"]) == (
        dispute_id, "dismissed", reference, "30.00", charge["charge_id"])
    assert d["beneficiary_id"] != father["person_id"] and d["beneficiary_id"].endswith(father["person_id"][-4:])
    assert "decided_at" in d and listed["payload"]["person_id"] != son["person_id"]


async def test_an_upheld_dispute_keeps_the_binding_paused(bureau):
    son, father, binding_id, _, reference = await paid_by_grantor(bureau)
    dispute_id = (await bureau.dispute(son, reference))["payload"]["dispute_id"]
    await bureau.decide(dispute_id, "upheld")
    [resolved] = await bureau.resolved(dispute_id)
    assert resolved["payload"]["decision"] == "upheld"
    assert await bureau.paused(father, binding_id)
    _, later = await bureau.charge(father, 500)
    assert [x["source"] for x in later["payload"]["lines"]] == ["cash"]
    listed = await bureau.send("QueryDisputes", {"person_id": son["person_id"]}, son["person_id"], reply=True)
    assert [d["status"] for d in listed["payload"]["disputes"]] == ["upheld"]


async def test_decisions_that_cannot_apply_are_dead_lettered_and_a_redelivery_changes_nothing(bureau):
    son, father, binding_id, _, reference = await paid_by_grantor(bureau)
    dispute_id = (await bureau.dispute(son, reference))["payload"]["dispute_id"]

    # contract version 3: only the bureau of the grantor's region decides, by its own key
    foreign = await bureau.decide(dispute_id, "upheld", region="610300")
    error = (await bureau.dead_letter(foreign))["dlq-error"]
    assert error.startswith("NOT_SIGNERS: ") and "region 610300" in error
    posing = await bureau.decide(dispute_id, "upheld", signer=dev_keys().bureau("610300"))
    assert (await bureau.dead_letter(posing))["dlq-error"].startswith("NOT_SIGNERS: ")
    unsigned = await bureau.decide(dispute_id, "upheld", signer=None)
    assert (await bureau.dead_letter(unsigned))["dlq-error"].startswith("UNSIGNED: ")
    unknown = await bureau.decide("DSP-" + "0" * 24, "upheld")
    assert "unknown dispute" in (await bureau.dead_letter(unknown))["dlq-error"]
    malformed = await bureau.decide(dispute_id, "upheld", decided_at=0)
    assert "decided_at" in (await bureau.dead_letter(malformed))["dlq-error"]
    assert kind(await bureau.send("ResumeBinding", {"binding_id": binding_id, "requested_by": son["person_id"]},
                                  binding_id)) == ("BindingRejected", "DISPUTE_OPEN")   # still open

    await bureau.decide(dispute_id, "upheld")
    await bureau.decide(dispute_id, "upheld")                        # the bureau sends it again
    first, second = await bureau.resolved(dispute_id, count=2)
    assert first == second
    otherwise = await bureau.decide(dispute_id, "dismissed")
    assert "already decided upheld" in (await bureau.dead_letter(otherwise))["dlq-error"]
    listed = await bureau.send("QueryDisputes", {"person_id": son["person_id"]}, son["person_id"], reply=True)
    assert [d["status"] for d in listed["payload"]["disputes"]] == ["upheld"]
    assert await bureau.paused(father, binding_id)


async def test_a_dispute_arriving_while_a_refund_is_in_flight(bureau):
    """The refund credits the grantor fully, the dispute opens all the same and pauses the
    binding, and a later charge is not paid by that grantor."""
    son, father, binding_id, charge, reference = await paid_by_grantor(bureau, balance="100.00", borne_fen=3_000)
    opened, refunded = await asyncio.gather(bureau.dispute(son, reference), bureau.refund(charge, "30.00"))
    assert [(x["source"], x["person_id"], x["amount"], x["balance_after"]) for x in refunded["payload"]["lines"]] == [
        ("grantor", son["person_id"], "30.00", "100.00")]
    assert opened["event_type"] == "DisputeOpened" and opened["payload"]["amount"] == "30.00"
    assert await bureau.paused(father, binding_id)
    _, later = await bureau.charge(father, 2_000)
    assert [(x["source"], x["amount"]) for x in later["payload"]["lines"]] == [("cash", "20.00")]


async def test_a_dispute_racing_the_grantors_resume_always_leaves_the_binding_paused(bureau):
    """Whichever is decided first: resumed then paused again by the dispute, or refused DISPUTE_OPEN."""
    son, father, binding_id, _, reference = await paid_by_grantor(bureau)
    ask = {"binding_id": binding_id, "requested_by": son["person_id"]}
    assert (await bureau.send("PauseBinding", ask, binding_id))["event_type"] == "BindingPaused"
    opened, resumed = await asyncio.gather(bureau.dispute(son, reference), bureau.send("ResumeBinding", ask,
                                                                                       binding_id))
    assert opened["event_type"] == "DisputeOpened"
    assert kind(resumed) in {("BindingResumed", None), ("BindingRejected", "DISPUTE_OPEN")}
    assert await bureau.paused(father, binding_id)
    if resumed["event_type"] == "BindingResumed":                 # the dispute paused it again
        [again] = await bureau.bus.watchers[t.BINDING_EVENTS].wait_for(
            lambda r: body(r)["event_type"] == "BindingPaused"
            and payload_of(r)["command_id"] == opened["payload"]["command_id"])
        assert payload_of(again)["cause"] == "dispute"


async def test_two_disputes_of_one_payment_at_once_open_one(bureau):
    son, father, binding_id, _, reference = await paid_by_grantor(bureau)
    answers = await asyncio.gather(bureau.dispute(son, reference, channel="app"),
                                   bureau.dispute(son, reference, channel="sms"))
    assert sorted(kind(a) for a in answers) == [("BindingRejected", "ALREADY_DISPUTED"), ("DisputeOpened", None)]
    listed = await bureau.send("QueryDisputes", {"person_id": son["person_id"]}, son["person_id"], reply=True)
    assert len(listed["payload"]["disputes"]) == 1
