"""Tests for services.binding.domain.rules: the rules of a family mutual-aid binding (domain.md).

Pure unit tests: no broker, no Redis, no files. Every case is decided as of one fixed day.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.binding.domain.model import Binding, Insured, Relation, Scheme, Status
from services.binding.domain.reasons import BindingRefused, Reason
from services.binding.domain.rules import (
    BindingRequest,
    Party,
    change_payment_order,
    create_binding,
    most_at_once,
    name_digest,
    revoke_binding,
)
from shared.identity import make_id_number

# No example database: tests must not write files into the tree.
no_db = settings(database=None, deadline=None)

TODAY = date(2026, 6, 1)
KEY = b"unit-test name digest key"
YEAR_END = date(2026, 12, 31)
SIGNATURE = "sha256:" + "0123456789abcdef" * 4

XIAN = "610100"
BAOJI = "610300"
BEIJING = "110100"

# A Xi'an employee binds his father, insured in Baoji (跨统筹区).
GRANTOR = Party(make_id_number(XIAN, date(1980, 5, 17), 11), "王建国", XIAN)
BENEFICIARY = Party(make_id_number(BAOJI, date(1952, 3, 2), 21), "王德福", BAOJI)
# The beneficiary's other children, who may also grant to him.
SISTER = Party(make_id_number(XIAN, date(1983, 8, 9), 32), "王建华", XIAN)
BROTHER = Party(make_id_number(BAOJI, date(1986, 1, 23), 43), "王建军", BAOJI)
COUSIN = Party(make_id_number(XIAN, date(1990, 10, 5), 55), "李明", XIAN)


def insured(party: Party, scheme: Scheme = Scheme.EMPLOYEE, region: str | None = None,
            name: str | None = None) -> Insured:
    """The registry's record of `party`: the name only as a digest."""
    return Insured(
        person_id=party.id_number,
        region=party.region if region is None else region,
        scheme=scheme,
        name_digest=name_digest(party.name if name is None else name, KEY),
    )


def make_request(grantor: Party = GRANTOR, **changes: object) -> BindingRequest:
    base = BindingRequest(
        binding_id="b-new",
        grantor=grantor,
        beneficiary=BENEFICIARY,
        relation=Relation.FATHER.value,
        payment_order=1,
        start_date=TODAY,
        end_date=YEAR_END,
        notice_accepted=True,
        signature_digest=SIGNATURE,
        channel="app",
    )
    return replace(base, **changes)


def decide(request: BindingRequest | None = None, existing: list[Binding] | None = None, *,
           grantor: Insured | None = None, beneficiary: Insured | None = None,
           registry_defaults: bool = True) -> Binding:
    """create_binding with the registry holding both parties as employee/resident by default."""
    request = request or make_request()
    if registry_defaults:
        grantor = grantor or insured(request.grantor)
        beneficiary = beneficiary or insured(request.beneficiary, Scheme.RESIDENT)
    return create_binding(request, grantor, beneficiary, existing or [], TODAY, name_key=KEY)


def refusal(request: BindingRequest | None = None, existing: list[Binding] | None = None,
            **registry: object) -> Reason:
    with pytest.raises(BindingRefused) as refused:
        decide(request, existing, **registry)  # type: ignore[arg-type]
    return refused.value.reason


def binding(grantor: Party, payment_order: int, start: date = TODAY, end: date = YEAR_END,
            status: Status = Status.ACTIVE, binding_id: str | None = None) -> Binding:
    """An existing binding of BENEFICIARY from `grantor`."""
    return Binding(
        binding_id=binding_id or f"b-{grantor.id_number[-4:]}-{payment_order}-{start:%m%d}",
        grantor_id=grantor.id_number,
        beneficiary_id=BENEFICIARY.id_number,
        relation=Relation.FATHER,
        payment_order=payment_order,
        start_date=start,
        end_date=end,
        grantor_region=grantor.region,
        beneficiary_region=BENEFICIARY.region,
        signature_digest=SIGNATURE,
        channel="window",
        status=status,
    )


# --- create_binding: the accepted case ------------------------------------------------------


