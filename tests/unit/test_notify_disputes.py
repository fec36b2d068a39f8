"""Notify's part of issue 15, pure: the payment SMS's reference, the grantor's SMS for a pause,
a resume, a limit and a dispute, and how a grantor's SMS reply is read and answered."""

import json

import pytest
from hypothesis import given, strategies as st
from pydantic import ValidationError

from shared.references import payment_reference
from services.notify import contract as c
from services.notify.domain.notices import dispute_refused, for_binding, for_settlement, is_opt_out, reply_help
from services.notify.domain.templates import catalogue, placeholders, render
from services.notify.usecases import SMS_COMMAND_PREFIX, dispute_command, help_message_id

GRANTOR, PATIENT = "610102198001011237", "610102201001011231"
DAY = "2026-11-26"


def _settled(line_extra=None, **extra):
    line = {"source": "grantor", "person_id": GRANTOR, "payment_order": 1, "amount": "3.00", "balance_after": "7.00",
            **(line_extra or {})}
    return {"charge_id": "C1", "patient_id": PATIENT, "settled_at": f"{DAY}T10:00:00+08:00",
            "institution_code": "H61010001", "lines": [line], **extra}


def _binding(**extra):
    return {"command_id": "k", "binding_id": "B1", "grantor_id": GRANTOR, "beneficiary_id": PATIENT, **extra}


def _text(notice, **names):
    values = {**notice.values, **{slot: names.get(slot, "张*明") for slot in notice.name_of}}
    if "institution" in placeholders(notice.template):
        values["institution"] = "西安市中心医院"
    return render(notice.template, values)


def test_a_payment_sms_shows_the_reference_settlement_gave_the_line():
    [notice] = for_settlement("e1", "ChargeSettled", _settled({"reference": "7K2P9QXM"}))
    assert (notice.template, notice.values["reference"]) == ("payment", "7K2P9QXM")
    sms = _text(notice)
    assert "非本人授权请回复BF7K2P9QXM或致电12393" in sms.text and sms.segments <= 2


@pytest.mark.parametrize("given_reference", [None, "", "7k2p9qxm", "ILOU0000", "7K2P9QXM9"])
def test_a_line_without_a_good_reference_shows_the_one_settlement_derives(given_reference):
    line = {} if given_reference is None else {"reference": given_reference}
    [notice] = for_settlement("e1", "ChargeSettled", _settled(line))
    assert notice.values["reference"] == payment_reference("H61010001", "C1", GRANTOR)


def test_a_payment_from_an_unknown_institution_asks_to_call_instead_of_to_reply():
    payload = _settled()
    del payload["institution_code"]
    [notice] = for_settlement("e1", "ChargeSettled", payload)
    assert notice.template == "payment_unreferenced" and "reference" not in notice.values
    assert "回复" not in _text(notice).text


@given(amount=st.integers(0, 10**12 - 1), balance=st.integers(0, 10**12 - 1),
       institution=st.text(min_size=0, max_size=20), charge=st.text(min_size=1, max_size=64))
def test_every_payment_sms_fits_its_segments_whatever_the_amounts(amount, balance, institution, charge):
    yuan = lambda fen: f"{fen // 100}.{fen % 100:02d}"  # noqa: E731
    payload = _settled({"amount": yuan(amount), "balance_after": yuan(balance)}, charge_id=charge,
                       charged_at=f"{DAY}T09:59:00+08:00")
    [notice] = for_settlement("e", "ChargeSettled", payload)
    shown = {"beneficiary": "欧**明", "institution": institution or "定点医药机构"}
    sms = render(notice.template, {**notice.values, **shown})
    assert sms.segments <= catalogue()["max_segments"]
    assert f"BF{notice.values['reference']}" in sms.text


def test_a_pause_by_the_grantor_tells_the_grantor_and_the_beneficiary():
    notices = for_binding("e", "BindingPaused", _binding(cause="grantor", dispute_id=None))
    assert [(x.template, x.person_id, x.role) for x in notices] == [
        ("binding_paused_grantor", GRANTOR, "grantor"), ("binding_paused_beneficiary", PATIENT, "beneficiary")]
    assert all(x.binding_id == "B1" and x.source_event_id == "e" for x in notices)
    assert "异议" not in _text(notices[1]).text


def test_a_pause_for_a_dispute_is_told_to_the_grantor_once_by_the_dispute_and_to_the_beneficiary_without_cause():
    notices = for_binding("e", "BindingPaused", _binding(cause="dispute", dispute_id="D1"))
    assert [(x.template, x.person_id) for x in notices] == [("binding_paused_beneficiary", PATIENT)]


def test_a_resume_tells_the_grantor_and_the_beneficiary():
    notices = for_binding("e", "BindingResumed", _binding())
    assert [x.template for x in notices] == ["binding_resumed_grantor", "binding_resumed_beneficiary"]


def test_a_limit_set_or_cleared_is_told_to_the_grantor():
    [limited] = for_binding("e", "GrantorLimitSet", _binding(monthly_limit="500.00", previous_limit=None))
    assert (limited.template, limited.values, limited.person_id) == ("grantor_limit_set", {"limit": "500.00"}, GRANTOR)
    assert "500.00元" in _text(limited).text
    [cleared] = for_binding("e", "GrantorLimitSet", _binding(monthly_limit=None, previous_limit="500.00"))
    assert cleared.template == "grantor_limit_cleared"


