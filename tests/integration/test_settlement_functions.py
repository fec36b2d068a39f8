"""The settlement Redis Functions (storage/settlement.lua) against a real Valkey server.

Calls the Functions directly through SettlementStore, with accounts made by `register_person`
and payer-index entries written as the binding service writes them (shared/binding_index.py).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from itertools import count

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from services.settlement.domain.waterfall import Account, Line, split
from services.settlement.storage.accounts import ChargeToSettle, RefundToApply, SettlementStore
from shared.devstack import LocalRedis, free_port
from shared.identity import make_id_number

pytestmark = pytest.mark.integration

PROVINCES = ["610100", "610300"]
XIAN, BAOJI, BEIJING = "610100", "610300", "110100"
DAY = 20260601
AT = "2026-06-01T10:00:00+08:00"
_n = count(1)


def new_person() -> str:
    n = next(_n)
    return make_id_number("610102", date(1980, 1, 1) + timedelta(days=n), n % 1000)


def make_store(client: Redis) -> SettlementStore:
    return SettlementStore(client, provinces=PROVINCES, rejection_ttl=3600, record_ttl=3600)


@pytest.fixture(scope="module")
def valkey(tmp_path_factory):
    server = LocalRedis(free_port(), tmp_path_factory.mktemp("settlement-valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def client(valkey):
    client = Redis.from_url(valkey.url)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
async def store(client):
    store = make_store(client)
    await store.load_functions()
    return store


@pytest.fixture(autouse=True)
async def clean(client, store):
    await client.flushdb()  # FUNCTION libraries survive FLUSHDB


def charge(patient: str, borne: int, charge_id: str | None = None, digest: str = "digest-1",
           day: int = DAY, event_id: str | None = None) -> ChargeToSettle:
    return ChargeToSettle(event_id or str(uuid.uuid4()), charge_id or str(uuid.uuid4()), digest, borne,
                          patient, day, AT)


def refund(charge_id: str, amount: int, refund_id: str | None = None, digest: str = "refund-digest",
           event_id: str | None = None) -> RefundToApply:
    return RefundToApply(event_id or str(uuid.uuid4()), charge_id, refund_id or str(uuid.uuid4()), digest,
                         amount, "2026-06-02T09:00:00+08:00")


async def bind(client: Redis, patient: str, grantor: str, order: int, region: str,
               start: int = 20260101, end: int = 20261231) -> str:
    binding_id = str(uuid.uuid4())
    await client.hset("bnd:pay:" + patient, binding_id, f"{grantor}|{order}|{start}|{end}|{region}")
    return binding_id


class Family:
    """A patient with an own account and two grantors: order 1 in Xi'an, order 2 in Baoji."""

    def __init__(self, own: int | None, first: int, second: int):
        self.patient, self.father, self.sister = new_person(), new_person(), new_person()
        self.own, self.first, self.second = own, first, second

    async def register(self, store: SettlementStore, client: Redis) -> Family:
        await store.register([(self.patient, XIAN, "e" if self.own is not None else "r", self.own),
                              (self.father, XIAN, "e", self.first), (self.sister, BAOJI, "e", self.second)])
        # Order 2 is written first: the Function must sort by payment order, not index order.
        await bind(client, self.patient, self.sister, 2, BAOJI)
        await bind(client, self.patient, self.father, 1, XIAN)
        return self


def summary(lines: list[Line]) -> list[tuple]:
    return [(l.source, l.person_id, l.payment_order, l.amount, l.balance_after) for l in lines]


# --- settle ----------------------------------------------------------------------------------

async def test_settle_pays_own_then_grantor_1_then_grantor_2_then_cash(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)

    [applied] = await store.settle([charge(f.patient, 10_000)])

    assert applied.status == "SETTLED" and not applied.replay and applied.at == AT
    assert summary(applied.lines) == [("own", f.patient, None, 1_000, 0), ("grantor", f.father, 1, 2_000, 0),
                                      ("grantor", f.sister, 2, 3_000, 0), ("cash", None, None, 4_000, None)]
    assert [l.region for l in applied.lines] == [XIAN, XIAN, BAOJI, None]
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 0, 0]


