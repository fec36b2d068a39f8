"""The notify service's pure parts: templates fit their segments, quiet hours, who hears what."""

from datetime import datetime, time, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from services.notify.domain.notices import for_binding, for_settlement
from services.notify.domain.quiet import QuietHours, parse_quiet_hours
from pydantic import ValidationError

from services.notify.config import NotifySettings
from services.notify.contract import ChargeSettledIn
from services.notify.domain.templates import (NEUTRAL_INSTITUTION, catalogue, institution_shown, placeholders, render,
                                              segments, template_params)

CST = timezone(timedelta(hours=8))
# The longest value each placeholder can take in production.
WORST = {"time": "2026-12-31 23:59", "beneficiary": "欧**明", "grantor": "欧**明", "institution": "H" * 20,
         "amount": "99999999.99", "balance": "99999999.99", "relation": "母亲", "order": "2", "previous": "1",
         "start": "2026-12-31", "end": "2027-12-31", "reference": "7K2P9QXM", "limit": "1000000.00"}


@pytest.mark.parametrize("name", sorted(catalogue()["templates"]))
def test_every_template_fits_in_at_most_two_segments_with_its_longest_values(name):
    sms = render(name, WORST)
    assert sms.text.startswith("【陕西医保】")
    assert sms.segments <= 2, f"{name}: {len(sms.text)} characters"


def test_segments_follow_the_70_and_67_character_rule():
    assert [segments("字" * n) for n in (70, 71, 134, 135)] == [1, 2, 2, 3]


def test_money_moved_and_answers_to_the_grantors_own_reply_are_urgent_and_binding_news_waits():
    urgent = {name for name, t in catalogue()["templates"].items() if t["urgent"]}
    assert urgent == {"payment", "payment_unreferenced", "refund", "dispute_opened", "sms_reply_help",
                      "dispute_refused", "dispute_refused_unknown", "dispute_refused_already"}


@pytest.mark.parametrize("clock,quiet", [("22:00", True), ("23:59", True), ("03:00", True), ("06:59", True),
                                         ("07:00", False), ("12:00", False), ("21:59", False)])
def test_quiet_hours_span_midnight(clock, quiet):
    hours = parse_quiet_hours("22:00-07:00")
    moment = datetime.combine(datetime(2026, 11, 25).date(), time.fromisoformat(clock), CST)
    assert hours.contains(moment) is quiet


def test_a_message_held_at_night_goes_out_when_quiet_hours_end():
    hours = parse_quiet_hours("22:00-07:00")
    assert hours.ends_after(datetime(2026, 11, 25, 23, 30, tzinfo=CST)) == datetime(2026, 11, 26, 7, 0, tzinfo=CST)
    assert hours.ends_after(datetime(2026, 11, 26, 3, 0, tzinfo=CST)) == datetime(2026, 11, 26, 7, 0, tzinfo=CST)
    noon = datetime(2026, 11, 26, 12, 0, tzinfo=CST)
    assert hours.ends_after(noon) == noon


@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)).map(lambda d: d.replace(tzinfo=CST)))
def test_release_is_never_inside_quiet_hours_nor_in_the_past(moment):
    hours = QuietHours(time(22), time(7))
    release = hours.ends_after(moment)
    assert release >= moment and not hours.contains(release)


def _settled(*lines):
    return {"charge_id": "C1", "patient_id": "P", "settled_at": "2026-11-25T10:00:00+08:00",
            "charged_at": "2026-11-25T09:58:00+08:00", "institution_code": "H1", "lines": list(lines)}


def test_only_grantor_lines_call_for_an_sms():
    own = {"source": "own", "person_id": "P", "amount": "5.00", "balance_after": "0.00"}
    cash = {"source": "cash", "amount": "1.00"}
    grantor = {"source": "grantor", "person_id": "G", "payment_order": 1, "amount": "3.00", "balance_after": "7.00"}
    assert for_settlement("e1", "ChargeSettled", _settled(own, cash)) == []
    [notice] = for_settlement("e1", "ChargeSettled", _settled(own, grantor, cash))
    assert (notice.person_id, notice.template, notice.values["amount"], notice.values["balance"]) == (
        "G", "payment", "3.00", "7.00")
    assert notice.values["time"] == "2026-11-25 09:58"


def test_rejections_and_fraud_reports_send_nothing():
    assert for_settlement("e", "ChargeRejected", {"charge_id": "C"}) == []
    assert for_binding("e", "BindingRejected", {"command_id": "c"}) == []