def test_valid_cross_region_request_is_accepted_with_the_registrys_regions() -> None:
    grantor_record = insured(GRANTOR)
    beneficiary_record = insured(BENEFICIARY, Scheme.RESIDENT)

    created = create_binding(make_request(), grantor_record, beneficiary_record, [], TODAY, name_key=KEY)

    assert created == Binding(
        binding_id="b-new",
        grantor_id=GRANTOR.id_number,
        beneficiary_id=BENEFICIARY.id_number,
        relation=Relation.FATHER,
        payment_order=1,
        start_date=TODAY,
        end_date=YEAR_END,
        grantor_region=grantor_record.region,
        beneficiary_region=beneficiary_record.region,
        signature_digest=SIGNATURE,
        channel="app",
        status=Status.ACTIVE,
    )
    assert (created.grantor_region, created.beneficiary_region) == (XIAN, BAOJI)


def test_a_binding_that_starts_and_ends_today_is_accepted() -> None:
    created = decide(make_request(start_date=TODAY, end_date=TODAY))
    assert (created.start_date, created.end_date) == (TODAY, TODAY)


@pytest.mark.parametrize("relation", [r.value for r in Relation])
def test_every_allowed_relation_is_accepted(relation: str) -> None:
    assert decide(make_request(relation=relation)).relation is Relation(relation)


def test_a_name_with_surrounding_spaces_still_matches_the_registry() -> None:
    request = make_request(grantor=replace(GRANTOR, name=f"  {GRANTOR.name} "))
    assert decide(request, grantor=insured(GRANTOR)).grantor_id == GRANTOR.id_number


# --- create_binding: each refusal ------------------------------------------------------------


def test_unaccepted_notice_is_refused() -> None:
    assert refusal(make_request(notice_accepted=False)) is Reason.NOTICE_NOT_ACCEPTED


@pytest.mark.parametrize("signature", [
    None,
    "",
    "0123456789abcdef" * 4,                      # no "sha256:" prefix
    "sha256:" + "0123456789abcdef" * 3,          # too short
    "sha256:" + "0123456789ABCDEF" * 4,          # upper-case hex
    "sha256:" + "0123456789abcdeg" * 4,          # not hex
    "md5:" + "0123456789abcdef" * 4,
    SIGNATURE + "\n",
], ids=["none", "empty", "no-prefix", "short", "upper-case", "not-hex", "md5", "trailing-newline"])
def test_missing_or_malformed_signature_is_refused(signature: str | None) -> None:
    assert refusal(make_request(signature_digest=signature)) is Reason.SIGNATURE_MISSING


def test_binding_oneself_is_refused() -> None:
    request = make_request(beneficiary=GRANTOR)
    assert refusal(request, beneficiary=insured(GRANTOR)) is Reason.SELF_BINDING


@pytest.mark.parametrize("relation", ["brother", "grandfather", "", "Father"])
def test_relation_outside_parents_spouse_children_is_refused(relation: str) -> None:
    assert refusal(make_request(relation=relation)) is Reason.RELATION_NOT_ALLOWED


def test_start_after_end_is_refused() -> None:
    request = make_request(start_date=date(2026, 9, 1), end_date=date(2026, 8, 31))
    assert refusal(request) is Reason.INVALID_DATES


def test_start_before_today_is_refused_even_when_the_binding_runs_on() -> None:
    # Made on 1 June (China time) to start on 31 May: it would count on a day already settled.
    request = make_request(start_date=TODAY - timedelta(days=1), end_date=YEAR_END)
    with pytest.raises(BindingRefused) as refused:
        decide(request)
    assert refused.value.reason is Reason.INVALID_DATES
    assert "before today" in refused.value.message_en


def test_end_before_today_is_refused() -> None:
    request = make_request(start_date=date(2026, 1, 1), end_date=TODAY - timedelta(days=1))
    assert refusal(request) is Reason.INVALID_DATES


def test_stated_region_outside_the_province_is_refused() -> None:
    request = make_request(grantor=replace(GRANTOR, region=BEIJING))
    assert refusal(request) is Reason.OUTSIDE_PROVINCE


def test_beneficiary_stated_outside_the_province_is_refused() -> None:
    request = make_request()
    request = replace(request, beneficiary=replace(BENEFICIARY, region=BEIJING))
    assert refusal(request) is Reason.OUTSIDE_PROVINCE


