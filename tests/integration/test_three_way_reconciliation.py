"""Three-way reconciliation (对账, issue 15) through the real broker and Redis: a hospital's HIS
against the platform's ledger (totals, then detail), and each account's cache against the bureau's
snapshot (drift). The settlement service runs alone, with a consumer group of its own; grantors are
written into the payer index directly (shared/binding_index.py), as the binding service writes them."""

from __future__ import annotations

import urllib.request
import uuid
from datetime import timedelta

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule

from shared import topics as t
from shared.binding_index import Payer, encode_payer, payers_key
from shared.envelope import now, seal
from shared.state import person_bucket
from tooling.devstack import free_port
from services.settlement.storage.accounts import Movement
from tests.books_machine import Books, run_machine
from tests.ledger_calls import XIAN
from tests.support import body, china_today, command, eventually, institution_registered, new_person_id, payload_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def services(infra, platform_pool):
    port = free_port()
    env = {**infra.env(), "LOG_LEVEL": "INFO", "HTTP_PORT": str(port),
           "SETTLEMENT_GROUP_ID": f"recon-{uuid.uuid4().hex[:8]}"}
    with platform_pool.alone(("settlement",), env) as services:
        services["settlement"].metrics_url = f"http://127.0.0.1:{port}/metrics"
        yield services


class Hospital:
    """A hospital's HIS, its bureau and a family, reduced to what these tests need."""

    def __init__(self, bus, redis) -> None:
        self.bus, self.redis = bus, redis
        self.code = f"H{uuid.uuid4().hex[:10]}"  # an institution of its own: nothing of another test counts
        self.day = china_today().isoformat()

    async def register(self) -> None:
        event = institution_registered(self.code, "610100", "对账医院")
        await self.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", event), key=self.code)
        await eventually(lambda: self.redis.hexists("stl:inst", self.code), 30, "the institution registered")

    async def person(self, balance: str = "0.00", scheme: str = "employee") -> dict:
        p = {"person_id": new_person_id(), "name": "参保人", "region": "610100", "scheme": scheme,
             "phone": "13912345678"}
        p |= {"employer": "单位", "balance": balance} if scheme == "employee" else {"community": "社区"}
        await self.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
        await eventually(lambda: self.redis.hexists(f"stl:acct:{person_bucket(p['person_id'])}", p["person_id"]),
                         30, "the person registered")
        return p

    async def bind(self, grantor: dict, patient: dict) -> None:
        today = china_today()
        payer = Payer(f"B{uuid.uuid4().hex[:12]}", grantor["person_id"], 1, today, today + timedelta(days=30),
                      "610100")
        await self.redis.hset(payers_key(patient["person_id"]), payer.binding_id, encode_payer(payer))

    async def charge(self, patient: dict, borne: str) -> dict:
        charge = {"charge_id": f"C{uuid.uuid4().hex[:12]}", "institution_code": self.code,
                  "institution_region": "610100", "patient_id": patient["person_id"], "patient_name": patient["name"],
                  "code_holder_id": patient["person_id"], "presented_via": "own_device", "visit_kind": "outpatient",
                  "total": borne, "fund_paid": "0.00", "individual_borne": borne,
                  "charged_at": _now()}
        await self.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=patient["person_id"])
        return payload_of(await self.outcome("ChargeSettled", charge["charge_id"]))

    async def refund(self, charge: dict, refund_id: str, amount: str) -> dict:
        refund = {"charge_id": charge["charge_id"], "institution_code": self.code, "refund_id": refund_id,
                  "amount": amount, "refunded_at": _now()}
        await self.bus.send(t.HIS_CHARGES, command("ChargeRefunded", refund), key=charge["patient_id"])
        return payload_of(await self.outcome("RefundSettled", charge["charge_id"]))

    async def outcome(self, event_type: str, charge_id: str):
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: body(r)["event_type"] == event_type and payload_of(r).get("charge_id") == charge_id)
        return r

    async def report(self, event_type: str, payload: dict, event_id: str | None = None) -> str:
        event_id = event_id or str(uuid.uuid4())
        await self.bus.send(t.HIS_RECONCILIATION, command(event_type, payload, event_id), key=self.code)
        return event_id

    async def answers(self, report_for: str, count: int = 1) -> list:
        return await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: body(r)["event_type"] == "InstitutionReconciled" and payload_of(r)["report_for"] == report_for,
            count=count)

    def totals(self, **fields) -> dict:
        return {"institution_code": self.code, "day": self.day, "charge_count": 0, "individual_borne_total": "0.00",
                "own_total": "0.00", "family_total": "0.00", "cash_total": "0.00", "refund_count": 0,
                "refund_total": "0.00"} | fields