async def test_settle_stops_at_the_first_grantor_that_covers_the_rest(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)

    [applied] = await store.settle([charge(f.patient, 4_500)])

    assert summary(applied.lines) == [("own", f.patient, None, 1_000, 0), ("grantor", f.father, 1, 2_000, 0),
                                      ("grantor", f.sister, 2, 1_500, 1_500), ("cash", None, None, 0, None)]
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 0, 1_500]
    [spent] = await store.spending(f.sister)
    assert (int(spent.day.strftime("%Y%m%d")), spent.beneficiary_id, spent.paid, spent.refunded, spent.settled_at) == (
        DAY, f.patient, 1_500, 0, AT)


async def test_a_resident_patient_is_paid_for_by_grantors_from_the_first_fen(store, client):
    f = await Family(own=None, first=2_000, second=3_000).register(store, client)

    [applied] = await store.settle([charge(f.patient, 2_500)])

    assert summary(applied.lines) == [("grantor", f.father, 1, 2_000, 0), ("grantor", f.sister, 2, 500, 2_500),
                                      ("cash", None, None, 0, None)]
    assert await store.balance(f.patient) == 0


async def test_a_payer_index_entry_that_does_not_cover_the_charge_day_is_ignored(store, client):
    patient, future, past, current = new_person(), new_person(), new_person(), new_person()
    await store.register([(patient, XIAN, "r", None), (future, XIAN, "e", 5_000), (past, XIAN, "e", 5_000),
                          (current, BAOJI, "e", 5_000)])
    await bind(client, patient, future, 1, XIAN, start=DAY + 1, end=20261231)
    await bind(client, patient, past, 1, XIAN, start=20250101, end=DAY - 1)
    await bind(client, patient, current, 2, BAOJI, start=DAY, end=DAY)

    [applied] = await store.settle([charge(patient, 3_000)])

    assert summary(applied.lines) == [("grantor", current, 2, 3_000, 2_000), ("cash", None, None, 0, None)]
    assert [await store.balance(p) for p in (future, past, current)] == [5_000, 5_000, 2_000]


async def test_the_same_charge_settled_twice_debits_once_and_replays_the_same_lines(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    first = charge(f.patient, 2_500, digest="same")
    again = charge(f.patient, 2_500, charge_id=first.charge_id, digest="same")

    [one] = await store.settle([first])
    [two] = await store.settle([again])

    assert one.status == two.status == "SETTLED"
    assert (one.replay, two.replay) == (False, True)
    assert two.lines == one.lines and two.at == one.at
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 500, 3_000]


async def test_the_same_charge_id_with_another_digest_is_a_conflict(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    first = charge(f.patient, 2_500, digest="original")
    [one] = await store.settle([first])

    [two] = await store.settle([charge(f.patient, 9_999, charge_id=first.charge_id, digest="tampered")])

    assert one.status == "SETTLED" and two.status == "CONFLICT"
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 500, 3_000]


async def test_a_charge_for_an_unknown_patient_is_rejected(store, client):
    event = charge(new_person(), 1_000)
    [applied] = await store.settle([event])
    assert (applied.status, applied.reason) == ("REJECTED", "UNKNOWN_PATIENT")
    assert await client.get(f"stl:rej:{event.event_id}") == b"UNKNOWN_PATIENT"


async def test_a_charge_for_a_patient_insured_outside_the_province_is_rejected(store, client):
    patient = new_person()
    await store.register([(patient, BEIJING, "e", 5_000)])

    [applied] = await store.settle([charge(patient, 1_000)])

    assert (applied.status, applied.reason) == ("REJECTED", "OUTSIDE_PROVINCE")
    assert await store.balance(patient) == 5_000


async def test_a_rejected_event_stays_rejected_when_it_comes_again(store, client):
    patient = new_person()
    event = charge(patient, 1_000)
    [first] = await store.settle([event])
    await store.register([(patient, XIAN, "e", 5_000)])

    [again] = await store.settle([event])

    assert first.reason == again.reason == "UNKNOWN_PATIENT"
    assert await store.balance(patient) == 5_000


