"""One codec per stored layout, read alike by Python and by the Functions (issue 21): each test
writes through a Python codec (services/settlement/storage/layouts.py, shared/binding_index.py),
lets a Function read and change what was written (FCALL through SettlementStore or BindingStore),
and reads the result back through the same codec, against the test session's real Redis."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from services.binding.storage.bindings import ENDS_KEY, BindingStore
from services.settlement.domain.consumption import Spent
from services.settlement.domain.lines import Line
from services.settlement.storage.accounts import (Account, ChargeToSettle, InstitutionRegistration, RefundToApply,
                                                  SettlementStore)
from services.settlement.storage.layouts import (INSTITUTION_KEYS, INSTITUTIONS, AccountEntry, OutboxItem,
                                                  account_key, decode_institution, decode_institution_keys,
                                                  decode_lines, decode_posting, decode_spent, encode_lines,
                                                  encode_posting, encode_spent, postings_key, spent_key)
from services.settlement.storage.library import FILES
from shared.binding_index import Payer, decode_payers, encode_payer, payers_key
from shared.identity import make_id_number

pytestmark = pytest.mark.integration

XIAN, BAOJI = "610100", "610300"
HOSPITAL = "H610100-07"
DAY = 20260601
AT = "2026-06-01T10:00:00+08:00"
REFUND_AT = "2026-06-02T09:00:00+08:00"
NOW_MS = 1_780_279_200_000  # AT as the platform's clock (epoch ms)
SETTLEMENT_FUNCTIONS = {"settle_batch", "refund_batch", "reverse_payment", "provisional_refusals", "release_due",
                        "release_binding", "register_person", "transfer_person", "bureau_movement",
                        "register_institution", "ledger_record"}


def person(n: int) -> str:
    return make_id_number("610102", date(1970, 1, 1 + n), n)


@pytest.fixture
def client(clean_redis):
    """The test session's Redis, emptied (tests/conftest.py)."""
    return clean_redis


@pytest.fixture
async def store(client):
    store = SettlementStore(client, provinces=[XIAN, BAOJI], rejection_ttl=3600, record_ttl=3600)
    await store.load_functions()
    await store.register_institutions([(HOSPITAL, XIAN, "hospital")])
    return store


def pairs(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2]))


def charge(patient: str, borne: int, charge_id: str, op: str = "S", quote_id: str = "") -> ChargeToSettle:
    return ChargeToSettle(str(uuid.uuid4()), HOSPITAL, XIAN, charge_id, "digest", borne, patient, DAY, AT,
                          quote_id=quote_id, op=op)


async def test_the_settlement_library_is_its_files_loaded_as_one_with_every_function(store, client):
    [library] = await client.function_list(library="settlement")
    functions = pairs(library)[b"functions"]  # FUNCTION LIST answers flat [name, value, ...] maps
    assert {pairs(f)[b"name"].decode() for f in functions} == SETTLEMENT_FUNCTIONS
    assert FILES == ("common.lua", "ledger.lua", "waterfall.lua", "quotes.lua", "charges.lua", "bureau.lua")


async def test_an_account_entry_written_by_python_is_charged_by_the_function_and_read_back(store, client):
    patient = person(1)
    written = AccountEntry(balance=5_000, bureau_seq=3, region=XIAN, scheme="e", account_seq=2, watermark=1,
                           held=700)
    await client.hset(account_key(patient), patient, written.encode())

    [applied] = await store.settle([charge(patient, 1_000, "C-1")], NOW_MS)

    assert applied.status == "SETTLED"
    [own, cash] = applied.lines
    assert (own.source, own.amount, own.balance_after, own.account_seq) == ("own", 1_000, 4_000, 3)
    assert (cash.source, cash.amount) == ("cash", 0)
    raw = await client.hget(account_key(patient), patient)
    assert AccountEntry.decode(raw) == AccountEntry(4_000, 3, XIAN, "e", 3, 1, 700)
    assert AccountEntry.decode(raw).encode().encode() == raw
    assert await store.account(patient) == Account(4_000, XIAN, "employee", 700)
    assert await store.account_seq(patient) == 3


async def test_a_six_field_account_entry_reads_as_nothing_held_and_comes_back_with_seven(store, client):
    patient = person(2)
    await client.hset(account_key(patient), patient, "900|0|610100|e|0|0")  # written before quotes
    assert AccountEntry.decode("900|0|610100|e|0|0").held == 0

    [applied] = await store.settle([charge(patient, 1_000, "C-2")], NOW_MS)

    assert [(l.source, l.amount) for l in applied.lines] == [("own", 900), ("cash", 100)]
    assert AccountEntry.decode(await client.hget(account_key(patient), patient)) == AccountEntry(0, 0, XIAN, "e", 1, 0, 0)


