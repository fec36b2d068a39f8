"""家庭共济消费查询 through the API: a bounded date range, pages over the payments, totals over
the whole range."""

from datetime import date

import pytest
from hypothesis import given, strategies as st

from services.gateway.domain import paging
from services.gateway.domain.views import bindings_view, masked, outcome_view

TODAY = date(2026, 11, 26)


def listed(*beneficiaries):
    return {"grantor_id": "610***********0018", "total_paid": "30.00", "total_refunded": "1.00",
            "beneficiaries": [{"beneficiary_id": b, "payments": payments, "total_paid": "x", "total_refunded": "y"}
                              for b, payments in beneficiaries]}


def payment(charge_id, settled_at, paid="10.00"):
    return {"charge_id": charge_id, "institution_code": "H1", "settled_at": settled_at, "paid": paid,
            "refunded": "0.00"}


@pytest.mark.parametrize("asked,expected", [
    ((None, None), (date(2026, 10, 28), TODAY)),
    ((date(2026, 11, 1), None), (date(2026, 11, 1), date(2026, 11, 30))),
    ((None, date(2026, 6, 30)), (date(2026, 6, 1), date(2026, 6, 30))),
    ((date(2026, 1, 1), date(2026, 12, 31)), (date(2026, 1, 1), date(2026, 12, 31))),
    ((TODAY, TODAY), (TODAY, TODAY)),
])
def test_the_range_defaults_to_thirty_days(asked, expected):
    assert paging.date_range(*asked, TODAY) == expected


@pytest.mark.parametrize("start,end", [(date(2026, 11, 2), date(2026, 11, 1)),
                                       (date(2025, 1, 1), date(2026, 1, 2))])
def test_a_range_backwards_or_over_366_days_is_refused(start, end):
    with pytest.raises(paging.BadRange):
        paging.date_range(start, end, TODAY)


def test_payments_are_listed_newest_first_with_their_beneficiary():
    rows = paging.payments(listed(("A", [payment("c1", "2026-11-01T10:00:00+08:00"),
                                         payment("c3", "2026-11-03T10:00:00+08:00")]),
                                  ("B", [payment("c2", "2026-11-02T10:00:00+08:00")])))
    assert [(r["beneficiary_id"], r["charge_id"]) for r in rows] == [("A", "c3"), ("B", "c2"), ("A", "c1")]


def test_a_page_past_the_end_is_empty_and_totals_cover_the_range():
    rows = paging.payments(listed(("A", [payment(f"c{i}", f"2026-11-{i + 1:02d}T10:00:00+08:00")
                                         for i in range(5)])))
    assert [len(paging.page_of(rows, n, 2).items) for n in (1, 2, 3, 4)] == [2, 2, 1, 0]
    assert paging.page_of(rows, 4, 2).total_pages == 3 and paging.page_of(rows, 1, 50).total_pages == 1
    totals = paging.totals(listed(("A", [payment("c", "t")])))
    assert (totals["total_paid"], totals["total_refunded"]) == ("30.00", "1.00")
    assert totals["beneficiaries"] == [{"beneficiary_id": "A", "payments": 1, "total_paid": "x",
                                        "total_refunded": "y"}]


def test_nothing_spent_is_zero_not_missing():
    assert paging.page_of(paging.payments({"beneficiaries": []}), 1, 50).total_pages == 0
    assert paging.totals({})["total_paid"] == "0.00"


@given(n=st.integers(0, 60), size=st.integers(1, 25), same_time=st.booleans())
def test_pages_cover_every_payment_exactly_once(n, size, same_time):
    rows = paging.payments(listed(("A", [payment(f"c{i:02d}", "2026-11-01T10:00:00+08:00" if same_time
                                                 else f"2026-11-01T10:{i:02d}:00+08:00") for i in range(n)])))
    pages = [paging.page_of(rows, p, size) for p in range(1, paging.page_of(rows, 1, size).total_pages + 2)]
    seen = [r["charge_id"] for page in pages for r in page.items]
    assert sorted(seen) == sorted(f"c{i:02d}" for i in range(n)) and len(seen) == n
    assert pages[-1].items == []


def test_every_id_number_in_an_outcome_is_masked():
    outcome = {"command_id": "c", "binding_id": "BND-1", "grantor_id": "610102198503150018",
               "changes": [{"grantor_id": "610302195501200031", "payment_order": 1}]}
    view = outcome_view("PaymentOrderChanged", outcome)
    assert view["status"] == "payment_order_changed" and view["command_id"] == "c"
    assert view["outcome"]["grantor_id"] == "610***********0018"
    assert view["outcome"]["changes"][0]["grantor_id"] == "610***********0031"
    assert masked("610102198503150019") == "610102198503150019"  # not an ID number (check digit): left alone


def test_roles_are_also_shown_in_chinese():
    view = bindings_view({"person_id": "610***********0018",
                          "bindings": [{"role": "grantor"}, {"role": "beneficiary"}]})
    assert [b["role_zh"] for b in view["bindings"]] == ["授权者", "使用者"]
