"""The settlement service through the real broker and Redis, with the binding service beside it."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from shared import topics as t
from shared.envelope import seal
from shared.state import person_bucket
from shared.kafka import ensure_topics
from tests.support import (AUTO, TopicView, Watcher, body, china_today, command, dev_keys, eventually,
                           institution_registered, new_person_id, payload_of, running)

pytestmark = pytest.mark.integration

CST = timezone(timedelta(hours=8))
SIGNATURE = "sha256:" + hashlib.sha256(b"signed").hexdigest()
# One designated hospital per region, registered afresh for every test (clean_redis empties stl:inst).
HOSPITALS = {"610100": "H610100-01", "610300": "H610300-01", "610400": "H610400-01"}


class Counter:
    """A hospital's HIS and the family, reduced to what these tests need."""

    def __init__(self, bus, redis, services=None):
        self.bus, self.redis, self.services = bus, redis, services

    def settlement_log(self) -> str:
        return self.services["settlement"].log_text()

    async def institution(self, code, region, kind="hospital") -> None:
        event = institution_registered(code, region, f"医院{code}", kind)
        await self.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", event), key=code)
        async def registered():
            return (await self.redis.hget("stl:inst", code) or b"").split(b"|")[0] == region.encode()

        await eventually(registered, 30, f"settlement registered institution {code} in {region}", interval=0.02)

    async def person(self, region="610100", scheme="employee", balance="0.00") -> dict:
        p = {"person_id": new_person_id(region), "name": f"患者{uuid.uuid4().hex[:4]}", "region": region,
             "scheme": scheme, "phone": "13912345678"}
        p |= {"employer": "单位", "balance": balance} if scheme == "employee" else {"community": "社区"}
        await self.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
        bucket = person_bucket(p["person_id"])
        async def known():
            return (await self.redis.hexists(f"bnd:person:{bucket}", p["person_id"])
                    and await self.redis.hexists(f"stl:acct:{bucket}", p["person_id"]))

        await eventually(known, 30, "binding and settlement registered the person", interval=0.02)
        return p

    async def bind(self, grantor, beneficiary, order, start=None, end=None) -> str:
        today = china_today()  # bindings may not start before today (China time)
        start, end = start or today, end or today + timedelta(days=365)

        def party(p):
            return {"id_number": p["person_id"], "name": p["name"], "region": p["region"], "phone": p["phone"],
                    "employer": p.get("employer"), "community": p.get("community")}
        form = {"grantor": party(grantor), "beneficiary": party(beneficiary), "relation": "father",
                "payment_order": order, "start_date": start.isoformat(), "end_date": end.isoformat(),
                "notice_accepted": True, "signature_digest": SIGNATURE, "channel": "window"}
        cmd_id = str(uuid.uuid4())
        await self.bus.send(t.BINDING_COMMANDS, command("CreateBinding", form, cmd_id), key=beneficiary["person_id"])
        [r] = await self.bus.watchers[t.BINDING_EVENTS].wait_for(lambda r: payload_of(r).get("command_id") == cmd_id)
        assert body(r)["event_type"] == "BindingCreated", payload_of(r)
        return payload_of(r)["binding_id"]

    @staticmethod
    def charge(patient, borne, fund="100.00", holder=None, region="610100", charge_id=None, **extra) -> dict:
        total = f"{(int(borne.replace('.', '')) + int(fund.replace('.', ''))) / 100:.2f}" if "total" not in extra \
            else extra.pop("total")
        return {"charge_id": charge_id or f"C{uuid.uuid4().hex[:16]}", "institution_code": HOSPITALS[region],
                "institution_region": region, "patient_id": patient["person_id"], "patient_name": patient["name"],
                "code_holder_id": holder or patient["person_id"], "presented_via": "own_device",
                "visit_kind": "outpatient", "total": total, "fund_paid": fund, "individual_borne": borne,
                "charged_at": datetime.now(CST).isoformat(timespec="seconds")} | extra

    async def submit(self, charge, event_type="ChargeSubmitted", event_id=None, signer=AUTO, headers=None) -> bytes:
        raw = command(event_type, charge, event_id)
        await self.bus.send(t.HIS_CHARGES, raw, key=charge.get("patient_id", "x"), signer=signer, headers=headers)
        return raw

    async def result(self, charge_id, event_type=None, count=1) -> list[dict]:
        records = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge_id
            and (event_type is None or body(r)["event_type"] == event_type), count=count)
        return [body(r) for r in records]

    async def bureau(self, event_type, person, **fields) -> None:
        payload = {"person_id": person["person_id"], "region": person["region"]} | fields
        await self.bus.send(t.BUREAU_ACCOUNTS, seal(event_type, payload), key=person["person_id"])

    async def bureau_seq_reached(self, person, seq) -> None:
        """Wait for the settlement consumer of bureau.accounts to have applied `seq`: a positive
        signal from the same consumer, after every earlier event of the person (same partition)."""
        async def reached():
            raw = await self.redis.hget(f"stl:acct:{person_bucket(person['person_id'])}", person["person_id"])
            return raw and int(raw.split(b"|")[1]) >= seq

        await eventually(reached, 30, f"settlement applied bureau seq {seq}", interval=0.02)

    async def balance(self, person) -> int:
        raw = await self.redis.hget(f"stl:acct:{person_bucket(person['person_id'])}", person["person_id"])
        return int(raw.split(b"|")[0])


    @staticmethod
    def refund(charge, amount, refund_id="R1", **extra) -> dict:
        return {"charge_id": charge["charge_id"], "institution_code": charge["institution_code"],
                "refund_id": refund_id, "amount": amount,
                "refunded_at": datetime.now(CST).isoformat(timespec="seconds")} | extra