async def test_a_payer_written_by_the_binding_codec_pays_and_every_settlement_layout_reads_back(store, client):
    """The payer index written by shared/binding_index.py, read by the settle Function; the lines,
    the consumption row and the 对账 postings it writes read back through layouts.py (and encode
    again to the very bytes the Function wrote)."""
    patient, grantor = person(3), person(4)
    await client.hset(account_key(patient), patient, AccountEntry(300, 0, XIAN, "e").encode())
    await client.hset(account_key(grantor), grantor, AccountEntry(10_000, 0, BAOJI, "e").encode())
    payer = Payer("BND-L1", grantor, 1, date(2026, 1, 1), date(2026, 12, 31), BAOJI, monthly_limit_fen=500)
    await client.hset(payers_key(patient), payer.binding_id, encode_payer(payer))
    assert decode_payers(await store.payers(patient)) == [payer]

    [applied] = await store.settle([charge(patient, 1_000, "C-3")], NOW_MS)

    assert applied.lines == [Line("own", 300, patient, XIAN, None, 0, 1),
                             Line("grantor", 500, grantor, BAOJI, 1, 9_500, 1, "BND-L1"),
                             Line("cash", 200)]
    raw_lines = await client.hget(f"stl:charge:{HOSPITAL}:C-3", "lines")
    assert decode_lines(raw_lines.decode()) == applied.lines
    assert encode_lines(applied.lines).encode() == raw_lines
    assert await store.used("BND-L1", "202606") == 500

    [refunded] = await store.refund([RefundToApply(str(uuid.uuid4()), HOSPITAL, "C-3", "R-1", "refund-digest", 350,
                                                   REFUND_AT)])
    assert [(l.source, l.amount) for l in refunded.lines] == [("grantor", 150), ("cash", 200)]

    [(field, value)] = (await client.hgetall(spent_key(grantor))).items()
    row = decode_spent(field, value)
    assert row == Spent("C-3", date(2026, 6, 1), patient, 500, 150, AT, HOSPITAL)
    assert tuple(x.encode() for x in encode_spent(row)) == (field, value)
    assert await store.spending(grantor) == [row]

    debits = await client.hgetall(postings_key(BAOJI, "20260601"))
    credits = await client.hgetall(postings_key(BAOJI, "20260602"))
    assert [decode_posting(v) for v in debits.values()] == [("debit", 500, grantor)]
    assert [decode_posting(v) for v in credits.values()] == [("credit", 150, grantor)]
    assert {encode_posting(*decode_posting(v)).encode() for v in (*debits.values(), *credits.values())} == {
        *debits.values(), *credits.values()}


async def test_a_quote_released_by_a_pause_written_through_the_binding_codec_reads_back_from_the_outbox(store, client):
    patient, grantor = person(5), person(6)
    await store.register([(patient, XIAN, "r", None), (grantor, XIAN, "e", 2_000)])
    payer = Payer("BND-L2", grantor, 1, date(2026, 1, 1), date(2026, 12, 31), XIAN)
    await client.hset(payers_key(patient), payer.binding_id, encode_payer(payer))
    [quoted] = await store.settle([charge(patient, 800, "C-4", op="Q", quote_id="Q-4")], NOW_MS)
    assert quoted.status == "QUOTED"
    assert AccountEntry.decode(await client.hget(account_key(grantor), grantor)).held == 800

    paused = Payer(**{**payer.__dict__, "paused": True})
    await client.hset(payers_key(patient), payer.binding_id, encode_payer(paused))
    assert await store.release_binding("BND-L2", patient, "binding_paused", REFUND_AT) == 1

    [raw] = await client.lrange("stl:quote:outbox", 0, -1)
    item = OutboxItem.decode(raw)
    assert item == OutboxItem("Q-4", HOSPITAL, "C-4", "binding_paused", quoted.lines, REFUND_AT)
    assert item.encode() == raw
    assert AccountEntry.decode(await client.hget(account_key(grantor), grantor)).held == 0
    [release] = await store.outbox()
    assert (release.quote_id, release.charge_id, release.lines) == ("Q-4", "C-4", quoted.lines)


async def test_an_institution_registration_reads_back_as_written(store, client):
    keys = [{"key_id": "k1", "public_key": "AAAA", "not_before": "2026-01-01T00:00:00+08:00", "not_after": None}]
    assert await store.institutions_registered(
        [InstitutionRegistration("H610300-02", BAOJI, "pharmacy", keys, BAOJI, "宝鸡药房")]) == ["OK"]

    assert decode_institution(await client.hget(INSTITUTIONS, "H610300-02")) == (BAOJI, "pharmacy")
    assert decode_institution_keys(await client.hget(INSTITUTION_KEYS, "H610300-02")) == (BAOJI, keys)
    assert await store.institution_names(["H610300-02"]) == {"H610300-02": "宝鸡药房"}


async def test_the_binding_sweep_reads_the_payer_index_through_the_shared_reader(client):
    """binding's library carries shared/binding_index.lua too: its sweep finds each entry's end there."""
    bindings = BindingStore(client, outcome_ttl_seconds=60)
    await bindings.load_functions()
    beneficiary = person(7)
    ended = Payer("BND-old", person(8), 1, date(2025, 1, 1), date(2025, 12, 31), XIAN, 1_000, True)
    current = Payer("BND-new", person(9), 2, date(2026, 1, 1), date(2026, 12, 31), XIAN)
    old_style = Payer("BND-5f", person(10), 1, date(2026, 1, 1), date(2026, 11, 30), XIAN)
    await client.hset(payers_key(beneficiary), mapping={
        ended.binding_id: encode_payer(ended), current.binding_id: encode_payer(current),
        old_style.binding_id: "|".join(encode_payer(old_style).split("|")[:5])})
    await client.zadd(ENDS_KEY, {beneficiary: 20251231})

    assert await client.fcall("bnd_sweep", 0, "20260101", "10") == [1, 1]

    assert decode_payers(await client.hgetall(payers_key(beneficiary))) == [old_style, current]
    assert await client.zscore(ENDS_KEY, beneficiary) == 20261130