def _now() -> str:
    return now().isoformat(timespec="seconds")


def row(settled: dict) -> dict:
    """A ChargeSettled as the HIS books it (its detail's row)."""
    paid = {"own": 0, "grantor": 0, "cash": 0}
    for line in settled["lines"]:
        paid[line["source"]] += int(line["amount"].replace(".", ""))
    yuan = {k: f"{v // 100}.{v % 100:02d}" for k, v in paid.items()}
    return {"charge_id": settled["charge_id"], "individual_borne": settled["individual_borne"], "own": yuan["own"],
            "family": yuan["grantor"], "cash": yuan["cash"]}


@pytest.fixture
async def hospital(bus, clean_redis, services):
    hospital = Hospital(bus, clean_redis)
    await hospital.register()
    return hospital


@pytest.fixture
async def day_of_charges(hospital):
    """Own account, a grantor, cash; and a refund: 50.00 own, 100.00 family, 130.00 cash, 10.00 back."""
    patient = await hospital.person(balance="50.00")
    grantor = await hospital.person(balance="100.00")
    await hospital.bind(grantor, patient)
    first = await hospital.charge(patient, "80.00")     # own 50.00, family 30.00
    second = await hospital.charge(patient, "200.00")   # family 70.00, cash 130.00
    refund = await hospital.refund(first, "R1", "10.00")  # last paid first back: the grantor's 10.00
    return first, second, refund


async def test_totals_that_match_what_was_settled_are_balanced(hospital, day_of_charges):
    totals = hospital.totals(charge_count=2, individual_borne_total="280.00", own_total="50.00",
                             family_total="100.00", cash_total="130.00", refund_count=1, refund_total="10.00")
    report_id = await hospital.report("InstitutionDailyTotals", totals)
    [answer] = await hospital.answers(report_id)
    assert answer.key == hospital.code.encode()
    a = payload_of(answer)
    assert (a["level"], a["result"], a["detail_requested"], a["differences"]) == ("totals", "balanced", False, [])
    assert a["platform_totals"] == a["institution_totals"] == {
        "charge_count": 2, "individual_borne_total": "280.00", "own_total": "50.00", "family_total": "100.00",
        "cash_total": "130.00", "refund_count": 1, "refund_total": "10.00"}
    assert a["final"] is True and a["day_closed"] is False  # today's: what was settled until compared_at


async def test_totals_that_differ_ask_for_the_detail(hospital, day_of_charges):
    totals = hospital.totals(charge_count=3, individual_borne_total="290.00", own_total="50.00",
                             family_total="100.00", cash_total="140.00", refund_count=1, refund_total="10.00")
    [answer] = await hospital.answers(await hospital.report("InstitutionDailyTotals", totals))
    a = payload_of(answer)
    assert (a["result"], a["detail_requested"]) == ("differs", True)
    assert (a["platform_totals"]["charge_count"], a["institution_totals"]["charge_count"]) == (2, 3)