@pytest.fixture
async def counter(bus, clean_redis, services):
    counter = Counter(bus, clean_redis, services)
    for region, code in HOSPITALS.items():
        await counter.institution(code, region)
    return counter


@pytest.fixture(scope="module")
async def hospital_replies(infra, bus):
    """Reply topics of Xi'an's and Baoji's hospitals, watched by the bus (created first, as a HIS
    creates its own)."""
    topics = [f"reply.{HOSPITALS['610100']}.tests", f"reply.{HOSPITALS['610300']}.tests"]
    await ensure_topics(infra.settings(), topics)
    watcher = Watcher(infra.kafka_bootstrap, topics, infra.security)
    await watcher.start()
    bus.watchers.update({topic: TopicView(watcher, topic) for topic in topics})
    yield topics
    await watcher.stop()


def lines(result: dict) -> list[tuple]:
    return [(x["source"], x.get("person_id"), x.get("payment_order"), x["amount"], x.get("balance_after"))
            for x in result["payload"]["lines"]]


async def test_own_account_then_order_1_then_order_2_then_cash(counter):
    patient = await counter.person(balance="100.00")
    first, second = await counter.person(balance="50.00"), await counter.person(region="610400", balance="30.00")
    await counter.bind(second, patient, order=2)
    await counter.bind(first, patient, order=1)
    charge = counter.charge(patient, "200.00")
    await counter.submit(charge)
    [settled] = await counter.result(charge["charge_id"])
    assert settled["event_type"] == "ChargeSettled"
    assert lines(settled) == [("own", patient["person_id"], None, "100.00", "0.00"),
                              ("grantor", first["person_id"], 1, "50.00", "0.00"),
                              ("grantor", second["person_id"], 2, "30.00", "0.00"),
                              ("cash", None, None, "20.00", None)]


async def test_resident_beneficiary_without_an_account_is_paid_by_the_grantor_then_cash(counter):
    patient = await counter.person(scheme="resident")
    grantor = await counter.person(balance="80.00")
    await counter.bind(grantor, patient, order=1)
    charge = counter.charge(patient, "100.50")
    await counter.submit(charge)
    [settled] = await counter.result(charge["charge_id"])
    assert lines(settled) == [("grantor", grantor["person_id"], 1, "80.00", "0.00"), ("cash", None, None, "20.50", None)]


async def test_xian_grantor_pays_for_a_baoji_patient_and_the_posting_goes_to_xian(counter, bus):
    patient = await counter.person(region="610300", scheme="resident")
    grantor = await counter.person(region="610100", balance="500.00")
    await counter.bind(grantor, patient, order=1)
    charge = counter.charge(patient, "128.50", region="610300")
    await counter.submit(charge)
    [settled] = await counter.result(charge["charge_id"])
    assert settled["payload"]["lines"][0]["region"] == "610100"
    [posting] = await bus.watchers[t.bureau_postings("610100")].wait_for(   # the topic carries reports too
        lambda r: payload_of(r).get("charge_id") == charge["charge_id"])
    assert posting.key == b"610100"
    p = payload_of(posting)
    assert (p["person_id"], p["direction"], p["amount"], p["beneficiary_id"], p["region"]) == (
        grantor["person_id"], "debit", "128.50", patient["person_id"], "610100")
    assert await counter.balance(grantor) == 50_000 - 12_850


async def test_binding_outside_its_dates_is_ignored(counter):
    patient, grantor = await counter.person(scheme="resident"), await counter.person(balance="90.00")
    tomorrow = datetime.now(CST).date() + timedelta(days=1)
    await counter.bind(grantor, patient, order=1, start=tomorrow, end=tomorrow + timedelta(days=30))
    charge = counter.charge(patient, "10.00")
    await counter.submit(charge)
    [settled] = await counter.result(charge["charge_id"])
    assert lines(settled) == [("cash", None, None, "10.00", None)]


async def test_revoked_binding_is_ignored(counter, bus):
    patient, grantor = await counter.person(scheme="resident"), await counter.person(balance="90.00")
    binding_id = await counter.bind(grantor, patient, order=1)
    cmd_id = str(uuid.uuid4())
    await bus.send(t.BINDING_COMMANDS, command("RevokeBinding", {"binding_id": binding_id,
                                                                 "requested_by": grantor["person_id"]}, cmd_id))
    [r] = await bus.watchers[t.BINDING_EVENTS].wait_for(lambda r: payload_of(r).get("command_id") == cmd_id)
    assert body(r)["event_type"] == "BindingRevoked"
    charge = counter.charge(patient, "10.00")
    await counter.submit(charge)
    [settled] = await counter.result(charge["charge_id"])
    assert lines(settled) == [("cash", None, None, "10.00", None)]
    assert await counter.balance(grantor) == 9_000


async def test_the_same_charge_sent_three_times_debits_once(counter):
    patient = await counter.person(balance="100.00")
    charge = counter.charge(patient, "30.00")
    raw = await counter.submit(charge)
    await counter.bus.send(t.HIS_CHARGES, raw, key=patient["person_id"])   # a redelivery
    await counter.submit(charge)                                           # an HIS retry, new event id
    results = await counter.result(charge["charge_id"], count=3)
    assert {r["event_id"] for r in results} == {results[0]["event_id"]}
    assert all(r == results[0] for r in results)
    assert await counter.balance(patient) == 7_000


