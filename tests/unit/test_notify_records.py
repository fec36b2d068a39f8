"""Notify's compact Redis layouts: what is recorded tells the same outcome again, byte for byte."""

import json
from datetime import datetime

import pytest

from services.notify.domain.notices import Notice
from services.notify.storage.deliveries import (contact_region, decode_contact, decode_outcome, encode_contact,
                                               encode_outcome)
from services.notify.usecases import delivery

NOTICE = Notice("payment", "610102194001010011", "grantor", {"amount": "1.00"}, "ev-1", "ChargeSettled",
                charge_id="C1")
SENT = {"type": "SmsSent", "phone": "138****5678", "segments": 2, "provider": "http", "receipt": "9006^0",
        "at": "2026-11-26T10:00:05+08:00"}
FAILED = {"type": "SmsFailed", "phone": "", "segments": 0, "provider": "sink", "reason": "no_phone", "attempts": 0,
          "detail": None, "at": "2026-11-26T23:59:59+08:00"}


ODD = {**SENT, "receipt": "a|b|", "at": "2026-11-26T00:00:00+08:00"}
DETAILED = {**FAILED, "reason": "gateway_refused", "attempts": 3, "detail": "isv.BUSINESS_LIMIT|x", "segments": 2}
EMPTY_DETAIL = {**FAILED, "detail": ""}


@pytest.mark.parametrize("outcome", [SENT, FAILED, ODD, DETAILED, EMPTY_DETAIL])
def test_a_recorded_outcome_reads_back_as_it_was_recorded(outcome):
    assert decode_outcome(encode_outcome(outcome)) == outcome


def test_a_record_is_a_few_dozen_bytes():
    # The time in epoch seconds, base 36: 2026-11-26T10:00:05+08:00 is 1795658405, "tp36w5".
    assert encode_outcome(SENT) == b"S|138****5678|2|http|tp36w5|9006^0"
    assert encode_outcome(FAILED) == b"F||0|sink|no_phone|0|tp49rz"


@pytest.mark.parametrize("outcome", [SENT, FAILED])
def test_records_from_before_the_compact_layout_still_answer_a_redelivery(outcome):
    whole = json.dumps(outcome, ensure_ascii=False, separators=(",", ":")).encode()
    at = int(datetime.fromisoformat(outcome["at"]).timestamp())
    if outcome["type"] == "SmsSent":
        array = ["S", outcome["phone"], outcome["segments"], outcome["provider"], outcome["receipt"], at]
    else:
        array = ["F", outcome["phone"], outcome["segments"], outcome["provider"], outcome["reason"],
                 outcome["attempts"], outcome["detail"], at]
    older = json.dumps(array, ensure_ascii=False, separators=(",", ":")).encode()
    for old in (whole, older):
        assert delivery("m-1", NOTICE, old) == delivery("m-1", NOTICE, encode_outcome(outcome))


def test_the_outcome_is_keyed_by_the_masked_phone_and_carries_the_recorded_time():
    published = delivery("m-1", NOTICE, encode_outcome(SENT))
    body = json.loads(published.value)
    assert published.key == b"138****5678" and body["occurred_at"] == SENT["at"]
    assert body["payload"]["sent_at"] == SENT["at"] and body["payload"]["provider_message_id"] == "9006^0"


@pytest.mark.parametrize("phone,name", [("13812345678", "张*明"), ("19999999999", "欧**明"), (None, "*"), ("", "李*")])
def test_a_contact_is_five_bytes_of_phone_and_the_masked_name(phone, name):
    raw = encode_contact(phone, name)
    assert len(raw) == 5 + len(name.encode())
    assert decode_contact(raw) == (phone or "", name)


@pytest.mark.parametrize("phone,name", [("13812345678", "张*明"), ("19999999999", "欧**明"), (None, "*")])
@pytest.mark.parametrize("region", ["610100", "611000", "000001"])
def test_a_contact_keeps_its_region_in_three_more_bytes(phone, name, region):
    # The region says whose bureau may change the phone (contract version 3).
    raw = encode_contact(phone, name, region)
    assert len(raw) == 5 + 3 + len(name.encode())
    assert decode_contact(raw) == (phone or "", name) and contact_region(raw) == region


def test_a_contact_from_before_regions_has_none():
    assert contact_region(encode_contact("13812345678", "张*明")) is None