def test_stated_region_outside_the_province_is_refused_even_for_an_unknown_person() -> None:
    request = make_request(grantor=replace(GRANTOR, region=BEIJING))
    assert refusal(request, registry_defaults=False) is Reason.OUTSIDE_PROVINCE


def test_person_registered_outside_the_province_is_refused() -> None:
    assert refusal(grantor=insured(GRANTOR, region=BEIJING)) is Reason.OUTSIDE_PROVINCE


def test_beneficiary_registered_outside_the_province_is_refused() -> None:
    record = insured(BENEFICIARY, Scheme.RESIDENT, region=BEIJING)
    assert refusal(beneficiary=record) is Reason.OUTSIDE_PROVINCE


def test_grantor_unknown_to_the_registry_is_refused() -> None:
    reason = refusal(grantor=None, beneficiary=insured(BENEFICIARY), registry_defaults=False)
    assert reason is Reason.UNKNOWN_PERSON


def test_beneficiary_unknown_to_the_registry_is_refused() -> None:
    reason = refusal(grantor=insured(GRANTOR), beneficiary=None, registry_defaults=False)
    assert reason is Reason.UNKNOWN_PERSON


def test_grantor_name_differing_from_the_registry_is_refused() -> None:
    assert refusal(grantor=insured(GRANTOR, name="王建民")) is Reason.NAME_MISMATCH


def test_beneficiary_name_differing_from_the_registry_is_refused() -> None:
    record = insured(BENEFICIARY, Scheme.RESIDENT, name="王德贵")
    assert refusal(beneficiary=record) is Reason.NAME_MISMATCH


def test_resident_insured_grantor_is_refused() -> None:
    assert refusal(grantor=insured(GRANTOR, Scheme.RESIDENT)) is Reason.GRANTOR_NOT_EMPLOYEE


def test_employee_insured_beneficiary_is_accepted() -> None:
    assert decide(beneficiary=insured(BENEFICIARY, Scheme.EMPLOYEE)).beneficiary_id == BENEFICIARY.id_number


def test_second_active_binding_from_the_same_grantor_is_refused() -> None:
    existing = [binding(GRANTOR, 2)]
    assert refusal(make_request(payment_order=1), existing) is Reason.DUPLICATE_BINDING


def test_second_binding_from_the_same_grantor_overlapping_a_later_period_is_refused() -> None:
    existing = [binding(GRANTOR, 1, TODAY, date(2026, 8, 31))]
    request = make_request(start_date=date(2026, 8, 31), payment_order=2)  # one day in common
    assert refusal(request, existing) is Reason.DUPLICATE_BINDING


def test_a_renewal_starting_after_the_current_binding_ends_is_accepted() -> None:
    # The grantor renews before the binding ends (续签), for the day after it ends.
    existing = [binding(GRANTOR, 1, date(2026, 1, 1), date(2026, 8, 31))]
    renewal = decide(make_request(start_date=date(2026, 9, 1), end_date=date(2027, 8, 31)), existing)
    assert (renewal.grantor_id, renewal.start_date, renewal.payment_order) == (GRANTOR.id_number, date(2026, 9, 1), 1)


def test_a_binding_still_to_start_from_the_same_grantor_is_a_duplicate_when_they_overlap() -> None:
    existing = [binding(GRANTOR, 1, date(2026, 9, 1), YEAR_END)]
    assert refusal(make_request(end_date=date(2026, 9, 1)), existing) is Reason.DUPLICATE_BINDING


def test_grantor_whose_binding_was_revoked_may_bind_again() -> None:
    existing = [binding(GRANTOR, 1, status=Status.REVOKED)]
    assert decide(make_request(), existing).grantor_id == GRANTOR.id_number


def test_third_overlapping_grantor_is_refused() -> None:
    existing = [binding(SISTER, 1), binding(BROTHER, 2)]
    assert refusal(make_request(payment_order=1), existing) is Reason.TOO_MANY_GRANTORS