async def test_200_concurrent_charges_never_overdraw_one_grantor(counter):
    grantor = await counter.person(balance="1000.00")
    patients = [await counter.person(scheme="resident") for _ in range(4)]
    for p in patients:
        await counter.bind(grantor, p, order=1)
    charges = [counter.charge(patients[i % 4], f"{7 + i % 5}.{i % 100:02d}") for i in range(200)]
    await asyncio.gather(*(counter.submit(c) for c in charges))
    settled = [(await counter.result(c["charge_id"]))[0] for c in charges]
    paid = sum(int(x["amount"].replace(".", "")) for s in settled for x in s["payload"]["lines"]
               if x["source"] == "grantor")
    cash = sum(int(x["amount"].replace(".", "")) for s in settled for x in s["payload"]["lines"] if x["source"] == "cash")
    borne = sum(int(c["individual_borne"].replace(".", "")) for c in charges)
    assert paid + cash == borne
    assert paid == min(100_000, borne)
    assert await counter.balance(grantor) == 100_000 - paid >= 0
    afters = [int(x["balance_after"].replace(".", "")) for s in settled for x in s["payload"]["lines"]
              if x["source"] == "grantor"]
    assert min(afters) >= 0 and len(set(afters)) == len(afters)


async def test_refund_restores_the_accounts_last_paid_first(counter):
    patient = await counter.person(balance="50.00")
    grantor = await counter.person(balance="50.00")
    await counter.bind(grantor, patient, order=1)
    charge = counter.charge(patient, "120.00")
    await counter.submit(charge)
    await counter.result(charge["charge_id"], "ChargeSettled")
    refund = counter.refund(charge, "40.00")
    await counter.submit(refund, "ChargeRefunded")
    [done] = await counter.result(charge["charge_id"], "RefundSettled")
    assert lines(done) == [("grantor", grantor["person_id"], 1, "20.00", "20.00"),
                           ("cash", None, None, "20.00", None)]
    assert (await counter.balance(grantor), await counter.balance(patient)) == (2_000, 0)
    too_much = {**refund, "refund_id": "R2", "amount": "80.01"}
    await counter.submit(too_much, "ChargeRefunded")
    [refused] = await counter.result(charge["charge_id"], "ChargeRejected")
    assert refused["payload"]["reason_code"] == "REFUND_EXCEEDS_PAID"


async def test_grantors_code_used_for_a_family_member_is_refused_as_fraud(counter):
    patient, grantor = await counter.person(scheme="resident"), await counter.person(balance="500.00")
    await counter.bind(grantor, patient, order=1)
    charge = counter.charge(patient, "10.00", holder=grantor["person_id"])
    await counter.submit(charge)
    [refused] = await counter.result(charge["charge_id"], "ChargeRejected")
    [fraud] = await counter.result(charge["charge_id"], "FraudSuspected")
    assert refused["payload"]["reason_code"] == "IDENTITY_MISMATCH"
    assert fraud["payload"]["code_holder_id"] == grantor["person_id"]
    assert await counter.balance(grantor) == 50_000


async def test_family_account_showing_the_patients_own_code_settles(counter):
    patient = await counter.person(balance="10.00")
    charge = counter.charge(patient, "5.00", presented_via="family_account")
    await counter.submit(charge)
    [settled] = await counter.result(charge["charge_id"])
    assert settled["event_type"] == "ChargeSettled"


@pytest.mark.parametrize("change,reason", [
    (dict(total="999.00"), "AMOUNTS_INCONSISTENT"),
    (dict(individual_borne="-1.00", total="99.00"), "INVALID_AMOUNT"),
    (dict(individual_borne="1.005", total="101.005"), "INVALID_AMOUNT"),
    (dict(individual_borne=12.5), "INVALID_AMOUNT"),
    (dict(visit_kind=None), "INVALID_CHARGE"),
    (dict(charged_at="yesterday"), "INVALID_CHARGE"),
    (dict(charged_at=0), "INVALID_CHARGE"),
    (dict(charged_at="2026-05-22T09:30:00"), "INVALID_CHARGE"),
    (dict(charged_at="0001-01-01T00:00:00+01:00"), "INVALID_CHARGE"),
    # Times relative to now are computed when the test runs, not when it is collected.
    (dict(charged_at=lambda: (datetime.now(CST) - timedelta(days=8)).isoformat()), "INVALID_CHARGE"),
    (dict(charged_at=lambda: (datetime.now(CST) + timedelta(minutes=11)).isoformat()), "INVALID_CHARGE"),
    (dict(patient_name=12345), "INVALID_CHARGE"),
    (dict(institution_region=610100), "INVALID_CHARGE"),
    # signed by the Xi'an hospital, naming something else: not its to say (contract version 3)
    (dict(institution_code="H 1|x"), "NOT_SIGNERS"),
    (dict(charge_id="C:1"), "INVALID_CHARGE"),
    (dict(charge_id="C" * 65), "INVALID_CHARGE"),
])
async def test_bad_charges_are_answered_with_a_reason(counter, change, reason):
    patient = await counter.person(balance="10.00")
    charge = counter.charge(patient, "1.00") | {k: v() if callable(v) else v for k, v in change.items()}
    charge = {k: v for k, v in charge.items() if v is not None}
    await counter.submit(charge, signer=dev_keys().institution(HOSPITALS["610100"]))  # the hospital's HIS sends it
    [refused] = await counter.result(charge["charge_id"][:64])   # an over-long id is echoed bounded
    assert refused["event_type"] == "ChargeRejected"
    assert refused["payload"]["reason_code"] == reason


async def test_unknown_and_out_of_province_patients_are_refused(counter):
    ghost = {"person_id": new_person_id(), "name": "无"}
    outsider = {"person_id": new_person_id(), "name": "京"}
    # Only a bureau the operator lists can register anyone (contract version 3) and the province's
    # keys list its own regions: a Beijing account is written into the projection as it would be
    # had the operator listed Beijing's bureau.
    await counter.redis.hset(f"stl:acct:{person_bucket(outsider['person_id'])}", outsider["person_id"],
                             "1000|0|110100|e|0|0|0")
    for who, reason in ((ghost, "UNKNOWN_PATIENT"), (outsider, "OUTSIDE_PROVINCE")):
        charge = counter.charge(who, "1.00")
        await counter.submit(charge)
        [refused] = await counter.result(charge["charge_id"])
        assert refused["payload"]["reason_code"] == reason