def test_a_swap_of_payment_orders_tells_both_grantors_and_the_beneficiary():
    payload = {"binding_id": "B2", "beneficiary_id": "M", "payment_order": 1, "previous_order": 2, "changes": [
        {"binding_id": "B2", "grantor_id": "D", "payment_order": 1, "previous_order": 2},
        {"binding_id": "B1", "grantor_id": "S", "payment_order": 2, "previous_order": 1}]}
    notices = for_binding("e", "PaymentOrderChanged", payload)
    assert sorted((x.person_id, x.template) for x in notices) == [
        ("D", "payment_order_changed_grantor"), ("M", "payment_order_changed_beneficiary"),
        ("S", "payment_order_changed_grantor")]


def test_a_refund_back_to_a_grantor_is_told_with_the_new_balance():
    refund = {"charge_id": "C1", "refund_id": "R1", "patient_id": "P", "settled_at": "2026-11-25T10:00:00+08:00",
              "lines": [{"source": "grantor", "person_id": "G", "payment_order": 2, "amount": "4.00",
                         "balance_after": "14.00"}, {"source": "cash", "amount": "1.00"}]}
    [notice] = for_settlement("e2", "RefundSettled", refund)
    assert (notice.person_id, notice.template, notice.values) == ("G", "refund", {"amount": "4.00", "balance": "14.00"})
    assert notice.name_of == {"beneficiary": "P"}


@pytest.mark.parametrize("name", sorted(catalogue()["templates"]))
def test_the_gateway_gets_every_value_its_template_needs_and_nothing_else(name):
    params = template_params(name, {**WORST, "unrelated": "x"})
    assert set(params) == set(placeholders(name)) and "unrelated" not in params
    assert render(name, params).text.endswith(catalogue()["templates"][name]["text"].format(**params))


def test_an_institution_is_named_by_its_registered_name_shortened_or_neutrally():
    assert institution_shown("西安市第一医院") == "西安市第一医院"
    assert institution_shown(None) == institution_shown("") == NEUTRAL_INSTITUTION
    longest = institution_shown("陕" * 64)
    assert len(longest) == 20 and longest.endswith("…")
    assert render("payment", WORST | {"institution": longest}).segments <= 2


def test_a_settlement_result_is_read_strictly():
    good = _settled({"source": "grantor", "person_id": "610102199001011231", "payment_order": 1,
                     "amount": "3.00", "balance_after": "7.00"}) | {"patient_id": "610102199001011231"}
    ChargeSettledIn.model_validate(good)
    for wrong in ({"charge_id": 12345}, {"patient_id": 610102199001011231}, {"settled_at": 0},
                  {"lines": [good["lines"][0] | {"amount": 3}]},
                  {"lines": [good["lines"][0] | {"balance_after": None}]}):
        with pytest.raises(ValidationError):
            ChargeSettledIn.model_validate(good | wrong)


def test_a_claim_lease_shorter_than_the_longest_send_is_refused():
    NotifySettings(sms_timeout_seconds=5, sms_retry_attempts=3, notify_claim_lease_seconds=60)
    with pytest.raises(ValidationError):
        NotifySettings(sms_timeout_seconds=5, sms_retry_attempts=3, notify_claim_lease_seconds=15)


def test_template_codes_must_name_real_templates():
    assert NotifySettings(sms_template_codes={"payment": "SMS_1"}).sms_template_codes == {"payment": "SMS_1"}
    with pytest.raises(ValidationError):
        NotifySettings(sms_template_codes={"paymnet": "SMS_1"})


def test_a_grantor_line_with_a_negative_balance_after_is_read_and_told_as_is() -> None:
    """Contract version 2 never clamps a balance: notify reads "-40.00" as well as "40.00" (issue 21)."""
    grantor = "610102198503150018"
    payload = ChargeSettledIn.model_validate({
        "charge_id": "C1", "patient_id": "610302195501200031", "institution_code": "H61010001",
        "settled_at": "2026-11-20T10:15:00+08:00",
        "lines": [{"source": "grantor", "person_id": grantor, "amount": "60.00", "balance_after": "-40.00"}],
    }).model_dump(mode="json", exclude_none=True)
    [notice] = for_settlement("e1", "ChargeSettled", payload)
    assert (notice.values["amount"], notice.values["balance"]) == ("60.00", "-40.00")
