"""Derived ids never collide (contract version 2), whatever ids the contract allows."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from services.settlement.contract import CHARGE_ID_PATTERN
from services.settlement.domain.ids import event_id, posting_id
from shared.institutions import INSTITUTION_CODE_PATTERN

no_db = settings(database=None, deadline=None, max_examples=500)
# Small alphabets make near-collisions (shared prefixes, '-' and '.') likely.
institutions = st.from_regex(re.compile(INSTITUTION_CODE_PATTERN.replace("A-Za-z0-9", "Ab1")), fullmatch=True)
charge_ids = st.from_regex(re.compile(CHARGE_ID_PATTERN.replace("A-Za-z0-9", "A1").replace("{1,64}", "{1,6}")),
                           fullmatch=True)
postings = st.tuples(institutions, charge_ids, st.one_of(st.none(), charge_ids), st.integers(0, 12))


def test_a_charge_line_and_a_refund_line_that_concatenate_alike_differ():
    # Issue 11: line 0 of charge A-1 and line 0 of refund 1 of charge A were the same id.
    assert posting_id("H1", "A-1", None, 0) != posting_id("H1", "A", "1", 0)
    assert posting_id("H-1", "A", None, 0) != posting_id("H", "1-A", None, 0)


@no_db
@given(postings, postings)
def test_different_postings_never_share_an_id(one, other):
    if one != other:
        assert posting_id(*one) != posting_id(*other)


@no_db
@given(st.lists(st.one_of(st.none(), st.text(max_size=5), st.integers(0, 5)), max_size=4),
       st.lists(st.one_of(st.none(), st.text(max_size=5), st.integers(0, 5)), max_size=4))
def test_different_parts_never_share_an_event_id(one, other):
    if one != other:
        assert event_id(*one) != event_id(*other)
    else:
        assert event_id(*one) == event_id(*other)


def test_an_id_part_holding_the_separator_is_refused():
    for bad in ("", "A:1"):
        try:
            posting_id("H1", bad, None, 0)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
