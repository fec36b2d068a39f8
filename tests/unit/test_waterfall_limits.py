"""The pure waterfall with holds (预结算), monthly limits and paused bindings (issue 15).

Pure unit tests over integer fen: no broker, no Redis, no files. The settlement Function agrees
with these rules (tests/integration/test_settlement_functions.py, the hypothesis agreement test).
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.oracle.waterfall import Account, Line, split
from shared.identity import make_id_number

no_db = settings(database=None, deadline=None, max_examples=300)

XIAN, BAOJI = "610100", "610300"
PATIENT = make_id_number("610102", date(1950, 3, 4), 21)
FATHER = make_id_number("610102", date(1975, 6, 7), 33)
SISTER = make_id_number("610302", date(1982, 8, 9), 44)


def own(balance: int, held: int = 0) -> Account:
    return Account(PATIENT, XIAN, balance, held=held)


def grantor(order: int, balance: int, held: int = 0, left: int | None = None, paused: bool = False) -> Account:
    person, region = (FATHER, XIAN) if order == 1 else (SISTER, BAOJI)
    return Account(person, region, balance, order, held=held, limit_left=left, paused=paused, binding_id=f"B{order}")


def g_line(order: int, amount: int, after: int) -> Line:
    person, region = (FATHER, XIAN) if order == 1 else (SISTER, BAOJI)
    return Line("grantor", amount, person, region, order, after, binding_id=f"B{order}")


CASES = [
    pytest.param(5_000, own(3_000, held=2_000), [], [Line("own", 1_000, PATIENT, XIAN, None, 2_000), Line("cash", 4_000)],
                 False, id="held money is not spent; balance_after is the balance after the debit"),
    pytest.param(5_000, own(3_000, held=2_000), [], [Line("own", 1_000, PATIENT, XIAN, None, 0), Line("cash", 4_000)],
                 True, id="a quote's balance_after is what is left to spend"),
    pytest.param(5_000, own(1_000, held=2_000), [grantor(1, 10_000)], [g_line(1, 5_000, 5_000), Line("cash", 0)],
                 False, id="an account held beyond its balance pays nothing"),
    pytest.param(5_000, None, [grantor(1, 10_000, paused=True), grantor(2, 10_000)],
                 [g_line(2, 5_000, 5_000), Line("cash", 0)], False,
                 id="a paused binding pays nothing and the waterfall goes on to the next grantor"),
    pytest.param(5_000, None, [grantor(1, 10_000, left=2_000), grantor(2, 10_000)],
                 [g_line(1, 2_000, 8_000), g_line(2, 3_000, 7_000), Line("cash", 0)], False,
                 id="a limit stops a grantor at what it leaves this month"),
    pytest.param(5_000, None, [grantor(1, 10_000, left=0), grantor(2, 1_000, paused=True)],
                 [Line("cash", 5_000)], False, id="a spent limit and a paused binding leave it to cash"),
    pytest.param(5_000, None, [grantor(1, 10_000, left=-300)], [Line("cash", 5_000)], False,
                 id="a limit lowered below what was used pays nothing"),
    pytest.param(5_000, None, [grantor(1, 3_000, held=1_000, left=10_000)], [g_line(1, 2_000, 1_000),
                                                                             Line("cash", 3_000)], False,
                 id="balance less held binds before a generous limit"),
]


@pytest.mark.parametrize(("borne", "own_account", "grantors", "expected", "held"), CASES)
def test_split_with_holds_limits_and_pause(borne, own_account, grantors, expected, held):
    assert split(borne, own_account, grantors, held=held) == expected


# --- properties ------------------------------------------------------------------------------

amounts = st.integers(0, 10**9)


@st.composite
def cases(draw):
    own_account = draw(st.one_of(st.none(), st.builds(own, st.integers(-10**6, 10**9), amounts)))
    orders = draw(st.permutations([1, 2]))[: draw(st.integers(0, 2))]
    grantors = [grantor(o, draw(st.integers(-10**6, 10**9)), draw(amounts),
                        draw(st.one_of(st.none(), st.integers(-10**6, 10**9))), draw(st.booleans())) for o in orders]
    borne = draw(st.one_of(amounts, st.integers(0, 10**6)))
    return borne, own_account, grantors


@no_db
@given(cases(), st.booleans())
def test_no_account_pays_more_than_is_available_nor_a_binding_more_than_its_limit(case, held):
    borne, own_account, grantors = case
    lines = split(borne, own_account, grantors, held=held)
    assert sum(l.amount for l in lines) == borne and lines[-1].source == "cash"
    by_person = {a.person_id: a for a in ([own_account] if own_account else []) + grantors}
    for line in lines[:-1]:
        a = by_person[line.person_id]
        assert 0 < line.amount <= a.balance - a.held
        assert not a.paused
        if a.limit_left is not None:
            assert line.amount <= a.limit_left
        assert line.binding_id == a.binding_id
        assert line.balance_after == (a.balance - a.held if held else a.balance) - line.amount


@no_db
@given(cases())
def test_cash_is_collected_only_when_no_payer_could_pay_more(case):
    borne, own_account, grantors = case
    lines = split(borne, own_account, grantors)
    if lines[-1].amount == 0:
        return
    paid = {l.person_id: l.amount for l in lines[:-1]}
    for a in ([own_account] if own_account else []) + grantors:
        room = 0 if a.paused else max(a.balance - a.held, 0)
        if a.limit_left is not None:
            room = min(room, max(a.limit_left, 0))
        assert paid.get(a.person_id, 0) == room


@no_db
@given(cases())
def test_a_quote_holds_exactly_what_the_charge_would_post(case):
    """Settling a quote posts the held split: the same amounts, lines and order as the charge."""
    borne, own_account, grantors = case
    quoted = split(borne, own_account, grantors, held=True)
    posted = split(borne, own_account, grantors)
    assert [(l.source, l.person_id, l.amount, l.binding_id) for l in quoted] == [
        (l.source, l.person_id, l.amount, l.binding_id) for l in posted]


@no_db
@given(cases())
def test_without_holds_limits_or_pause_the_split_is_as_before(case):
    borne, own_account, grantors = case
    plain = [Account(g.person_id, g.region, g.balance, g.payment_order) for g in grantors]
    mine = None if own_account is None else Account(own_account.person_id, own_account.region, own_account.balance)
    for line in split(borne, mine, plain)[:-1]:
        assert line.binding_id is None and line.amount <= max(
            next(a.balance for a in ([mine] if mine else []) + plain if a.person_id == line.person_id), 0)
