"""Tests for tests.oracle.waterfall, the payment waterfall (支付顺序) and its refund as the tests'
oracle that the settlement Function is checked against.

Pure unit tests over integer fen: no broker, no Redis, no files.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.oracle.waterfall import Account, Line, refund_plan, split
from shared.identity import make_id_number

# No example database: tests must not write files into the tree.
no_db = settings(database=None, deadline=None, max_examples=300)

XIAN, BAOJI = "610100", "610300"
PATIENT = make_id_number("610102", date(1950, 3, 4), 21)
FATHER = make_id_number("610102", date(1975, 6, 7), 33)
SISTER = make_id_number("610302", date(1982, 8, 9), 44)


def own(balance: int) -> Account:
    return Account(PATIENT, XIAN, balance)


def grantor(order: int, balance: int) -> Account:
    person, region = (FATHER, XIAN) if order == 1 else (SISTER, BAOJI)
    return Account(person, region, balance, order)


def own_line(amount: int, after: int) -> Line:
    return Line("own", amount, PATIENT, XIAN, None, after)


def grantor_line(order: int, amount: int, after: int) -> Line:
    person, region = (FATHER, XIAN) if order == 1 else (SISTER, BAOJI)
    return Line("grantor", amount, person, region, order, after)


def cash(amount: int) -> Line:
    return Line("cash", amount)


SPLIT_CASES = [
    pytest.param(5_000, own(-300), [grantor(1, 4_000)], [grantor_line(1, 4_000, 0), cash(1_000)],
                 id="an own account below zero pays nothing and keeps its deficit"),
    pytest.param(5_000, own(1_000), [grantor(1, -1), grantor(2, 2_000)],
                 [own_line(1_000, 0), grantor_line(2, 2_000, 0), cash(2_000)],
                 id="a grantor below zero is passed over"),
    pytest.param(5_000, own(10_000), [], [own_line(5_000, 5_000), cash(0)],
                 id="the own account pays all it can cover"),
    pytest.param(10_000, own(10_000), [grantor(1, 500)], [own_line(10_000, 0), cash(0)],
                 id="an exact balance empties the own account and leaves grantors untouched"),
    pytest.param(10_000, own(3_000), [grantor(1, 4_000), grantor(2, 5_000)],
                 [own_line(3_000, 0), grantor_line(1, 4_000, 0), grantor_line(2, 3_000, 2_000), cash(0)],
                 id="the own account first then grantor 1 then grantor 2"),
    pytest.param(10_000, own(3_000), [grantor(2, 5_000), grantor(1, 4_000)],
                 [own_line(3_000, 0), grantor_line(1, 4_000, 0), grantor_line(2, 3_000, 2_000), cash(0)],
                 id="grantor 1 pays before grantor 2 even when passed in reverse order"),
    pytest.param(20_000, own(3_000), [grantor(1, 4_000), grantor(2, 5_000)],
                 [own_line(3_000, 0), grantor_line(1, 4_000, 0), grantor_line(2, 5_000, 0), cash(8_000)],
                 id="the rest is paid in cash once every account is empty"),
    pytest.param(7_000, None, [grantor(1, 4_000), grantor(2, 5_000)],
                 [grantor_line(1, 4_000, 0), grantor_line(2, 3_000, 2_000), cash(0)],
                 id="a resident patient has no own account and grantors pay from the start"),
    pytest.param(7_000, None, [], [cash(7_000)],
                 id="a resident patient without grantors pays everything in cash"),
    pytest.param(0, own(3_000), [grantor(1, 4_000)], [cash(0)],
                 id="nothing borne gives only a cash line of zero"),
    pytest.param(6_000, own(3_000), [grantor(1, 0), grantor(2, 5_000)],
                 [own_line(3_000, 0), grantor_line(2, 3_000, 2_000), cash(0)],
                 id="a grantor with a zero balance gets no line"),
    pytest.param(6_000, own(0), [grantor(1, 6_000)], [grantor_line(1, 6_000, 0), cash(0)],
                 id="an empty own account gets no line"),
    pytest.param(9_000, own(3_000), [grantor(1, 6_000)], [own_line(3_000, 0), grantor_line(1, 6_000, 0), cash(0)],
                 id="accounts that together cover the exact amount leave a cash line of zero"),
]


@pytest.mark.parametrize(("borne", "own_account", "grantors", "expected"), SPLIT_CASES)
def test_split_pays_in_waterfall_order(borne, own_account, grantors, expected):
    assert split(borne, own_account, grantors) == expected


def test_split_refuses_a_negative_borne_amount():
    with pytest.raises(ValueError):
        split(-1, own(100), [])


# --- properties ------------------------------------------------------------------------------

balances = st.integers(min_value=0, max_value=10**9)


@st.composite
def waterfalls(draw):
    """(borne, own account or None for a resident, grantors in any order with orders 1 and/or 2)."""
    own_account = draw(st.one_of(st.none(), balances.map(own)))
    orders = draw(st.permutations([1, 2]))[: draw(st.integers(0, 2))]
    grantors = [grantor(order, draw(balances)) for order in orders]
    total = (own_account.balance if own_account else 0) + sum(g.balance for g in grantors)
    # Around the total the accounts can cover, so exact, short and over-the-top bills all occur.
    borne = draw(st.one_of(st.integers(0, total + 10), st.just(total), st.integers(0, 2 * 10**9)))
    return borne, own_account, grantors


def payers_in_order(own_account, grantors):
    return ([own_account] if own_account else []) + sorted(grantors, key=lambda g: g.payment_order)


@no_db
@given(waterfalls())
def test_account_lines_and_cash_always_add_up_to_the_borne_amount(case):
    borne, own_account, grantors = case
    lines = split(borne, own_account, grantors)
    assert sum(line.amount for line in lines) == borne
    assert [line.source for line in lines].count("cash") == 1
    assert lines[-1].source == "cash" and lines[-1].amount >= 0


@no_db
@given(waterfalls())
def test_no_line_leaves_an_account_below_zero_or_takes_more_than_its_balance(case):
    borne, own_account, grantors = case
    balance_of = {a.person_id: a.balance for a in payers_in_order(own_account, grantors)}
    for line in split(borne, own_account, grantors)[:-1]:
        assert line.amount > 0
        assert line.amount <= balance_of[line.person_id]
        assert line.balance_after == balance_of[line.person_id] - line.amount
        assert line.balance_after >= 0


@no_db
@given(waterfalls())
def test_a_later_account_pays_only_once_every_earlier_one_is_empty(case):
    borne, own_account, grantors = case
    lines = split(borne, own_account, grantors)[:-1]
    payers = payers_in_order(own_account, grantors)
    paid_by = {line.person_id: line for line in lines}
    # Lines come in waterfall order: own, grantor 1, grantor 2.
    rank = {a.person_id: i for i, a in enumerate(payers)}
    assert [rank[line.person_id] for line in lines] == sorted(rank[line.person_id] for line in lines)
    for line in lines[:-1]:
        assert line.balance_after == 0, "an account that was not emptied is followed by another payer"
    for i, later in enumerate(payers):
        if later.person_id in paid_by:
            for earlier in payers[:i]:
                line = paid_by.get(earlier.person_id)
                assert (line.balance_after if line else earlier.balance) == 0
    if split(borne, own_account, grantors)[-1].amount > 0:
        assert all((paid_by[a.person_id].balance_after if a.person_id in paid_by else a.balance) == 0
                   for a in payers), "cash is collected while an account still has money"


@st.composite
def refunds(draw):
    """Lines paid by a charge and a series of refund amounts, each within what is left."""
    borne, own_account, grantors = draw(waterfalls())
    paid = split(borne, own_account, grantors)
    amounts = []
    left = borne
    for _ in range(draw(st.integers(1, 4))):
        amount = draw(st.integers(0, left))
        amounts.append(amount)
        left -= amount
    return paid, amounts


@no_db
@given(refunds())
def test_refunds_give_back_the_amount_and_never_more_than_a_line_paid(case):
    paid, amounts = case
    back = [0] * len(paid)
    for amount in amounts:
        plan = refund_plan(paid, back, amount)
        assert len(plan) == len(paid)
        assert sum(plan) == amount
        assert all(give >= 0 for give in plan)
        back = [b + g for b, g in zip(back, plan)]
        assert all(b <= line.amount for b, line in zip(back, paid))


@no_db
@given(refunds())
def test_refunds_come_from_the_last_paid_line_backwards(case):
    paid, amounts = case
    back = [0] * len(paid)
    for amount in amounts:
        plan = refund_plan(paid, back, amount)
        back = [b + g for b, g in zip(back, plan)]
        # A line has had anything back only if every line after it has had all of it back.
        for i, line in enumerate(paid):
            if back[i] > 0:
                assert all(back[j] == paid[j].amount for j in range(i + 1, len(paid)))
        # The accounts stand as if the smaller bill had been charged in the first place.
        remaining = sum(line.amount for line in paid) - sum(back)
        own_account = next((Account(l.person_id, l.region, l.amount + l.balance_after)
                            for l in paid if l.source == "own"), None)
        grantors = [Account(l.person_id, l.region, l.amount + l.balance_after, l.payment_order)
                    for l in paid if l.source == "grantor"]
        kept = [line.amount - b for line, b in zip(paid, back)]
        smaller = {l.person_id: l.amount for l in split(remaining, own_account, grantors)}
        assert [k for line, k in zip(paid, kept) if line.source != "cash"] == [
            smaller.get(line.person_id, 0) for line in paid if line.source != "cash"]


@no_db
@given(refunds(), st.integers(1, 10**6))
def test_a_refund_above_what_remains_is_refused(case, excess):
    paid, amounts = case
    back = [0] * len(paid)
    for amount in amounts:
        back = [b + g for b, g in zip(back, refund_plan(paid, back, amount))]
    remains = sum(line.amount for line in paid) - sum(back)
    with pytest.raises(ValueError):
        refund_plan(paid, back, remains + excess)


def test_a_negative_refund_is_refused():
    paid = split(500, own(1_000), [])
    with pytest.raises(ValueError):
        refund_plan(paid, [0, 0], -1)


def test_a_partial_refund_returns_cash_then_grantor_2_then_grantor_1_then_the_own_account():
    paid = split(10_000, own(1_000), [grantor(2, 3_000), grantor(1, 2_000)])
    assert [(l.source, l.payment_order, l.amount) for l in paid] == [
        ("own", None, 1_000), ("grantor", 1, 2_000), ("grantor", 2, 3_000), ("cash", None, 4_000)]
    assert refund_plan(paid, [0, 0, 0, 0], 5_000) == [0, 0, 1_000, 4_000]
    assert refund_plan(paid, [0, 0, 1_000, 4_000], 4_500) == [500, 2_000, 2_000, 0]
    assert refund_plan(paid, [500, 2_000, 3_000, 4_000], 500) == [500, 0, 0, 0]