def test_third_grantor_is_refused_when_two_others_are_in_force_on_one_day_of_the_range() -> None:
    existing = [binding(SISTER, 1, TODAY, date(2026, 9, 30)), binding(BROTHER, 2, date(2026, 8, 1), YEAR_END)]
    assert refusal(make_request(payment_order=2), existing) is Reason.TOO_MANY_GRANTORS


def test_third_grantor_starting_in_future_is_counted_against_the_limit() -> None:
    existing = [binding(SISTER, 1), binding(BROTHER, 2, date(2026, 7, 1), YEAR_END)]
    assert refusal(make_request(start_date=date(2026, 7, 1)), existing) is Reason.TOO_MANY_GRANTORS


def test_payment_order_held_by_an_overlapping_binding_is_refused() -> None:
    existing = [binding(SISTER, 1, date(2026, 9, 1), YEAR_END)]
    assert refusal(make_request(payment_order=1), existing) is Reason.PAYMENT_ORDER_TAKEN


def test_the_other_payment_order_beside_one_grantor_is_accepted() -> None:
    existing = [binding(SISTER, 1)]
    assert decide(make_request(payment_order=2), existing).payment_order == 2


def test_payment_order_held_only_outside_the_requested_period_is_accepted() -> None:
    existing = [binding(SISTER, 1, date(2027, 1, 1), date(2027, 12, 31))]
    assert decide(make_request(payment_order=1), existing).payment_order == 1


# --- what does not count toward the limit and the payment orders ------------------------------


def test_revoked_bindings_do_not_count_toward_the_limit_or_the_payment_orders() -> None:
    existing = [binding(SISTER, 1, status=Status.REVOKED), binding(BROTHER, 2, status=Status.REVOKED),
                binding(COUSIN, 1, status=Status.REVOKED)]
    assert decide(make_request(payment_order=1), existing).payment_order == 1


def test_bindings_ended_before_today_do_not_count_toward_the_limit_or_the_payment_orders() -> None:
    yesterday = TODAY - timedelta(days=1)
    existing = [binding(SISTER, 1, date(2026, 1, 1), yesterday),
                binding(BROTHER, 2, date(2026, 1, 1), yesterday)]
    assert decide(make_request(payment_order=1), existing).payment_order == 1


def test_an_ended_binding_from_the_same_grantor_is_not_a_duplicate() -> None:
    existing = [binding(GRANTOR, 1, date(2025, 6, 1), TODAY - timedelta(days=1))]
    assert decide(make_request(), existing).grantor_id == GRANTOR.id_number


def test_a_binding_ending_today_still_counts_toward_the_limit() -> None:
    existing = [binding(SISTER, 1, date(2026, 1, 1), TODAY), binding(BROTHER, 2, date(2026, 1, 1), TODAY)]
    assert refusal(make_request(), existing) is Reason.TOO_MANY_GRANTORS


# --- non-overlapping ranges ---------------------------------------------------------------------


def test_third_grantor_overlapping_only_one_binding_at_a_time_is_accepted() -> None:
    # The sister grants in summer, the brother from autumn on: both on order 1, never together.
    existing = [binding(SISTER, 1, TODAY, date(2026, 8, 31)), binding(BROTHER, 1, date(2026, 9, 1), YEAR_END)]
    assert most_at_once(existing, TODAY, YEAR_END) == 1

    created = decide(make_request(payment_order=2), existing)

    assert (created.payment_order, created.start_date, created.end_date) == (2, TODAY, YEAR_END)


def test_third_grantor_whose_range_misses_the_day_two_others_overlap_is_accepted() -> None:
    existing = [binding(SISTER, 1, TODAY, date(2026, 9, 30)), binding(BROTHER, 2, date(2026, 8, 1), YEAR_END)]
    request = make_request(payment_order=2, end_date=date(2026, 7, 31))
    assert decide(request, existing).end_date == date(2026, 7, 31)


def test_adjacent_ranges_ending_and_starting_on_consecutive_days_do_not_overlap() -> None:
    existing = [binding(SISTER, 1, TODAY, date(2026, 6, 30)), binding(BROTHER, 2, TODAY, date(2026, 6, 30))]
    assert decide(make_request(start_date=date(2026, 7, 1)), existing).start_date == date(2026, 7, 1)


# --- most_at_once --------------------------------------------------------------------------------