def test_an_opened_dispute_tells_the_grantor_the_payment_and_that_the_binding_is_paused():
    payload = _binding(dispute_id="D1", reference="7K2P9QXM", charge_id="C1", institution_code="H61010001",
                       amount="128.50", channel="sms")
    [notice] = for_binding("e", "DisputeOpened", payload)
    assert (notice.template, notice.person_id, notice.charge_id, notice.institution_code) == (
        "dispute_opened", GRANTOR, "C1", "H61010001")
    text = _text(notice).text
    assert "7K2P9QXM" in text and "128.50元" in text and "已暂停" in text and "西安市中心医院" in text


@pytest.mark.parametrize("decision,template,says", [("upheld", "dispute_upheld", "退回"),
                                                    ("dismissed", "dispute_dismissed", "恢复")])
def test_a_decided_dispute_tells_the_grantor_the_outcome_with_the_payments_reference(decision, template, says):
    payload = _binding(dispute_id="D1", decision=decision, charge_id="C1", institution_code="H61010001",
                       amount="128.50", decided_at=f"{DAY}T10:00:00+08:00")
    [notice] = for_binding("e", "DisputeResolved", payload)
    assert notice.template == template
    assert notice.values["reference"] == payment_reference("H61010001", "C1", GRANTOR)
    assert says in _text(notice).text


def test_new_binding_events_are_read_strictly():
    good = _binding(dispute_id="D1", reference="7K2P9QXM", charge_id="C1", institution_code="H61010001",
                    amount="1.00", channel="sms")
    c.DisputeOpenedIn.model_validate(good)
    for wrong in ({"amount": 1}, {"reference": "7k2p9qxm"}, {"grantor_id": 610102198001011237}, {"charge_id": None}):
        with pytest.raises(ValidationError):
            c.DisputeOpenedIn.model_validate(good | wrong)
    with pytest.raises(ValidationError):
        c.BindingPausedIn.model_validate(_binding(cause="bureau"))
    with pytest.raises(ValidationError):
        c.GrantorLimitSetIn.model_validate(_binding(monthly_limit=500))


REPLY = {"message_id": "m-1", "phone": "13912345678", "text": "bf 7k2p9qxm", "received_at": f"{DAY}T10:00:00+08:00"}


def test_an_sms_reply_is_read_strictly_and_bounded():
    assert c.SmsReplyReceived.model_validate(REPLY | {"phone": "+8613912345678"}).phone == "13912345678"
    for wrong in ({"phone": 13912345678}, {"phone": "12345"}, {"text": "x" * 161}, {"message_id": "m" * 65},
                  {"message_id": ""}, {"received_at": 0}, {"received_at": "2026-11-26T10:00:00"}, {"text": None}):
        with pytest.raises(ValidationError):
            c.SmsReplyReceived.model_validate(REPLY | wrong)


def test_a_redelivered_reply_is_the_same_dispute_command_keyed_by_the_reference():
    reply = c.SmsReplyReceived.model_validate(REPLY)
    first, again = dispute_command(reply, GRANTOR, "7K2P9QXM"), dispute_command(reply, GRANTOR, "7K2P9QXM")
    assert first == again and first.topic == "binding.commands" and first.key == b"7K2P9QXM"
    body = json.loads(first.value)
    assert body["event_type"] == "DisputePayment" and body["occurred_at"] == REPLY["received_at"]
    assert body["payload"] == {"reference": "7K2P9QXM", "requested_by": GRANTOR, "channel": "sms"}
    other = dispute_command(c.SmsReplyReceived.model_validate(REPLY | {"message_id": "m-2"}), GRANTOR, "7K2P9QXM")
    assert json.loads(other.value)["event_id"] != body["event_id"]


def test_the_help_sms_names_the_reply_never_the_person_and_goes_once_a_day():
    notice = reply_help(GRANTOR, "m-1", "20261126")
    assert GRANTOR not in notice.source_event_id and notice.template == "sms_reply_help"
    assert render(notice.template, {}).segments <= 2
    assert help_message_id(GRANTOR, "20261126") == help_message_id(GRANTOR, "20261126") != help_message_id(
        GRANTOR, "20261127")


@pytest.mark.parametrize("text,opt_out", [("TD", True), (" td ", True), ("退订", True), ("bf 7k2p9qxm", False),
                                          ("谁扣的钱", False)])
def test_an_unsubscribe_is_told_from_a_reply_not_understood(text, opt_out):
    assert is_opt_out(text) is opt_out


@pytest.mark.parametrize("reason,template", [("UNKNOWN_REFERENCE", "dispute_refused_unknown"),
                                             ("ALREADY_DISPUTED", "dispute_refused_already"),
                                             ("INVALID_COMMAND", "dispute_refused"), ("", "dispute_refused")])
def test_a_refused_sms_dispute_tells_the_grantor_why(reason, template):
    notice = dispute_refused("e9", GRANTOR, "7K2P9QXM", reason)
    assert (notice.template, notice.person_id, notice.source_event_type) == (template, GRANTOR, "BindingRejected")
    sms = render(notice.template, notice.values)
    assert "7K2P9QXM" in sms.text and sms.segments <= 2


def test_the_commands_notify_asks_are_known_by_their_id():
    command = dispute_command(c.SmsReplyReceived.model_validate(REPLY), GRANTOR, "7K2P9QXM")
    event_id = json.loads(command.value)["event_id"]
    assert event_id.startswith(SMS_COMMAND_PREFIX) and len(event_id) <= 128
