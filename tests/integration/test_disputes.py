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
from tests.partners.grantors import Grantors
from tests.partners.hospital import HOSPITAL, REGION, Family
from tests.support import AUTO, body, command, dev_keys, eventually, payload_of

pytestmark = pytest.mark.integration


class Bureau(Family, Grantors):
    """Grantors, a hospital's HIS and the regional bureau."""

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

    async def send_refund(self, charge: dict, amount: str, refund_id: str, lines: list | None = None) -> None:
        refund = {"charge_id": charge["charge_id"], "institution_code": HOSPITAL, "refund_id": refund_id,
                  "amount": amount, "refunded_at": envelope.now().isoformat(timespec="seconds")}
        if lines is not None:
            refund["lines"] = lines
        await self.bus.send(t.HIS_CHARGES, command("ChargeRefunded", refund), key=charge["patient_id"])

    async def refund_refused(self, charge: dict, amount: str, refund_id: str, lines: list | None = None) -> str:
        await self.send_refund(charge, amount, refund_id, lines)
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge["charge_id"]
            and payload_of(r).get("refund_id") == refund_id, timeout=60)
        assert body(r)["event_type"] == "ChargeRejected", body(r)
        return payload_of(r)["reason_code"]

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
    # what is still out when it opens: all of it, or nothing once the refund reached the projection
    assert opened["event_type"] == "DisputeOpened" and opened["payload"]["amount"] in ("30.00", "0.00")
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


# -- issue 21: an upheld dispute makes the grantor whole ------------------------------------------
def _fen(yuan: str) -> int:
    units, _, cents = yuan.partition(".")
    return int(units) * 100 + (-1 if units.startswith("-") else 1) * int(cents or 0)


async def three_payers(bureau: Bureau):
    """The issue's charge: 120.00 split own 20, grantor 1 50, grantor 2 30, cash 20."""
    patient = await bureau.person(balance="20.00")
    first, second = await bureau.person(balance="50.00"), await bureau.person(balance="30.00")
    first_binding = await bureau.bind(first, patient, 1)
    await bureau.bind(second, patient, 2)
    charge, settled = await bureau.charge(patient, 12_000)
    assert [(x["source"], x.get("payment_order"), x["amount"]) for x in settled["payload"]["lines"]] == [
        ("own", None, "20.00"), ("grantor", 1, "50.00"), ("grantor", 2, "30.00"), ("cash", None, "20.00")]
    reference = payment_reference(HOSPITAL, charge["charge_id"], first["person_id"])
    return patient, first, second, first_binding, charge, reference


async def reversed_of(bureau: Bureau, charge_id: str, count: int = 1) -> list:
    return await bureau.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: body(r)["event_type"] == "PaymentReversed" and payload_of(r)["charge_id"] == charge_id,
        count=count, timeout=60)