async def test_the_detail_names_a_missing_charge_an_extra_one_an_amount_and_a_refund(hospital, day_of_charges):
    first, second, refund = day_of_charges
    patient = {"person_id": first["patient_id"], "name": "参保人"}
    third = await hospital.charge(patient, "5.00")  # settled on the platform (the grantor's 10.00 back), unknown to the HIS
    wrong = row(second) | {"family": "69.00", "cash": "131.00"}
    ghost = {"charge_id": "C-ghost", "individual_borne": "7.00", "own": "0.00", "family": "0.00", "cash": "7.00"}
    base = {"institution_code": hospital.code, "day": hospital.day, "parts": 2}
    part_1 = await hospital.report("InstitutionDailyDetail", base | {"part": 1, "charges": [row(first), wrong]})
    part_2 = await hospital.report("InstitutionDailyDetail", base | {
        "part": 2, "charges": [ghost],
        "refunds": [{"charge_id": first["charge_id"], "refund_id": "R1", "amount": "11.00"}]})
    [answer] = await hospital.answers(part_1)
    a = payload_of(answer)
    assert (a["level"], a["result"], a["parts"], a["detail_requested"]) == ("detail", "differs", 2, False)
    found = {(d["kind"], d["charge_id"], d.get("refund_id")): (d.get("platform"), d.get("institution"))
             for d in a["differences"]}
    assert found == {
        ("amount_differs", second["charge_id"], None): (
            {"individual_borne": "200.00", "own": "0.00", "family": "70.00", "cash": "130.00"},
            {"individual_borne": "200.00", "own": "0.00", "family": "69.00", "cash": "131.00"}),
        ("missing_at_institution", third["charge_id"], None): (
            {"individual_borne": "5.00", "own": "0.00", "family": "5.00", "cash": "0.00"}, None),
        ("missing_on_platform", "C-ghost", None): (
            None, {"individual_borne": "7.00", "own": "0.00", "family": "0.00", "cash": "7.00"}),
        ("amount_differs", first["charge_id"], "R1"): ({"amount": "10.00"}, {"amount": "11.00"}),
    }
    assert refund["amount"] == "10.00"
    assert (a["platform_totals"]["charge_count"], a["institution_totals"]["charge_count"]) == (3, 3)

    # The last part redelivered: the same answer, byte for byte (recorded), nothing more.
    await hospital.report("InstitutionDailyDetail", base | {
        "part": 2, "charges": [ghost],
        "refunds": [{"charge_id": first["charge_id"], "refund_id": "R1", "amount": "11.00"}]}, event_id=part_2)
    again = await hospital.answers(part_1, count=2)
    assert again[1].value == again[0].value


async def test_a_redelivered_outcome_or_report_counts_once(hospital, day_of_charges, bus):
    first, second, _ = day_of_charges
    settled = await hospital.outcome("ChargeSettled", first["charge_id"])
    for _ in range(2):  # the same outcome published again (a settlement redelivery republishes it)
        await bus.send(t.SETTLEMENT_RESULTS, settled.value, key=first["charge_id"])
    totals = hospital.totals(charge_count=2, individual_borne_total="280.00", own_total="50.00",
                             family_total="100.00", cash_total="130.00", refund_count=1, refund_total="10.00")
    report_id = await hospital.report("InstitutionDailyTotals", totals)
    [answer] = await hospital.answers(report_id)
    assert payload_of(answer)["result"] == "balanced"
    await hospital.report("InstitutionDailyTotals", totals, event_id=report_id)   # the report redelivered
    first_answer, second_answer = await hospital.answers(report_id, count=2)
    assert first_answer.value == second_answer.value


async def test_a_detail_with_more_differences_than_a_message_holds_is_answered_in_several(hospital):
    ghosts = [{"charge_id": f"C-ghost-{i}", "individual_borne": "1.00", "own": "0.00", "family": "0.00",
               "cash": "1.00"} for i in range(1_001)]
    base = {"institution_code": hospital.code, "day": hospital.day, "parts": 2}
    first = await hospital.report("InstitutionDailyDetail", base | {"part": 1, "charges": ghosts[:1_000]})
    await hospital.report("InstitutionDailyDetail", base | {"part": 2, "charges": ghosts[1_000:]})
    answers = [payload_of(r) for r in await hospital.answers(first, count=2)]
    assert sorted((a["answer_part"], a["answer_parts"], len(a["differences"])) for a in answers) == [
        (1, 2, 1_000), (2, 2, 1)]
    assert {d["charge_id"] for a in answers for d in a["differences"]} == {g["charge_id"] for g in ghosts}
    assert {a["differences_total"] for a in answers} == {1_001}