BASE = date(2026, 5, 1)
DAY_SPAN = 60


def _brute_force_most_at_once(bindings: list[Binding], start: date, end: date) -> int:
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    return max(sum(1 for b in bindings if b.start_date <= day <= b.end_date) for day in days)


@st.composite
def date_range(draw: st.DrawFn) -> tuple[date, date]:
    first = draw(st.integers(0, DAY_SPAN))
    last = draw(st.integers(first, DAY_SPAN))
    return BASE + timedelta(days=first), BASE + timedelta(days=last)


@no_db
@given(ranges=st.lists(date_range(), max_size=6), window=date_range())
def test_most_at_once_matches_a_day_by_day_count(ranges: list[tuple[date, date]],
                                                 window: tuple[date, date]) -> None:
    bindings = [binding(SISTER, 1, s, e, binding_id=f"b{i}") for i, (s, e) in enumerate(ranges)]
    start, end = window
    assert most_at_once(bindings, start, end) == _brute_force_most_at_once(bindings, start, end)


def test_most_at_once_of_no_bindings_is_zero() -> None:
    assert most_at_once([], TODAY, YEAR_END) == 0


def test_most_at_once_counts_a_binding_that_started_before_the_range() -> None:
    bindings = [binding(SISTER, 1, date(2026, 1, 1), YEAR_END), binding(BROTHER, 2, date(2026, 7, 1), YEAR_END)]
    assert most_at_once(bindings, TODAY, date(2026, 6, 30)) == 1
    assert most_at_once(bindings, TODAY, YEAR_END) == 2


# --- revoke_binding ------------------------------------------------------------------------------


def test_grantor_may_revoke_the_binding() -> None:
    active = binding(GRANTOR, 1)
    revoked = revoke_binding(active, GRANTOR.id_number, TODAY)
    assert revoked == replace(active, status=Status.REVOKED)


def test_beneficiary_may_not_revoke_the_binding() -> None:
    with pytest.raises(BindingRefused) as refused:
        revoke_binding(binding(GRANTOR, 1), BENEFICIARY.id_number, TODAY)
    assert refused.value.reason is Reason.NOT_GRANTOR


def test_another_person_may_not_revoke_the_binding() -> None:
    with pytest.raises(BindingRefused) as refused:
        revoke_binding(binding(GRANTOR, 1), SISTER.id_number, TODAY)
    assert refused.value.reason is Reason.NOT_GRANTOR


@pytest.mark.parametrize("target", [
    None,
    binding(GRANTOR, 1, status=Status.REVOKED),
    binding(GRANTOR, 1, date(2026, 1, 1), TODAY - timedelta(days=1)),
], ids=["unknown", "already-revoked", "already-ended"])
def test_revoking_a_binding_not_in_force_is_refused_as_not_found(target: Binding | None) -> None:
    with pytest.raises(BindingRefused) as refused:
        revoke_binding(target, GRANTOR.id_number, TODAY)
    assert refused.value.reason is Reason.BINDING_NOT_FOUND


# --- change_payment_order --------------------------------------------------------------------------


def test_changing_to_the_same_payment_order_returns_the_binding_unchanged() -> None:
    own = binding(GRANTOR, 1)
    assert change_payment_order(own, 1, [own, binding(SISTER, 2)], TODAY) == [own]


def test_taking_the_other_grantors_payment_order_swaps_both() -> None:
    own, sisters = binding(GRANTOR, 2), binding(SISTER, 1)

    changed = change_payment_order(own, 1, [own, sisters], TODAY)

    assert changed == [replace(own, payment_order=1), replace(sisters, payment_order=2)]


def test_moving_to_a_free_payment_order_changes_only_that_binding() -> None:
    own = binding(GRANTOR, 1)
    assert change_payment_order(own, 2, [own], TODAY) == [replace(own, payment_order=2)]


def test_revoked_or_ended_holders_of_the_order_are_not_swapped() -> None:
    own = binding(GRANTOR, 2, date(2026, 1, 1), YEAR_END)
    revoked = binding(SISTER, 1, status=Status.REVOKED)
    ended = binding(BROTHER, 1, date(2026, 1, 1), TODAY - timedelta(days=1))
    assert change_payment_order(own, 1, [own, revoked, ended], TODAY) == [replace(own, payment_order=1)]