async def test_same_charge_id_with_another_body_is_a_conflict(counter):
    patient = await counter.person(balance="10.00")
    charge = counter.charge(patient, "1.00")
    await counter.submit(charge)
    await counter.result(charge["charge_id"], "ChargeSettled")
    await counter.submit({**charge, "individual_borne": "2.00", "total": "102.00"})
    [refused] = await counter.result(charge["charge_id"], "ChargeRejected")
    assert refused["payload"]["reason_code"] == "DUPLICATE_CHARGE_CONFLICT"
    assert await counter.balance(patient) == 900


async def test_refund_of_an_unknown_charge_is_refused(counter):
    refund = Counter.refund({"charge_id": "C-none", "institution_code": HOSPITALS["610100"]}, "1.00")
    await counter.submit(refund, "ChargeRefunded")
    [refused] = await counter.result("C-none", "ChargeRejected")
    assert refused["payload"]["reason_code"] == "UNKNOWN_CHARGE"


async def test_unreadable_charges_go_to_the_dead_letter_topic_and_settling_goes_on(counter, bus):
    marker = uuid.uuid4().hex
    await bus.send(t.HIS_CHARGES, b"not json at all", key=marker)
    [dead] = await bus.watchers[t.dead_letter_topic(t.HIS_CHARGES)].wait_for(lambda r: r.key == marker.encode())
    assert dead.value == b"not json at all"
    patient = await counter.person(balance="10.00")
    charge = counter.charge(patient, "1.00")
    await counter.submit(charge)
    assert (await counter.result(charge["charge_id"]))[0]["event_type"] == "ChargeSettled"


async def test_a_duplicate_bureau_credit_applies_once(counter, bus):
    person = await counter.person(balance="10.00")
    raw = seal("AccountCredited", {"person_id": person["person_id"], "region": "610100", "amount": "5.00",
                                   "bureau_seq": 1})
    await bus.send(t.BUREAU_ACCOUNTS, raw, key=person["person_id"])
    await bus.send(t.BUREAU_ACCOUNTS, raw, key=person["person_id"])
    await counter.bureau("AccountCredited", person, amount="0.01", bureau_seq=2)
    await counter.bureau_seq_reached(person, 2)       # the same consumer has read all three, in order
    assert await counter.balance(person) == 1_000 + 500 + 1


async def test_a_stale_bureau_credit_changes_nothing_and_the_charge_that_follows_sees_so(counter, bus):
    person = await counter.person(balance="10.00")
    await counter.bureau("BalanceSnapshot", person, balance="42.00", bureau_seq=5, postings_applied_through=0)
    await counter.bureau("AccountCredited", person, amount="1.00", bureau_seq=4)   # stale: below the snapshot
    await counter.bureau("AccountCredited", person, amount="0.01", bureau_seq=6)
    await counter.bureau_seq_reached(person, 6)
    charge = counter.charge(person, "50.00")
    await counter.submit(charge)
    [settled] = await counter.result(charge["charge_id"])
    assert lines(settled) == [("own", person["person_id"], None, "42.01", "0.00"), ("cash", None, None, "7.99", None)]


async def test_a_snapshot_taken_before_the_bureau_applied_a_platform_debit_does_not_undo_it(counter, bus):
    person = await counter.person(balance="100.00")
    first = counter.charge(person, "30.00")
    await counter.submit(first)
    await counter.result(first["charge_id"], "ChargeSettled")
    [posting] = await bus.watchers[t.bureau_postings("610100")].wait_for(
        lambda r: payload_of(r).get("charge_id") == first["charge_id"])
    assert payload_of(posting)["account_seq"] == 1
    # The bureau's book: the opening 100.00 plus a contribution, without the platform's debit yet.
    await counter.bureau("BalanceSnapshot", person, balance="110.00", bureau_seq=1, postings_applied_through=0)
    await counter.bureau_seq_reached(person, 1)
    assert await counter.balance(person) == 8_000
    second = counter.charge(person, "100.00")
    await counter.submit(second)
    [settled] = await counter.result(second["charge_id"])
    assert lines(settled) == [("own", person["person_id"], None, "80.00", "0.00"), ("cash", None, None, "20.00", None)]
    await counter.bureau("BalanceSnapshot", person, balance="0.00", bureau_seq=2, postings_applied_through=2)
    await counter.bureau_seq_reached(person, 2)
    assert await counter.balance(person) == 0


async def test_bureau_events_for_a_person_of_another_region_are_dead_lettered_and_a_genuine_one_applies(
        counter, bus):
    person = await counter.person(region="610100", balance="10.00")
    await counter.bureau("AccountCredited", person, region="610300", amount="99.00", bureau_seq=1)
    [dead] = await bus.watchers[t.dead_letter_topic(t.BUREAU_ACCOUNTS)].wait_for(
        lambda r: person["person_id"].encode() in r.value and b"99.00" in r.value)
    error = dict(dead.headers)["dlq-error"].decode()
    assert error.startswith("NOT_SIGNERS: ") and "another region" in error, error  # Baoji's bureau signed it
    await counter.bureau("AccountCredited", person, amount="1.00", bureau_seq=1)   # the seq was not consumed
    await counter.bureau_seq_reached(person, 1)
    assert await counter.balance(person) == 1_100


@pytest.mark.parametrize("seq", ["1", 0, 2**53, True, 1.0], ids=["string", "zero", "2^53", "bool", "float"])
async def test_a_bureau_seq_that_is_not_a_positive_integer_below_2_53_is_dead_lettered(counter, bus, seq):
    person = await counter.person(balance="10.00")
    marker = f"{int(uuid.uuid4().int % 9000) + 1000}.00"
    await counter.bureau("AccountCredited", person, amount=marker, bureau_seq=seq)
    [dead] = await bus.watchers[t.dead_letter_topic(t.BUREAU_ACCOUNTS)].wait_for(
        lambda r: person["person_id"].encode() in r.value and marker.encode() in r.value)
    assert "bureau_seq" in dict(dead.headers)["dlq-error"].decode()
    assert await counter.balance(person) == 1_000