async def test_an_upheld_dispute_gives_the_grantor_line_back_and_every_book_agrees(bureau):
    patient, first, second, binding_id, charge, reference = await three_payers(bureau)
    charge_id = charge["charge_id"]
    opened = await bureau.dispute(first, reference)
    assert opened["payload"]["amount"] == "50.00"
    dispute_id = opened["payload"]["dispute_id"]
    await bureau.decide(dispute_id, "upheld")

    [reversal] = await reversed_of(bureau, charge_id)
    p = payload_of(reversal)
    assert reversal.key == charge_id.encode()
    assert {k: p[k] for k in ("dispute_id", "grantor_id", "binding_id", "patient_id", "line_paid",
                              "refunded_before", "amount")} == {
        "dispute_id": dispute_id, "grantor_id": first["person_id"], "binding_id": binding_id,
        "patient_id": patient["person_id"], "line_paid": "50.00", "refunded_before": "0.00", "amount": "50.00"}
    assert [(x["source"], x["person_id"], x["amount"], x["balance_after"]) for x in p["lines"]] == [
        ("grantor", first["person_id"], "50.00", "50.00")]
    assert await bureau.balance(first) == "50.00"               # exactly what it held before the payment

    # the postings: the debit (account_seq 1) and the reversal's credit (account_seq 2)
    postings = await bureau.postings(charge_id, 4)
    mine = sorted((x["posting_id"], x["direction"], x["amount"], x["account_seq"]) for x in postings
                  if x["person_id"] == first["person_id"])
    credit_id = f"V:{HOSPITAL}:{charge_id}:{dispute_id}:0"
    assert mine == [(f"P:{HOSPITAL}:{charge_id}:1", "debit", "50.00", 1), (credit_id, "credit", "50.00", 2)]
    [credit] = [x for x in postings if x["posting_id"] == credit_id]
    assert credit["dispute_id"] == dispute_id and credit["beneficiary_id"] == patient["person_id"]

    # redelivery of the decision: the same PaymentReversed again, nothing more moves
    await bureau.decide(dispute_id, "upheld")
    first_time, again = await reversed_of(bureau, charge_id, count=2)
    assert first_time.value == again.value
    assert await bureau.balance(first) == "50.00"

    # a later refund never reaches the reversed line: 70.00 is all that is left to refund
    refused = await bureau.refund_refused(charge, "70.01", "R-over")
    assert refused == "REFUND_EXCEEDS_PAID"
    refunded = await bureau.refund(charge, "70.00", "R-all")
    assert sorted((x["source"], x.get("person_id"), x["amount"]) for x in refunded["payload"]["lines"]) == sorted([
        ("own", patient["person_id"], "20.00"), ("grantor", second["person_id"], "30.00"), ("cash", None, "20.00")])
    assert await bureau.balance(first) == "50.00"

    # bureau 对账: the region's book with these postings agrees on every one of them
    day = envelope.now().astimezone(envelope.CHINA_TZ).date().isoformat()
    # 3 debits, the credit (published twice: the redelivery republished it), 2 refund credits
    ours = list({x["posting_id"]: x for x in await bureau.postings(charge_id, 7)}.values())
    report = {"region": REGION, "day": day, "postings": [
        {"posting_id": x["posting_id"], "direction": x["direction"], "amount": x["amount"]} for x in ours]}
    report_id = str(uuid.uuid4())
    await bureau.bus.send(t.BUREAU_ACCOUNTS, envelope.seal("DailyPostingsReported", report, event_id=report_id),
                          key=REGION)
    [answer] = await bureau.bus.watchers[t.bureau_postings(REGION)].wait_for(
        lambda r: payload_of(r).get("report_for") == report_id, timeout=60)
    named = {x["posting_id"] for x in ours}
    assert len(named) == 6 and credit_id in named
    assert [d for d in payload_of(answer)["differences"] if d["posting_id"] in named] == []

    # HIS 对账: the day's detail shows the reversal as owed by the institution to the fund
    detail_id = str(uuid.uuid4())
    await bureau.bus.send(t.HIS_RECONCILIATION, command("InstitutionDailyDetail", {
        "institution_code": HOSPITAL, "day": day, "report_id": f"D{uuid.uuid4().hex[:8]}"}, detail_id),
        key=HOSPITAL)
    [reconciled] = await bureau.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: body(r)["event_type"] == "InstitutionReconciled" and payload_of(r)["report_for"] == detail_id,
        timeout=60)
    owed = payload_of(reconciled)["owed_to_fund"]
    assert {"charge_id": charge_id, "dispute_id": dispute_id, "amount": "50.00"} in owed["reversals"]
    assert _fen(owed["reversal_total"]) == sum(_fen(x["amount"]) for x in owed["reversals"])

    # account 对账: a snapshot that includes only the debit explains the balance by the credit in flight
    snapshot = {"person_id": first["person_id"], "region": REGION, "balance": "0.00", "bureau_seq": 1,
                "postings_applied_through": 1}
    await bureau.bus.send(t.BUREAU_ACCOUNTS, envelope.seal("BalanceSnapshot", snapshot), key=first["person_id"])

    async def applied() -> bool:
        from shared.state import person_bucket
        raw = await bureau.redis.hget(f"stl:acct:{person_bucket(first['person_id'])}", first["person_id"])
        return raw.split(b"|")[1] == b"1"
    await eventually(applied, 30, "settlement applied the snapshot (bureau seq 1)", interval=0.02)
    assert not await bureau.redis.exists(f"stl:drift:{first['person_id']}")   # same atomic step as the apply
    assert await bureau.balance(first) == "50.00"


async def test_a_refund_naming_the_grantor_line_credits_that_grantor(bureau):
    patient, first, second, _, charge, _ = await three_payers(bureau)
    await bureau.send_refund(charge, "50.00", "R-g1", lines=[{"payer": "grantor_1", "amount": "50.00"}])
    refunded = await bureau.result(charge["charge_id"], "RefundSettled", "R-g1")
    assert [(x["source"], x["person_id"], x["amount"], x["balance_after"]) for x in refunded["payload"]["lines"]] == [
        ("grantor", first["person_id"], "50.00", "50.00")]
    assert await bureau.refund_refused(charge, "0.01", "R-again", [{"payer": "grantor_1", "amount": "0.01"}]) == \
        "REFUND_EXCEEDS_PAID"
    assert await bureau.refund_refused(charge, "30.01", "R-g2", [{"payer": "grantor_2", "amount": "30.01"}]) == \
        "REFUND_EXCEEDS_PAID"
    assert await bureau.refund_refused(charge, "1.00", "R-sum", [{"payer": "cash", "amount": "2.00"}]) == \
        "INVALID_CHARGE"
    assert (await bureau.balance(first), await bureau.balance(second)) == ("50.00", "0.00")


async def test_a_dispute_of_a_partly_refunded_payment_reports_and_decides_what_is_still_out(bureau):
    patient, first, _, binding_id, charge, reference = await three_payers(bureau)
    await bureau.send_refund(charge, "20.00", "R-part", lines=[{"payer": "grantor_1", "amount": "20.00"}])
    await bureau.result(charge["charge_id"], "RefundSettled", "R-part")
    # binding's reference projection has read the refund (its consumer of settlement.results)
    key = f"bnd:refd:{first['person_id']}:{reference}"
    await eventually(lambda: bureau.redis.hexists(key, "R-part"), 30, "binding's projection read refund R-part",
                     interval=0.02)

    opened = await bureau.dispute(first, reference)
    assert opened["payload"]["amount"] == "30.00"
    dispute_id = opened["payload"]["dispute_id"]
    await bureau.decide(dispute_id, "upheld")
    [resolved] = await bureau.resolved(dispute_id)
    assert resolved["payload"]["amount"] == "30.00"
    [reversal] = await reversed_of(bureau, charge["charge_id"])
    p = payload_of(reversal)
    assert (p["line_paid"], p["refunded_before"], p["amount"]) == ("50.00", "20.00", "30.00")
    assert await bureau.balance(first) == "50.00"