def test_a_holder_of_the_order_outside_the_bindings_period_is_not_swapped() -> None:
    own = binding(GRANTOR, 2, TODAY, date(2026, 8, 31))
    later = binding(SISTER, 1, date(2026, 9, 1), YEAR_END)
    assert change_payment_order(own, 1, [own, later], TODAY) == [replace(own, payment_order=1)]


def test_the_grantor_named_as_the_one_asking_may_change_the_payment_order() -> None:
    own, sisters = binding(GRANTOR, 2), binding(SISTER, 1)
    changed = change_payment_order(own, 1, [own, sisters], TODAY, requested_by=GRANTOR.id_number)
    assert changed == [replace(own, payment_order=1), replace(sisters, payment_order=2)]


@pytest.mark.parametrize("asking", [BENEFICIARY, SISTER], ids=["beneficiary", "the-other-grantor"])
def test_anyone_else_named_as_the_one_asking_may_not_change_the_payment_order(asking: Party) -> None:
    # The other grantor's binding would move too in a swap; it is still not hers to ask.
    own, sisters = binding(GRANTOR, 2), binding(SISTER, 1)
    with pytest.raises(BindingRefused) as refused:
        change_payment_order(own, 1, [own, sisters], TODAY, requested_by=asking.id_number)
    assert refused.value.reason is Reason.NOT_GRANTOR


def test_a_binding_not_in_force_is_not_found_whoever_asks() -> None:
    with pytest.raises(BindingRefused) as refused:
        change_payment_order(None, 1, [], TODAY, requested_by=SISTER.id_number)
    assert refused.value.reason is Reason.BINDING_NOT_FOUND


@pytest.mark.parametrize("order", [3, 0, -1])
def test_payment_order_other_than_one_or_two_is_refused_as_invalid_command(order: int) -> None:
    own = binding(GRANTOR, 1)
    with pytest.raises(BindingRefused) as refused:
        change_payment_order(own, order, [own], TODAY)
    assert refused.value.reason is Reason.INVALID_COMMAND


@pytest.mark.parametrize("target", [
    None,
    binding(GRANTOR, 1, status=Status.REVOKED),
    binding(GRANTOR, 1, date(2026, 1, 1), TODAY - timedelta(days=1)),
], ids=["unknown", "revoked", "ended"])
def test_changing_the_order_of_a_binding_not_in_force_is_refused_as_not_found(target: Binding | None) -> None:
    with pytest.raises(BindingRefused) as refused:
        change_payment_order(target, 2, [], TODAY)
    assert refused.value.reason is Reason.BINDING_NOT_FOUND


def _shared_orders(bindings: list[Binding]) -> list[tuple[str, str]]:
    """Pairs of active bindings that overlap in time and share a payment order."""
    active = [b for b in bindings if b.is_active_on(TODAY)]
    return [(a.binding_id, b.binding_id) for i, a in enumerate(active) for b in active[i + 1:]
            if a.payment_order == b.payment_order and a.overlaps(b.start_date, b.end_date)]


def test_a_swap_never_leaves_two_overlapping_bindings_on_one_order() -> None:
    # Reachable through create_binding: summer on order 1, a second half-year on order 2,
    # then autumn-to-year-end on order 1 again (it overlaps only the order-2 binding).
    a = decide(make_request(grantor=GRANTOR, payment_order=1, end_date=date(2026, 8, 31)))
    b = decide(replace(make_request(grantor=SISTER, payment_order=2, start_date=date(2026, 7, 1)),
                       binding_id="b-sister"), [a])
    c = decide(replace(make_request(grantor=BROTHER, payment_order=1, start_date=date(2026, 9, 1)),
                       binding_id="b-brother"), [a, b])
    assert _shared_orders([a, b, c]) == []

    # Swapping would move a -> 2 and b -> 1, and b would then share order 1 with c over
    # 2026-09-01..2026-12-31: the move is refused for exactly that reason.
    with pytest.raises(BindingRefused) as refused:
        change_payment_order(a, 2, [a, b, c], TODAY)
    assert refused.value.reason is Reason.PAYMENT_ORDER_TAKEN