async def test_a_bureau_debit_below_zero_is_kept_reported_and_pays_nothing(counter, bus, services):
    person = await counter.person(balance="10.00")
    await counter.bureau("AccountDebitedLocally", person, amount="15.00", bureau_seq=1)
    await counter.bureau_seq_reached(person, 1)
    assert await counter.balance(person) == -500
    charge = counter.charge(person, "3.00")
    await counter.submit(charge)
    [settled] = await counter.result(charge["charge_id"])
    assert lines(settled) == [("cash", None, None, "3.00", None)]
    masked = person["person_id"][:3] + "*" * 11 + person["person_id"][-4:]
    log = services["settlement"].log_text()
    assert f"WARNING settlement account of {masked} is below zero" in log
    assert person["person_id"] not in log


async def test_grantor_sees_what_each_beneficiary_spent(counter, bus):
    grantor = await counter.person(balance="100.00")
    kids = [await counter.person(scheme="resident") for _ in range(2)]
    for k in kids:
        await counter.bind(grantor, k, order=1)
    for k, amount in ((kids[0], "10.00"), (kids[0], "5.00"), (kids[1], "7.50")):
        charge = counter.charge(k, amount)
        await counter.submit(charge)
        await counter.result(charge["charge_id"])
    today = datetime.now(CST).date()
    query_id = str(uuid.uuid4())
    await bus.send("settlement.queries", command("QueryConsumption", {
        "grantor_id": grantor["person_id"], "date_from": (today - timedelta(days=1)).isoformat(),
        "date_to": today.isoformat()}, query_id), headers={"reply_to": "reply.tests", "correlation_id": query_id})
    [reply] = await bus.watchers["reply.tests"].wait_for(lambda r: payload_of(r).get("command_id") == query_id)
    listed = payload_of(reply)
    assert verified_by_settlement(reply)  # every reply on a reply topic is signed (contract version 3)
    assert listed["total_paid"] == "22.50"
    assert sorted(b["total_paid"] for b in listed["beneficiaries"]) == ["15.00", "7.50"]
    assert all("*" in b["beneficiary_id"] for b in listed["beneficiaries"])
    # each payment names its institution by its registered name, as the SMS do (issue 21)
    payments = [p for b in listed["beneficiaries"] for p in b["payments"]]
    assert {(p["institution_code"], p.get("institution_name")) for p in payments} == {
        (c, f"医院{c}") for c in {p["institution_code"] for p in payments}}


async def test_the_consumption_view_shows_the_binding_in_force_today_not_a_queued_renewal(counter, bus):
    grantor = await counter.person(balance="100.00")
    kid = await counter.person(scheme="resident")
    today = china_today()
    current = await counter.bind(grantor, kid, order=1, start=today, end=today + timedelta(days=10))
    renewal = await counter.bind(grantor, kid, order=1, start=today + timedelta(days=11),
                                 end=today + timedelta(days=100))
    index = await counter.redis.hgetall(f"bnd:pay:{kid['person_id']}")
    assert {k.decode() for k in index} == {current, renewal}
    charge = counter.charge(kid, "4.00")
    await counter.submit(charge)
    await counter.result(charge["charge_id"], "ChargeSettled")
    query_id = str(uuid.uuid4())
    await bus.send("settlement.queries", command("QueryConsumption", {
        "grantor_id": grantor["person_id"], "date_from": today.isoformat(), "date_to": today.isoformat()},
        query_id), headers={"reply_to": "reply.tests", "correlation_id": query_id})
    [reply] = await bus.watchers["reply.tests"].wait_for(lambda r: payload_of(r).get("command_id") == query_id)
    [group] = payload_of(reply)["beneficiaries"]
    assert (group["binding_id"], group["used_this_month"], group["paused"]) == (current, "4.00", False)


async def test_reconciliation_lists_every_difference_with_the_bureaus_book(counter, bus):
    patient = await counter.person(region="610300", balance="10.00")
    grantor = await counter.person(region="610100", balance="100.00")
    await counter.bind(grantor, patient, order=1)
    charges = [counter.charge(patient, amount) for amount in ("30.00", "5.00")]
    for charge in charges:
        await counter.submit(charge)
        await counter.result(charge["charge_id"], "ChargeSettled")
    first, second = (c["charge_id"] for c in charges)
    # Xi'an's book: the first charge's grantor posting applied, the second's with a wrong amount,
    # and one posting the platform never sent.
    report = {"region": "610100", "day": datetime.now(CST).date().isoformat(), "postings": [
        {"posting_id": f"P:H610100-01:{first}:1", "direction": "debit", "amount": "20.00"},
        {"posting_id": f"P:H610100-01:{second}:0", "direction": "debit", "amount": "5.01"},
        {"posting_id": "P:H610100-01:foreign:0", "direction": "credit", "amount": "1.00"}]}
    report_id = str(uuid.uuid4())
    await bus.send(t.BUREAU_ACCOUNTS, seal("DailyPostingsReported", report, event_id=report_id), key="610100")
    [r] = await bus.watchers[t.bureau_postings("610100")].wait_for(
        lambda r: payload_of(r).get("report_for") == report_id)
    assert r.key == b"610100"
    p = payload_of(r)
    assert (p["platform_count"], p["bureau_count"], p["matched"]) == (2, 3, 1)
    assert {(d["posting_id"], d["kind"]) for d in p["differences"]} == {
        (f"P:H610100-01:{second}:0", "amount_mismatch"), ("P:H610100-01:foreign:0", "unknown_to_platform")}
    assert (p["platform_net"], p["bureau_net"]) == ("-25.00", "-24.01")