async def test_an_answer_counts_every_charge_settled_before_it_and_no_outcome_forged_on_the_topic(hospital, bus):
    """The ledger is written as the platform settles (storage/ledger.lua): a report sent the moment
    the outcomes arrive finds them all, and its answer is final. A ChargeSettled that anyone puts on
    settlement.results without the platform settling it changes nothing."""
    patient = await hospital.person(balance="10.00")
    for _ in range(3):
        await hospital.charge(patient, "2.00")
    at = _now()
    forged = {"charge_id": "G-forged", "patient_id": new_person_id(), "individual_borne": "1.00",
              "lines": [{"source": "cash", "amount": "1.00"}], "settled_at": at,
              "institution_code": hospital.code, "charged_at": at}
    await bus.send(t.SETTLEMENT_RESULTS, seal("ChargeSettled", forged), key="G-forged")
    totals = hospital.totals(charge_count=3, individual_borne_total="6.00", own_total="6.00")
    [answer] = await hospital.answers(await hospital.report("InstitutionDailyTotals", totals))
    assert (payload_of(answer)["result"], payload_of(answer)["final"]) == ("balanced", True), payload_of(answer)


async def test_reports_that_cannot_be_reconciled_are_refused_with_a_reason(hospital, bus):
    cases = {
        "INVALID_RECONCILIATION": hospital.totals(charge_count="2"),
        # an institution never registered has no key the platform knows (contract version 3)
        "UNKNOWN_SIGNER": hospital.totals(institution_code="H-nobody"),
        "DAY_NOT_KEPT": hospital.totals(day=(china_today() + timedelta(days=1)).isoformat()),
    }
    for reason, payload in cases.items():
        event_id = await hospital.report("InstitutionDailyTotals", payload)
        [refused] = await bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("source_event_id") == event_id)
        assert body(refused)["event_type"] == "InstitutionReconciliationRejected"
        assert payload_of(refused)["reason_code"] == reason, payload_of(refused)
    ghost = {"charge_id": "C-ghost", "individual_borne": "7.00", "own": "0.00", "family": "0.00", "cash": "7.00"}
    detail = {"institution_code": hospital.code, "day": hospital.day}
    for reason, payload in {"DUPLICATE_ROW": detail | {"charges": [ghost, ghost]},
                            "PARTS_INCONSISTENT": detail | {"report_id": "x", "part": 2, "parts": 3}}.items():
        await hospital.report("InstitutionDailyDetail", detail | {"report_id": "x", "part": 1, "parts": 2})
        event_id = await hospital.report("InstitutionDailyDetail", payload)
        [refused] = await bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("source_event_id") == event_id)
        assert payload_of(refused)["reason_code"] == reason, payload_of(refused)
    marker = uuid.uuid4().hex.encode()
    await bus.send(t.HIS_RECONCILIATION, b"not json " + marker, key=hospital.code)
    [dead] = await bus.watchers[t.dead_letter_topic(t.HIS_RECONCILIATION)].wait_for(lambda r: marker in r.value)
    assert dead.value == b"not json " + marker  # the original bytes


