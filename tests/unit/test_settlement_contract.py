"""Strict types at settlement's edge (contract version 2): strings stay strings, times carry an
offset and fall in the window, ids keep to their alphabet, bureau sequences are exact integers."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from services.settlement import contract as c
from services.settlement.domain.reasons import ChargeRefused, Reason
from services.settlement.usecases import SettlementService
from shared.wire import Time
from shared.bureau import AccountMovement, BalanceSnapshot, DailyPostingsReported
from shared.envelope import CHINA_TZ
from shared.identity import make_id_number

NOW = datetime(2026, 6, 1, 10, 0, tzinfo=CHINA_TZ)
PATIENT = make_id_number("610102", datetime(1960, 1, 2).date(), 7)
CHARGE = {"charge_id": "C-1", "institution_code": "H610100-01", "institution_region": "610100",
          "patient_id": PATIENT, "patient_name": "张三", "code_holder_id": PATIENT, "presented_via": "own_device",
          "visit_kind": "outpatient", "total": "10.00", "fund_paid": "4.00", "individual_borne": "6.00",
          "charged_at": "2026-06-01T09:00:00+08:00"}
REFUND = {"charge_id": "C-1", "institution_code": "H610100-01", "refund_id": "R-1", "amount": "1.00",
          "refunded_at": "2026-06-01T09:30:00+08:00"}
SNAPSHOT = {"person_id": PATIENT, "region": "610100", "balance": "1.00", "bureau_seq": 1,
            "postings_applied_through": 0}
STRING_FIELDS = ["charge_id", "institution_code", "institution_region", "patient_id", "patient_name",
                 "code_holder_id", "presented_via", "visit_kind", "total", "fund_paid", "individual_borne",
                 "charged_at"]


def test_a_valid_charge_and_refund_are_read():
    assert c.ChargeSubmitted.model_validate(CHARGE).individual_borne == 600
    assert c.ChargeRefunded.model_validate(REFUND).institution_code == "H610100-01"


@settings(database=None, deadline=None, max_examples=200)
@given(st.sampled_from(STRING_FIELDS), st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans()))
def test_a_json_number_where_a_string_belongs_is_refused(field, number):
    with pytest.raises(ValidationError):
        c.ChargeSubmitted.model_validate(CHARGE | {field: number})


@pytest.mark.parametrize("change", [
    {"charged_at": "2026-06-01T09:00:00"}, {"charged_at": "0001-01-01T00:00:00+01:00"},
    {"charge_id": "C:1"}, {"charge_id": "C 1"}, {"charge_id": "C" * 65}, {"charge_id": ""},
    {"institution_code": "H|1"}, {"institution_code": "H" * 33}, {"patient_name": "名" * 65},
], ids=lambda change: next(iter(change)) + "=" + str(next(iter(change.values())))[:12])
def test_malformed_fields_are_refused(change):
    with pytest.raises(ValidationError):
        c.ChargeSubmitted.model_validate(CHARGE | change)


def test_a_refund_names_its_institution():
    with pytest.raises(ValidationError):
        c.ChargeRefunded.model_validate({k: v for k, v in REFUND.items() if k != "institution_code"})


@pytest.mark.parametrize("charged_at,allowed", [
    (NOW + timedelta(minutes=10), True), (NOW + timedelta(minutes=10, seconds=1), False),
    (NOW - timedelta(days=7), True), (NOW - timedelta(days=7, seconds=1), False),
    (NOW.astimezone(CHINA_TZ).replace(tzinfo=None).isoformat() + "-05:00", False),
])
def test_a_charge_is_dated_no_more_than_ten_minutes_ahead_and_no_older_than_the_age(charged_at, allowed):
    service = SettlementService(store=None, broker=None, max_age=timedelta(days=7), clock=lambda: NOW).charges
    text = charged_at if isinstance(charged_at, str) else charged_at.isoformat()
    charge = c.ChargeSubmitted.model_validate(CHARGE | {"charged_at": text})
    if allowed:
        assert service._admit_charge("e-1", charge, NOW).borne == 600
    else:
        with pytest.raises(ChargeRefused) as refused:
            service._admit_charge("e-1", charge, NOW)
        assert refused.value.reason is Reason.INVALID_CHARGE


@pytest.mark.parametrize("seq", ["1", 0, -1, 2**53, True, 1.0, None])
def test_bureau_seq_is_a_positive_json_integer_below_2_53(seq):
    for model, payload in ((BalanceSnapshot, SNAPSHOT), (AccountMovement, SNAPSHOT | {"amount": "1.00"})):
        with pytest.raises(ValidationError):
            model.model_validate(payload | {"bureau_seq": seq})
    assert BalanceSnapshot.model_validate(SNAPSHOT | {"bureau_seq": 2**53 - 1}).bureau_seq == 2**53 - 1


def test_a_snapshot_says_which_platform_postings_it_includes():
    with pytest.raises(ValidationError):
        BalanceSnapshot.model_validate({k: v for k, v in SNAPSHOT.items() if k != "postings_applied_through"})
    with pytest.raises(ValidationError):
        BalanceSnapshot.model_validate(SNAPSHOT | {"postings_applied_through": "3"})


def test_a_daily_report_part_lies_within_its_parts():
    report = {"region": "610100", "day": "2026-06-01", "postings": []}
    assert (DailyPostingsReported.model_validate(report).part, DailyPostingsReported.model_validate(report).parts) == (
        1, 1)
    for bad in ({"part": 3, "parts": 2}, {"part": 0}, {"parts": "2"}, {"day": 20260601}):
        with pytest.raises(ValidationError):
            DailyPostingsReported.model_validate(report | bad)


# -- issue 21: refunds that name their lines ------------------------------------------------------
from hypothesis import given, strategies as st  # noqa: E402

from services.settlement.contract import ChargeRefunded  # noqa: E402

_REFUND = {"charge_id": "C-1", "institution_code": "H610100-01", "refund_id": "R-1", "amount": "30.00",
           "refunded_at": "2026-06-01T10:00:00+08:00"}


def test_a_refund_without_lines_keeps_the_fingerprint_it_had_before_lines_existed():
    import hashlib
    import json
    # the fields a ChargeRefunded had before issue 21, fingerprinted as every message is
    old = {"charge_id": "C-1", "institution_code": "H610100-01", "refund_id": "R-1", "amount": "30.00",
           "refunded_at": "2026-06-01T10:00:00+08:00"}
    before = hashlib.sha256(json.dumps(old, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]
    assert ChargeRefunded.model_validate(_REFUND).digest() == before
    named = ChargeRefunded.model_validate(_REFUND | {"lines": [{"payer": "grantor_1", "amount": "30.00"}]})
    assert named.digest() != before and named.named_lines() == "grantor_1:3000"


@pytest.mark.parametrize("lines", [
    [{"payer": "grantor_1", "amount": "20.00"}],                                       # not the amount
    [{"payer": "own", "amount": "15.00"}, {"payer": "own", "amount": "15.00"}],        # a payer twice
    [{"payer": "grantor_3", "amount": "30.00"}],                                       # no such payer
    []])
def test_lines_that_are_not_the_refund_are_an_invalid_charge(lines):
    with pytest.raises(ValidationError) as refused:
        ChargeRefunded.model_validate(_REFUND | {"lines": lines})
    assert c.reason_for(refused.value) is Reason.INVALID_CHARGE


@given(st.dictionaries(st.sampled_from(["own", "grantor_1", "grantor_2", "cash"]), st.integers(0, 10**8),
                       min_size=1))
def test_named_lines_say_each_payer_once_in_fen_and_sum_to_the_amount(fen):
    total = sum(fen.values())
    refund = ChargeRefunded.model_validate(_REFUND | {"amount": f"{total // 100}.{total % 100:02d}", "lines": [
        {"payer": p, "amount": f"{v // 100}.{v % 100:02d}"} for p, v in fen.items()]})
    assert dict((p, int(v)) for p, v in (x.split(":") for x in refund.named_lines().split(","))) == fen


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1999-12-31T23:59:59+08:00",
                                "3000-01-01T00:00:00+08:00"])
def test_a_time_outside_the_years_2000_to_2999_is_refused_as_out_of_range(at):
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(Time).validate_python(at)
    assert caught.value.errors()[0]["type"] == "datetime_range"


_yuan = st.builds(lambda y, f: f"{y}.{f:02d}" if f else str(y), st.integers(0, 10**9), st.integers(0, 99))
_time = st.builds(lambda d, off, us: (datetime(2026, 1, 1, tzinfo=timezone(timedelta(minutes=off)))
                                      + timedelta(seconds=d, microseconds=us)).isoformat(),
                  st.integers(0, 300 * 86_400), st.integers(-23 * 60, 23 * 60), st.integers(0, 999_999))


@settings(database=None, deadline=None, max_examples=300)
@given(st.sampled_from([c.ChargeSubmitted, c.ChargeQuoteRequested]),
       st.fixed_dictionaries({
           "charge_id": st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
           "institution_region": st.sampled_from(["610100", "610200", "610300"]),
           "patient_name": st.text(min_size=1, max_size=64).filter(lambda n: n.strip()),
           "presented_via": st.sampled_from(["own_device", "family_account"]),
           "visit_kind": st.sampled_from(["outpatient", "inpatient", "pharmacy"]),
           "total": _yuan, "fund_paid": _yuan, "individual_borne": _yuan, "charged_at": _time}),
       st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)))
def test_a_charges_fingerprint_is_taken_of_exactly_what_the_serialiser_writes(model, fields, quote_id):
    # the fingerprint is stored with every settled charge: its bytes may never change
    body = CHARGE | fields | ({"quote_id": quote_id} if quote_id and model is c.ChargeSubmitted else {})
    charge = model.model_validate(body)
    assert charge.canonical() == charge.serialised()
    assert charge.digest() == hashlib.sha256(charge.serialised().encode()).hexdigest()[:32]


def test_a_charges_fingerprint_names_every_field_but_the_quote():
    charge = c.ChargeSubmitted.model_validate(CHARGE | {"quote_id": "Q-1"})
    assert set(json.loads(charge.canonical())) == set(c.ChargeSubmitted.model_fields) - {"quote_id"}