def test_an_order_shared_only_on_days_already_past_does_not_block_a_change() -> None:
    own = binding(GRANTOR, 2, date(2026, 1, 1), YEAR_END)
    ended = binding(SISTER, 1, date(2026, 1, 1), TODAY - timedelta(days=1))
    assert change_payment_order(own, 1, [own, ended], TODAY) == [replace(own, payment_order=1)]


def test_a_holder_of_the_order_still_to_start_is_swapped() -> None:
    own = binding(GRANTOR, 2)
    later = binding(SISTER, 1, date(2026, 9, 1), YEAR_END)
    assert change_payment_order(own, 1, [own, later], TODAY) == [replace(own, payment_order=1),
                                                                  replace(later, payment_order=2)]


def test_a_binding_still_to_start_may_be_revoked_by_its_grantor() -> None:
    later = binding(GRANTOR, 1, date(2026, 9, 1), YEAR_END)
    assert revoke_binding(later, GRANTOR.id_number, TODAY).status is Status.REVOKED


# --- the rules against a day-by-day model -----------------------------------------------------

GRANTORS = [SISTER, BROTHER, COUSIN, GRANTOR]


def _model_refusal(request: BindingRequest, existing: list[Binding]) -> Reason | None:
    """Every day of the new range, every binding not revoked: the rules as domain.md words them."""
    days = [request.start_date + timedelta(days=i) for i in range((request.end_date - request.start_date).days + 1)]
    live = [b for b in existing if b.status is Status.ACTIVE]
    on = {day: [b for b in live if b.start_date <= day <= b.end_date] for day in days}
    if any(b.grantor_id == request.grantor.id_number for bs in on.values() for b in bs):
        return Reason.DUPLICATE_BINDING
    if any(len(bs) >= 2 for bs in on.values()):
        return Reason.TOO_MANY_GRANTORS
    if any(b.payment_order == request.payment_order for bs in on.values() for b in bs):
        return Reason.PAYMENT_ORDER_TAKEN
    return None


@st.composite
def existing_bindings(draw: st.DrawFn) -> list[Binding]:
    """Bindings of BENEFICIARY as they may stand: begun in the past, ended, still to start,
    revoked, from several grantors."""
    found = []
    for i in range(draw(st.integers(0, 4))):
        start = TODAY + timedelta(days=draw(st.integers(-60, 40)))
        end = start + timedelta(days=draw(st.integers(0, 60)))
        status = draw(st.sampled_from([Status.ACTIVE, Status.ACTIVE, Status.REVOKED]))
        found.append(binding(draw(st.sampled_from(GRANTORS)), draw(st.sampled_from([1, 2])), start, end,
                             status=status, binding_id=f"b{i}"))
    return found


@settings(database=None, deadline=None, max_examples=400)
@given(existing=existing_bindings(), first=st.integers(0, 40), length=st.integers(0, 40),
       order=st.sampled_from([1, 2]))
def test_create_binding_refuses_exactly_what_a_day_by_day_check_refuses(existing: list[Binding], first: int,
                                                                       length: int, order: int) -> None:
    start = TODAY + timedelta(days=first)
    request = make_request(start_date=start, end_date=start + timedelta(days=length), payment_order=order)
    expected = _model_refusal(request, existing)
    if expected is None:
        assert decide(request, existing).start_date == start
    else:
        assert refusal(request, existing) is expected


# --- the name digest ------------------------------------------------------------------------------


def test_the_name_digest_is_keyed_so_a_dictionary_of_bare_hashes_does_not_reverse_it() -> None:
    digest = name_digest(GRANTOR.name, KEY)
    assert digest != hashlib.sha256(GRANTOR.name.encode()).hexdigest()[:len(digest)]
    assert name_digest(GRANTOR.name, KEY) != name_digest(GRANTOR.name, b"another key")
    assert name_digest(GRANTOR.name, KEY) == name_digest(f" {GRANTOR.name} ", KEY)


def test_a_registry_digested_with_another_key_does_not_match() -> None:
    record = replace(insured(GRANTOR), name_digest=name_digest(GRANTOR.name, b"another key"))
    assert refusal(grantor=record) is Reason.NAME_MISMATCH