async def test_a_result_recorded_before_a_crash_is_published_when_the_charge_comes_again(counter):
    """The Redis step done, the process dead before its publish: the redelivered charge finds the
    recorded result and publishes it, debiting nothing more."""
    from services.settlement.contract import ChargeSubmitted
    from services.settlement.storage.accounts import ChargeToSettle, SettlementStore
    from shared.regions import all_regions

    patient = await counter.person(balance="50.00")
    charge = counter.charge(patient, "20.00")
    model = ChargeSubmitted.model_validate(charge)
    store = SettlementStore(counter.redis, [r.code for r in all_regions()], 3600, 3600)
    [before_crash] = await store.settle([ChargeToSettle(
        "lost-event", model.institution_code, model.institution_region, model.charge_id, model.digest(),
        model.individual_borne, model.patient_id, int(datetime.now(CST).strftime("%Y%m%d")),
        datetime.now(CST).isoformat(timespec="seconds"))])
    assert before_crash.status == "SETTLED"
    await counter.submit(charge)
    [settled] = await counter.result(charge["charge_id"])
    assert settled["event_type"] == "ChargeSettled"
    assert settled["payload"]["settled_at"] == before_crash.at
    assert lines(settled) == [("own", patient["person_id"], None, "20.00", "30.00"), ("cash", None, None, "0.00", None)]
    assert settled["payload"]["institution_code"] == charge["institution_code"]
    assert await counter.balance(patient) == 3_000


async def test_a_charge_whose_settlement_fails_is_answered_platform_error_dead_lettered_and_the_batch_goes_on(
        counter, bus):
    broken, fine = await counter.person(balance="10.00"), await counter.person(balance="10.00")
    await counter.redis.hset(f"stl:acct:{person_bucket(broken['person_id'])}", broken["person_id"], "garbage")
    bad, good = counter.charge(broken, "1.00"), counter.charge(fine, "1.00")
    await asyncio.gather(counter.submit(bad), counter.submit(good))
    [dead] = await bus.watchers[t.dead_letter_topic(t.HIS_CHARGES)].wait_for(
        lambda r: bad["charge_id"].encode() in r.value)
    assert "settlement Function failed" in dict(dead.headers)["dlq-error"].decode()
    [refused] = await counter.result(bad["charge_id"])
    assert (refused["event_type"], refused["payload"]["reason_code"]) == ("ChargeRejected", "PLATFORM_ERROR")
    assert (await counter.result(good["charge_id"]))[0]["event_type"] == "ChargeSettled"


async def test_settlement_goes_on_when_its_function_library_disappears(counter):
    patient = await counter.person(balance="10.00")
    # Settlement's libraries only: binding's and notify's run beside it on the session's platform.
    for library in await counter.redis.function_list():
        name = dict(zip(library[::2], library[1::2]))[b"library_name"].decode()
        if name.startswith("settlement"):
            await counter.redis.function_delete(name)
    charge = counter.charge(patient, "1.00")
    await counter.submit(charge)
    assert (await counter.result(charge["charge_id"]))[0]["event_type"] == "ChargeSettled"


async def test_a_charge_naming_another_region_than_its_institutions_is_refused_unknown_institution(counter):
    """The institution signed it (its key is registered), but it is designated in Xi'an, not Baoji.
    (An institution not registered at all proves no key: test_settlement_signatures.py.)"""
    patient = await counter.person(balance="10.00")
    charge = counter.charge(patient, "1.00") | {"institution_region": "610300"}
    await counter.submit(charge)
    [refused] = await counter.result(charge["charge_id"])
    assert (refused["payload"]["reason_code"], refused["payload"]["institution_code"]) == (
        "UNKNOWN_INSTITUTION", HOSPITALS["610100"])
    await counter.submit(charge | {"institution_region": "610100"})
    [settled] = await counter.result(charge["charge_id"], "ChargeSettled")
    assert await counter.balance(patient) == 900


async def test_a_charge_for_a_patient_registered_late_settles_when_resent(counter):
    person = {"person_id": new_person_id(), "name": "迟到", "region": "610100"}
    charge = counter.charge(person, "1.00")
    event_id = str(uuid.uuid4())
    await counter.submit(charge, event_id=event_id)
    [refused] = await counter.result(charge["charge_id"])
    assert refused["payload"]["reason_code"] == "UNKNOWN_PATIENT"
    await counter.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", {
        "person_id": person["person_id"], "name": person["name"], "region": "610100", "scheme": "employee",
        "employer": "x", "balance": "10.00"}), key=person["person_id"])
    await eventually(lambda: counter.redis.hexists(f"stl:acct:{person_bucket(person['person_id'])}",
                                                   person["person_id"]),
                     30, "settlement registered the late person", interval=0.02)
    await counter.submit(charge, event_id=event_id)
    [settled] = await counter.result(charge["charge_id"], "ChargeSettled")
    assert lines(settled) == [("own", person["person_id"], None, "1.00", "9.00"), ("cash", None, None, "0.00", None)]