# --- refund ----------------------------------------------------------------------------------

async def test_partial_refunds_give_back_cash_then_grantor_2_then_grantor_1_then_the_own_account(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    paid = charge(f.patient, 10_000)
    await store.settle([paid])  # own 1000, grantor 1 2000, grantor 2 3000, cash 4000

    [first] = await store.refund([refund(paid.charge_id, 5_000)])
    assert first.status == "REFUNDED" and not first.replay
    assert summary(first.lines) == [("grantor", f.sister, 2, 1_000, 1_000), ("cash", None, None, 4_000, None)]
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 0, 1_000]

    [second] = await store.refund([refund(paid.charge_id, 4_500)])
    assert summary(second.lines) == [("own", f.patient, None, 500, 500), ("grantor", f.father, 1, 2_000, 2_000),
                                     ("grantor", f.sister, 2, 2_000, 3_000)]
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [500, 2_000, 3_000]
    [spent] = await store.spending(f.father)
    paid_by_father, back_to_father = spent.paid, spent.refunded
    assert (paid_by_father, back_to_father) == (2_000, 2_000)


async def test_a_refund_above_what_remains_is_rejected(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    paid = charge(f.patient, 10_000)
    await store.settle([paid])
    await store.refund([refund(paid.charge_id, 9_000)])

    [applied] = await store.refund([refund(paid.charge_id, 1_001)])

    assert (applied.status, applied.reason) == ("REJECTED", "REFUND_EXCEEDS_PAID")
    assert [await store.balance(p) for p in (f.patient, f.father, f.sister)] == [0, 2_000, 3_000]
    [rest] = await store.refund([refund(paid.charge_id, 1_000)])
    assert summary(rest.lines) == [("own", f.patient, None, 1_000, 1_000)]


async def test_a_refund_of_an_unknown_charge_is_rejected(store, client):
    [applied] = await store.refund([refund(str(uuid.uuid4()), 100)])
    assert (applied.status, applied.reason) == ("REJECTED", "UNKNOWN_CHARGE")


async def test_the_same_refund_twice_credits_once(store, client):
    f = await Family(own=1_000, first=2_000, second=3_000).register(store, client)
    paid = charge(f.patient, 3_000)  # own 1000, grantor 1 2000
    await store.settle([paid])
    once = refund(paid.charge_id, 1_500, digest="r1")
    twice = refund(paid.charge_id, 1_500, refund_id=once.refund_id, digest="r1")

    [one] = await store.refund([once])
    [two] = await store.refund([twice])

    assert (one.status, two.status) == ("REFUNDED", "REFUNDED")
    assert (one.replay, two.replay) == (False, True)
    assert two.lines == one.lines and two.at == one.at
    assert [await store.balance(p) for p in (f.patient, f.father)] == [0, 1_500]
    [other] = await store.refund([refund(paid.charge_id, 1, refund_id=once.refund_id, digest="r2")])
    assert other.status == "CONFLICT"


# --- bureau movements ------------------------------------------------------------------------

async def test_bureau_movements_apply_once_per_bureau_seq(store, client):
    person = new_person()
    await store.register([(person, XIAN, "e", 1_000)])

    assert await store.bureau_movements([(person, "credit", 500, 1, XIAN)]) == [("APPLIED", 1_500)]
    assert await store.bureau_movements([(person, "credit", 500, 1, XIAN)]) == [("STALE", 1_500)]
    assert await store.bureau_movements([(person, "debit", 200, 2, XIAN)]) == [("APPLIED", 1_300)]
    assert await store.bureau_movements([(person, "debit", 200, 2, XIAN)]) == [("STALE", 1_300)]
    assert await store.bureau_movements([(person, "snapshot", 9_000, 5, XIAN)]) == [("APPLIED", 9_000)]
    assert await store.bureau_movements([(person, "snapshot", 9_000, 5, XIAN)]) == [("STALE", 9_000)]
    assert await store.bureau_movements([(person, "credit", 100, 4, XIAN)]) == [("STALE", 9_000)]
    assert await store.balance(person) == 9_000


async def test_a_bureau_debit_above_the_balance_clamps_to_zero(store, client):
    person = new_person()
    await store.register([(person, XIAN, "e", 1_000)])

    assert await store.bureau_movements([(person, "debit", 1_001, 1, XIAN)]) == [("CLAMPED", 0)]
    assert await store.balance(person) == 0
    assert await store.bureau_movements([(person, "credit", 50, 2, XIAN)]) == [("APPLIED", 50)]


async def test_a_bureau_movement_for_an_unregistered_person_opens_the_account(store, client):
    person = new_person()
    assert await store.bureau_movements([(person, "credit", 700, 0, XIAN)]) == [("APPLIED", 700)]
    assert await store.balance(person) == 700


# --- the Function agrees with the pure waterfall -------------------------------------------

@st.composite
def families(draw):
    own = draw(st.one_of(st.none(), st.integers(0, 1_000_000)))
    orders = draw(st.permutations([1, 2]))[: draw(st.integers(0, 2))]
    grantors = [(order, draw(st.integers(0, 1_000_000)), draw(st.sampled_from(PROVINCES))) for order in orders]
    total = (own or 0) + sum(balance for _, balance, _ in grantors)
    borne = draw(st.one_of(st.integers(0, total + 10), st.just(total), st.integers(0, 3_000_000)))
    return own, grantors, borne


def test_the_settle_function_splits_exactly_as_the_pure_waterfall(valkey, store):
    loop = asyncio.new_event_loop()  # private: the session loop belongs to pytest-asyncio
    client = Redis.from_url(valkey.url)
    local = make_store(client)

    async def one(own, grantors, borne):
        await client.flushdb()
        patient = new_person()
        people = [(patient, XIAN, "r" if own is None else "e", own)]
        accounts = []
        for order, balance, region in grantors:
            person = new_person()
            people.append((person, region, "e", balance))
            accounts.append(Account(person, region, balance, order))
        await local.register(people)
        for account in accounts:
            await bind(client, patient, account.person_id, account.payment_order, account.region)
        [applied] = await local.settle([charge(patient, borne)])
        expected = split(borne, None if own is None else Account(patient, XIAN, own), accounts)
        assert applied.status == "SETTLED"
        assert applied.lines == expected
        for line in expected[:-1]:
            assert await local.balance(line.person_id) == line.balance_after

    @settings(max_examples=50, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(families())
    def check(case):
        loop.run_until_complete(one(*case))

    try:
        check()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


# --- concurrency -----------------------------------------------------------------------------

async def test_concurrent_settlements_against_one_grantor_never_overdraw(store, client):
    initial = 100_000
    grantor = new_person()
    patients = [new_person() for _ in range(20)]
    await store.register([(grantor, BAOJI, "e", initial)] + [(p, XIAN, "r", None) for p in patients])
    for p in patients:
        await bind(client, p, grantor, 1, BAOJI)
    charges = [charge(patients[i % len(patients)], 300 + (i * 37) % 900) for i in range(200)]
    total_borne = sum(c.borne for c in charges)
    assert total_borne > initial

    batches = [charges[i:i + 10] for i in range(0, len(charges), 10)]
    results = [a for batch in await asyncio.gather(*(store.settle(b) for b in batches)) for a in batch]

    assert all(a.status == "SETTLED" for a in results)
    debited = sum(l.amount for a in results for l in a.lines if l.source == "grantor")
    cash = sum(l.amount for a in results for l in a.lines if l.source == "cash")
    assert debited == min(initial, total_borne)
    assert debited + cash == total_borne
    assert all(l.balance_after >= 0 for a in results for l in a.lines if l.source == "grantor")
    assert await store.balance(grantor) == initial - debited == 0
    assert sorted(r.paid for r in await store.spending(grantor)) == sorted(
        l.amount for a in results for l in a.lines if l.source == "grantor")