def _metric(services, name: str) -> float:
    text = urllib.request.urlopen(services["settlement"].metrics_url, timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def test_a_snapshot_the_postings_in_flight_do_not_explain_is_announced_as_drift(hospital, bus, services):
    person = await hospital.person(balance="100.00")
    await hospital.charge(person, "30.00")          # the cache: 70.00; one debit in flight, after watermark 0
    drifts, drifted_fen = _metric(services, "fma_account_drift_total"), _metric(services, "fma_account_drift_fen_total")

    async def snapshot(balance: str, seq: int) -> None:
        event = {"person_id": person["person_id"], "region": "610100", "balance": balance, "bureau_seq": seq,
                 "postings_applied_through": 0}
        await bus.send(t.BUREAU_ACCOUNTS, seal("BalanceSnapshot", event, event_id=f"{person['person_id']}-{seq}"),
                       key=person["person_id"])

    def drift_of(r) -> bool:
        return body(r)["event_type"] == "AccountDriftDetected" and payload_of(r)["person_id"] == person["person_id"]

    await snapshot("100.00", 1)   # 100.00 - 30.00 in flight = 70.00: explained, no drift
    await snapshot("110.00", 2)   # 110.00 - 30.00 = 80.00, the cache held 70.00: drift of -10.00
    [drift] = await bus.watchers[t.bureau_postings("610100")].wait_for(drift_of)
    assert drift.key == b"610100"
    assert payload_of(drift) == {"person_id": person["person_id"], "region": "610100", "bureau_seq": 2,
                                 "snapshot_balance": "110.00", "in_flight": "-30.00", "platform_balance": "70.00",
                                 "drift": "-10.00"}
    # Same consumer, same partition, in order: the first snapshot was read before, and said nothing.
    assert len(bus.watchers[t.bureau_postings("610100")].matching(drift_of)) == 1
    assert _metric(services, "fma_account_drift_total") == drifts + 1
    assert _metric(services, "fma_account_drift_fen_total") == drifted_fen + 1_000

    await snapshot("110.00", 2)   # redelivered: announced again, the same event; counted once
    first, again = await bus.watchers[t.bureau_postings("610100")].wait_for(drift_of, count=2)
    assert body(first)["event_id"] == body(again)["event_id"]
    assert _metric(services, "fma_account_drift_total") == drifts + 1
    raw = await hospital.redis.hget(f"stl:acct:{person_bucket(person['person_id'])}", person["person_id"])
    assert int(raw.split(b"|")[0]) == 8_000   # the bureau's book stands: 110.00 less the debit in flight


# -- drift against the model of both books (tests/books_machine.py) --------------------------------

class DriftOfTheBooks(Books):
    """The books' state machine, with snapshots read through the drift figures: a snapshot of the
    bureau's true book never drifts, whatever the platform has in flight; one off by `delta` drifts
    by exactly -delta, and the bureau's book stands (the cache follows it)."""

    def _snapshot(self, person: str, balance: int):
        book = self.books[person]
        book.bureau_seq += 1
        book.last_event = Movement(person, "snapshot", balance, book.bureau_seq, XIAN, book.bureau_applied)
        [applied] = self.run(self.store.movements_applied([book.last_event]))
        return applied

    @rule(who=st.integers(0, 2))
    def bureau_sends_a_snapshot(self, who):
        person = [*self.patients, self.grantor][who]
        book = self.books[person]
        applied = self._snapshot(person, book.bureau)
        in_flight = sum(book.postings[book.bureau_applied:])
        assert (applied.platform_balance, applied.in_flight) == (book.true, in_flight)
        assert applied.platform_balance - (book.bureau + applied.in_flight) == 0  # no drift

    @rule(who=st.integers(0, 2), delta=st.integers(-10**6, 10**6).filter(bool))
    def bureau_sends_a_snapshot_that_is_off(self, who, delta):
        person = [*self.patients, self.grantor][who]
        book = self.books[person]
        applied = self._snapshot(person, book.bureau + delta)
        assert applied.platform_balance - (book.bureau + delta + applied.in_flight) == -delta
        book.bureau += delta  # the bureau's book stands
        book.true += delta


def test_a_snapshot_drifts_exactly_by_what_the_postings_in_flight_do_not_explain(valkey):
    run_machine(DriftOfTheBooks, valkey.url, max_examples=60)


async def test_a_corrected_report_reusing_its_event_id_is_refused_as_a_conflict(hospital, day_of_charges):
    """Issue 21: never the old report's answer for a new body; the first body's redelivery still is."""
    first = hospital.totals(charge_count=2, individual_borne_total="280.00", own_total="50.00",
                            family_total="100.00", cash_total="130.00", refund_count=1, refund_total="10.00")
    event_id = await hospital.report("InstitutionDailyTotals", first)
    [answer] = await hospital.answers(event_id)
    corrected = first | {"cash_total": "131.00", "individual_borne_total": "281.00"}
    await hospital.report("InstitutionDailyTotals", corrected, event_id=event_id)
    [refused] = await hospital.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: body(r)["event_type"] == "InstitutionReconciliationRejected"
        and payload_of(r)["source_event_id"] == event_id)
    assert payload_of(refused)["reason_code"] == "DUPLICATE_REPORT_CONFLICT"
    await hospital.report("InstitutionDailyTotals", first, event_id=event_id)       # a redelivery of the first
    first_answer, again = await hospital.answers(event_id, count=2)
    assert first_answer.value == again.value == answer.value
