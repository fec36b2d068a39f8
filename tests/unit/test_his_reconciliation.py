"""对账 with the HIS without I/O: the platform's book of an institution-day against the HIS's,
every charge and refund they disagree on listed with its ids, nothing else; and the models the HIS
sends, strict and bounded."""

import json
from datetime import date

import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError

from services.settlement.domain.his_reconciliation import (Book, ChargeAmounts, DuplicateRow, Totals, book_of,
                                                          charge_amounts, compare, totals)
from services.settlement import outcomes
from services.settlement.domain.lines import Line
from services.settlement.his_contract import MAX_ROWS_PER_PART, InstitutionDailyDetail, InstitutionDailyTotals
from services.settlement.usecases.bureau_books import drift_detected
from services.settlement.usecases.his_reconciliation import ledger_item
from services.settlement.storage.accounts import Movement
from services.settlement.storage.accounts import MovementApplied


def amounts(borne: int, own: int = 0, family: int = 0) -> ChargeAmounts:
    return ChargeAmounts(borne, own, family, borne - own - family)


def test_a_charge_settled_lines_fold_into_the_his_columns():
    lines = [("own", 1_000), ("grantor", 500), ("grantor", 300), ("cash", 200)]
    assert charge_amounts(2_000, lines) == ChargeAmounts(2_000, 1_000, 800, 200)


def test_books_that_agree_have_no_differences():
    book = Book({"C1": amounts(1_000, 400, 600)}, {("C1", "R1"): 100})
    assert compare(book, Book(dict(book.charges), dict(book.refunds))) == []


def test_a_missing_charge_an_extra_one_an_amount_and_a_refund_are_each_named():
    ours = Book({"C1": amounts(1_000, 1_000), "C2": amounts(500, 0, 500), "C3": amounts(300)},
                {("C1", "R1"): 100, ("C2", "R9"): 50})
    theirs = Book({"C1": amounts(1_000, 1_000), "C2": amounts(500, 0, 400), "C4": amounts(70)},
                  {("C1", "R1"): 90, ("C4", "R2"): 10})
    found = [(d.kind, d.charge_id, d.refund_id, d.platform, d.institution) for d in compare(ours, theirs)]
    assert found == [
        ("amount_differs", "C2", None, amounts(500, 0, 500), amounts(500, 0, 400)),
        ("missing_at_institution", "C3", None, amounts(300), None),
        ("missing_on_platform", "C4", None, None, amounts(70)),
        ("amount_differs", "C1", "R1", 100, 90),
        ("missing_at_institution", "C2", "R9", 50, None),
        ("missing_on_platform", "C4", "R2", None, 10),
    ]


def test_the_his_listing_a_charge_twice_is_refused():
    with pytest.raises(DuplicateRow) as refused:
        book_of([("C1", amounts(1)), ("C1", amounts(1))], [])
    assert refused.value.charge_id == "C1"
    with pytest.raises(DuplicateRow):
        book_of([], [("C1", "R1", 5), ("C1", "R1", 5)])


def test_totals_count_and_sum_each_column():
    book = Book({"C1": ChargeAmounts(1_000, 600, 300, 100), "C2": ChargeAmounts(50, 0, 0, 50)},
                {("C1", "R1"): 30, ("C1", "R2"): 20})
    assert totals(book) == Totals(2, 1_050, 600, 300, 150, 2, 50)


ids = st.sampled_from([f"C{i}" for i in range(10)])
charge_rows = st.dictionaries(ids, st.builds(ChargeAmounts, *[st.integers(0, 5)] * 4), max_size=8)
refund_rows = st.dictionaries(st.tuples(ids, st.sampled_from(["R1", "R2"])), st.integers(0, 5), max_size=6)
books = st.builds(Book, charge_rows, refund_rows)


@given(books, books)
def test_an_id_is_listed_exactly_when_the_books_disagree_on_it(ours, theirs):
    found = compare(ours, theirs)
    listed = {(d.charge_id, d.refund_id) for d in found}
    assert len(listed) == len(found)  # each once
    disagree = {(c, None) for c in ours.charges.keys() | theirs.charges.keys()
                if ours.charges.get(c) != theirs.charges.get(c)}
    disagree |= {k for k in ours.refunds.keys() | theirs.refunds.keys() if ours.refunds.get(k) != theirs.refunds.get(k)}
    assert listed == disagree
    for d in found:  # each says what each side holds, and its kind follows from that
        assert d.kind == ("missing_on_platform" if d.platform is None else
                          "missing_at_institution" if d.institution is None else "amount_differs")