async def test_two_institutions_share_a_charge_id_and_only_the_charges_own_institution_refunds_it(counter):
    patient = await counter.person(balance="100.00")
    xian = counter.charge(patient, "10.00", charge_id="SAME-1")
    baoji = counter.charge(patient, "20.00", charge_id="SAME-1", region="610300")
    await counter.submit(xian)
    await counter.submit(baoji)
    settled = await counter.result("SAME-1", "ChargeSettled", count=2)
    assert sorted(r["payload"]["institution_code"] for r in settled) == sorted(HOSPITALS[r] for r in ("610100", "610300"))
    assert len({r["event_id"] for r in settled}) == 2
    await counter.submit(counter.refund(xian, "20.00", refund_id="R-x") | {"institution_code": "H610400-01"},
                         "ChargeRefunded")
    [refused] = await counter.result("SAME-1", "ChargeRejected")
    assert (refused["payload"]["reason_code"], refused["payload"]["institution_code"]) == (
        "UNKNOWN_CHARGE", "H610400-01")
    await counter.submit(counter.refund(baoji, "20.00", refund_id="R-x"), "ChargeRefunded")
    [refunded] = await counter.result("SAME-1", "RefundSettled")
    assert refunded["payload"]["institution_code"] == HOSPITALS["610300"]
    assert await counter.balance(patient) == 9_000


async def test_postings_carry_each_accounts_sequence_and_refunds_are_dated_by_the_platform(counter, bus):
    patient = await counter.person(balance="100.00")
    charge = counter.charge(patient, "30.00")
    await counter.submit(charge)
    await counter.result(charge["charge_id"], "ChargeSettled")
    refund = counter.refund(charge, "10.00", refunded_at=(datetime.now(CST) - timedelta(days=3)).isoformat())
    await counter.submit(refund, "ChargeRefunded")
    [done] = await counter.result(charge["charge_id"], "RefundSettled")
    postings = [payload_of(r) for r in await bus.watchers[t.bureau_postings("610100")].wait_for(
        lambda r: payload_of(r).get("charge_id") == charge["charge_id"], count=2)]
    assert sorted((p["direction"], p["account_seq"], p["posting_id"]) for p in postings) == [
        ("credit", 2, f"R:{HOSPITALS['610100']}:{charge['charge_id']}:R1:0"),
        ("debit", 1, f"P:{HOSPITALS['610100']}:{charge['charge_id']}:0")]
    credit = next(p for p in postings if p["direction"] == "credit")
    assert credit["posted_at"] == done["payload"]["settled_at"]
    assert datetime.fromisoformat(credit["posted_at"]) > datetime.now(CST) - timedelta(minutes=5)


async def test_a_his_is_answered_signed_on_its_own_reply_topics_only_and_the_outcome_always_on_results(
        counter, bus, hospital_replies):
    """Contract version 3: a HIS's reply_to must begin reply.<its institution>.; another institution's
    reply topic, or any other topic, is ignored (and logged); the outcome is on settlement.results."""
    patient = await counter.person(balance="10.00")
    own, others, hostile = (counter.charge(patient, amount) for amount in ("1.00", "2.00", "3.00"))
    mine, baoji = hospital_replies
    await bus.send(t.HIS_CHARGES, command("ChargeSubmitted", own), key=patient["person_id"],
                   headers={"reply_to": mine, "correlation_id": "corr-1"})
    await bus.send(t.HIS_CHARGES, command("ChargeSubmitted", others), key=patient["person_id"],
                   headers={"reply_to": baoji, "correlation_id": "corr-2"})
    await bus.send(t.HIS_CHARGES, command("ChargeSubmitted", hostile), key=patient["person_id"],
                   headers={"reply_to": t.bureau_postings("610100"), "correlation_id": "corr-3"})
    [settled] = await counter.result(own["charge_id"])
    [replied] = await bus.watchers[mine].wait_for(lambda r: payload_of(r).get("charge_id") == own["charge_id"])
    assert body(replied) == settled and dict(replied.headers)["correlation_id"] == b"corr-1"
    assert verified_by_settlement(replied)
    for charge in (others, hostile):
        [also] = await counter.result(charge["charge_id"])
        assert also["event_type"] == "ChargeSettled"
    assert not bus.watchers[baoji].matching(lambda r: payload_of(r).get("charge_id") == others["charge_id"])
    assert not bus.watchers[t.bureau_postings("610100")].matching(lambda r: body(r).get("event_id") == also["event_id"])
    assert f'ignored reply_to "{baoji}"' in counter.settlement_log()


def verified_by_settlement(record) -> bool:
    """The record carries settlement:k1's signature over its topic, key and value (the operator's keys file)."""
    from shared.signing import KeyRing, Signer, verify

    ring = KeyRing.load(dev_keys().partner_keys_file)
    signer = verify(record.topic, record.key, record.value, {k: v.decode() for k, v in record.headers}, ring.find,
                    datetime.now(timezone.utc))
    return isinstance(signer, Signer) and (signer.key_id, signer.owner, signer.service) == (
        "settlement:k1", "platform", "settlement")


async def test_a_daily_report_in_parts_is_reconciled_once_all_parts_are_in(counter, bus):
    patient = await counter.person(region="610100", balance="100.00")
    charges = [counter.charge(patient, amount) for amount in ("3.00", "4.00")]
    for charge in charges:
        await counter.submit(charge)
        await counter.result(charge["charge_id"], "ChargeSettled")
    day = china_today().isoformat()
    report_id = f"r-{uuid.uuid4().hex[:8]}"
    part_ids = [str(uuid.uuid4()) for _ in range(2)]
    for i, charge in enumerate(reversed(charges)):   # part 2 first: the order parts arrive in does not matter
        part = 2 - i
        report = {"region": "610100", "day": day, "report_id": report_id, "part": part, "parts": 2, "postings": [
            {"posting_id": f"P:{HOSPITALS['610100']}:{charge['charge_id']}:0", "direction": "debit",
             "amount": charge["individual_borne"]}]}
        await bus.send(t.BUREAU_ACCOUNTS, seal("DailyPostingsReported", report, event_id=part_ids[part - 1]),
                       key="610100")
    xian = bus.watchers[t.bureau_postings("610100")]
    [r] = await xian.wait_for(lambda r: payload_of(r).get("report_id") == report_id)
    p = payload_of(r)
    assert (p["report_for"], p["parts"], p["platform_count"], p["bureau_count"], p["matched"], p["differences"]) == (
        part_ids[0], 2, 2, 2, 2, [])
    assert len(xian.matching(lambda r: payload_of(r).get("report_id") == report_id)) == 1


async def test_a_query_is_answered_on_its_reply_topic_only_when_it_names_one_allowed(counter, bus):
    grantor = await counter.person(balance="100.00")
    hostile, fine = str(uuid.uuid4()), str(uuid.uuid4())
    query = {"grantor_id": grantor["person_id"], "date_from": china_today().isoformat(),
             "date_to": china_today().isoformat()}
    await bus.send("settlement.queries", command("QueryConsumption", query, hostile), key=grantor["person_id"],
                   headers={"reply_to": t.SETTLEMENT_RESULTS, "correlation_id": hostile})
    await bus.send("settlement.queries", command("QueryConsumption", query | {"date_to": 20260101}, fine),
                   key=grantor["person_id"], headers={"reply_to": "reply.tests", "correlation_id": fine})
    [refused] = await bus.watchers["reply.tests"].wait_for(lambda r: dict(r.headers).get("correlation_id") == fine.encode())
    assert payload_of(refused)["reason_code"] == "INVALID_CHARGE"
    assert not bus.watchers[t.SETTLEMENT_RESULTS].matching(lambda r: hostile.encode() in r.value)




async def test_settlement_answers_only_after_reading_registrations_and_institutions_made_while_it_was_down(
        counter, services):
    """Projections before answers: the charge waits behind the registrations sent before it."""
    services["settlement"].stop()
    try:
        code = f"H-{uuid.uuid4().hex[:8]}"
        await counter.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", institution_registered(
            code, "610100", "新医院")), key=code)
        person = {"person_id": new_person_id(), "name": "新人", "region": "610100", "scheme": "employee",
                  "employer": "x", "balance": "10.00", "phone": "13912345678"}
        await counter.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", person), key=person["person_id"])
        charge = counter.charge(person, "1.00") | {"institution_code": code}
        await counter.submit(charge)
    finally:
        services["settlement"].start()
    [settled] = await counter.result(charge["charge_id"])
    assert settled["event_type"] == "ChargeSettled", settled["payload"]


async def test_replaying_the_charges_into_a_fresh_consumer_group_changes_nothing(counter, bus, infra, tmp_path):
    patient = await counter.person(balance="50.00")
    grantor = await counter.person(balance="50.00")
    await counter.bind(grantor, patient, order=1)
    charges = [counter.charge(patient, amount) for amount in ("30.00", "40.00")]
    for charge in charges:
        await counter.submit(charge)
        await counter.result(charge["charge_id"], "ChargeSettled")
    await counter.submit(counter.refund(charges[1], "5.00"), "ChargeRefunded")
    await counter.result(charges[1]["charge_id"], "RefundSettled")
    before = [await counter.balance(p) for p in (patient, grantor)]
    first = {c["charge_id"]: await counter.result(c["charge_id"], "ChargeSettled") for c in charges}
    with running(("settlement",), {**infra.env(), "SETTLEMENT_GROUP_ID": f"replay-{uuid.uuid4().hex[:8]}"},
                 tmp_path):
        for charge in charges:
            again = await counter.result(charge["charge_id"], "ChargeSettled", count=2)
            assert again[-1] == again[0] == first[charge["charge_id"]][0]
        refunds = await counter.result(charges[1]["charge_id"], "RefundSettled", count=2)
        assert refunds[0] == refunds[1]
    assert [await counter.balance(p) for p in (patient, grantor)] == before


async def ask_account(bus, person_id: str) -> dict:
    query_id = str(uuid.uuid4())
    await bus.send("settlement.queries", command("QueryAccount", {"person_id": person_id}, query_id), key=person_id,
                   headers={"reply_to": "reply.tests", "correlation_id": query_id})
    [reply] = await bus.watchers["reply.tests"].wait_for(lambda r: payload_of(r).get("command_id") == query_id)
    assert body(reply)["event_type"] == "AccountFound", body(reply)
    return payload_of(reply)


async def test_query_account_answers_the_balance_the_next_charge_pays_from(counter, bus):
    """After a platform debit and a bureau snapshot that does not include it yet, the balance is
    the platform's (the snapshot's less that debit), and the next charge pays exactly that."""
    person = await counter.person(balance="100.00")
    first = counter.charge(person, "30.00")
    await counter.submit(first)
    await counter.result(first["charge_id"], "ChargeSettled")
    await counter.bureau("BalanceSnapshot", person, balance="110.00", bureau_seq=1, postings_applied_through=0)
    await counter.bureau_seq_reached(person, 1)
    found = await ask_account(bus, person["person_id"])
    masked = person["person_id"][:3] + "*" * 11 + person["person_id"][-4:]
    assert {k: found[k] for k in ("person_id", "registered", "region", "scheme", "balance")} == {
        "person_id": masked, "registered": True, "region": "610100", "scheme": "employee", "balance": "80.00"}
    second = counter.charge(person, "100.00")
    await counter.submit(second)
    [settled] = await counter.result(second["charge_id"])
    assert lines(settled)[0] == ("own", person["person_id"], None, "80.00", "0.00")

    resident = await counter.person(scheme="resident")
    theirs = await ask_account(bus, resident["person_id"])
    assert (theirs["scheme"], theirs.get("balance")) == ("resident", None)  # no personal account
    nobody = await ask_account(bus, new_person_id())
    assert nobody["registered"] is False and "balance" not in nobody
    debtor = await counter.person(balance="10.00")
    await counter.bureau("AccountDebitedLocally", debtor, amount="15.00", bureau_seq=1)
    await counter.bureau_seq_reached(debtor, 1)
    assert (await ask_account(bus, debtor["person_id"]))["balance"] == "-5.00"  # never clamped