@given(books, books)
def test_swapping_the_books_swaps_the_sides_of_every_difference(ours, theirs):
    swap = {"missing_on_platform": "missing_at_institution", "missing_at_institution": "missing_on_platform",
            "amount_differs": "amount_differs"}
    there = [(swap[d.kind], d.charge_id, d.refund_id, d.institution, d.platform) for d in compare(ours, theirs)]
    back = [(d.kind, d.charge_id, d.refund_id, d.platform, d.institution) for d in compare(theirs, ours)]
    assert there == back


@given(books, books)
def test_books_without_differences_have_equal_totals(ours, theirs):
    if not compare(ours, theirs):
        assert totals(ours) == totals(theirs)


@given(books)
def test_a_book_read_back_from_its_rows_is_the_same_book(book):
    rows = book_of(book.charges.items(), ((c, r, a) for (c, r), a in book.refunds.items()))
    assert compare(book, rows) == [] and totals(rows) == totals(book)


# -- what the HIS sends -------------------------------------------------------------------------

TOTALS = {"institution_code": "H610100-01", "day": "2026-05-22", "charge_count": 2, "individual_borne_total": "30.00",
          "own_total": "10.00", "family_total": "15.00", "cash_total": "5.00", "refund_count": 0,
          "refund_total": "0.00"}


def test_totals_read_yuan_strings_as_fen_and_the_day_as_a_date():
    t = InstitutionDailyTotals.model_validate(TOTALS)
    assert (t.day, t.individual_borne_total, t.family_total) == (date(2026, 5, 22), 3_000, 1_500)


@pytest.mark.parametrize("field,value", [("charge_count", "2"), ("charge_count", True), ("charge_count", -1),
                                         ("own_total", 10), ("own_total", "1.001"), ("day", "2026-5-22"),
                                         ("day", 20260522), ("institution_code", "H:1")])
def test_totals_coerce_nothing(field, value):
    with pytest.raises(ValidationError):
        InstitutionDailyTotals.model_validate(TOTALS | {field: value})


def test_a_detail_part_is_bounded():
    row = {"charge_id": "C1", "individual_borne": "1.00", "own": "1.00", "family": "0.00", "cash": "0.00"}
    base = {"institution_code": "H610100-01", "day": "2026-05-22", "part": 1, "parts": 1}
    assert len(InstitutionDailyDetail.model_validate(base | {"charges": [row] * MAX_ROWS_PER_PART}).charges) == 1000
    for wrong in ({"charges": [row] * (MAX_ROWS_PER_PART + 1)}, {"part": 2, "parts": 1}, {"parts": 101},
                  {"part": "1"}, {"report_id": "a:b"}):
        with pytest.raises(ValidationError):
            InstitutionDailyDetail.model_validate(base | wrong)


# -- the ledger's reading of the platform's own outcomes, and the drift of a snapshot -----------

def test_the_ledger_reads_a_settled_charge_and_a_refund_as_the_settlement_service_writes_them():
    at = "2026-05-22T23:59:59+08:00"  # China date of settled_at, whatever the clock's zone: 20260522
    lines = [Line("own", 5_000, "610102195001011234", "610100", None, 0, 1),
             Line("grantor", 3_000, "610102195001015678", "610100", 1, 0, 2), Line("cash", 2_000)]
    settled = ledger_item(outcomes.charge_settled("H1", "C1", "610102195001011234", 10_000, at, lines, at))
    assert (settled.institution_code, settled.day, settled.charge_id, settled.amounts) == (
        "H1", "20260522", "C1", ChargeAmounts(10_000, 5_000, 3_000, 2_000))
    refund = ledger_item(outcomes.refund_settled("H1", "C1", "R1", "610102195001011234", 700, lines[1:],
                                                 "2026-05-22T16:00:00+00:00"))
    assert (refund.day, refund.refund_id, refund.refunded) == ("20260523", "R1", 700)


def test_a_snapshot_drifts_only_by_what_the_postings_in_flight_do_not_explain():
    snapshot = Movement("610102195001011234", "snapshot", 11_000, 2, "610100")
    assert drift_detected(snapshot, MovementApplied("APPLIED", 8_000, 8_000, -3_000)) is None  # explained
    assert drift_detected(Movement("610102195001011234", "credit", 100, 3, "610100"),
                          MovementApplied("APPLIED", 8_100)) is None
    out, fen = drift_detected(snapshot, MovementApplied("APPLIED", 8_000, 7_000, -3_000))
    assert (out.topic, out.key, fen) == ("bureau.postings.610100", b"610100", -1_000)
    assert json.loads(out.value)["payload"] == {
        "person_id": "610102195001011234", "region": "610100", "bureau_seq": 2, "snapshot_balance": "110.00",
        "in_flight": "-30.00", "platform_balance": "70.00", "drift": "-10.00"}
    again, _ = drift_detected(snapshot, MovementApplied("STALE", 8_000, 7_000, -3_000))
    assert json.loads(again.value)["event_id"] == json.loads(out.value)["event_id"]
