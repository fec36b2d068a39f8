"""The edge of binding.commands: strict types (contract.md, version 2: strings stay strings,
sizes bounded) and the binding service's settings. Pure: no broker, no Redis."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.binding import contract as c
from services.binding.config import BindingSettings
from services.binding.domain.reasons import Reason
from shared.identity import make_id_number

GRANTOR_ID = make_id_number("610100", date(1980, 5, 17), 11)
BENEFICIARY_ID = make_id_number("610300", date(1952, 3, 2), 21)


def form(**changes: Any) -> dict[str, Any]:
    base = {
        "grantor": {"id_number": GRANTOR_ID, "name": "王建国", "region": "610100", "employer": "某公司",
                    "phone": "13812345678"},
        "beneficiary": {"id_number": BENEFICIARY_ID, "name": "王德福", "region": "610300", "community": "某社区"},
        "relation": "father", "payment_order": 1, "start_date": "2026-06-01", "end_date": "2026-12-31",
        "notice_accepted": True, "signature_digest": "sha256:" + "ab" * 32, "channel": "app",
    }
    return base | changes


def reason(model: type, payload: Any) -> Reason:
    with pytest.raises(ValidationError) as error:
        model.model_validate(payload)
    return c.reason_for(error.value)


def test_a_well_formed_create_binding_is_read() -> None:
    cmd = c.CreateBinding.model_validate(form())
    assert (cmd.start_date, cmd.payment_order, cmd.notice_accepted) == (date(2026, 6, 1), 1, True)


@pytest.mark.parametrize("field,value", [
    ("start_date", 0), ("start_date", 20260601), ("end_date", 1.5e9), ("start_date", "2026-6-1"),
    ("start_date", "2026-06-01T00:00:00+08:00"),
    ("relation", 1), ("signature_digest", 0), ("channel", 1),
    ("payment_order", True), ("payment_order", 1.0), ("payment_order", "1"), ("payment_order", 3),
    ("notice_accepted", "true"), ("notice_accepted", 1),
    ("relation", "father" * 10), ("signature_digest", "sha256:" + "a" * 200),
])
def test_a_value_of_the_wrong_type_or_size_is_an_invalid_command(field: str, value: Any) -> None:
    assert reason(c.CreateBinding, form(**{field: value})) is Reason.INVALID_COMMAND


@pytest.mark.parametrize("party_field,value", [("name", 123), ("name", ""), ("name", "名" * 65),
                                               ("employer", 7), ("community", "社" * 201)])
def test_a_party_field_of_the_wrong_type_or_size_is_an_invalid_command(party_field: str, value: Any) -> None:
    payload = form()
    payload["grantor"] = payload["grantor"] | {party_field: value}
    assert reason(c.CreateBinding, payload) is Reason.INVALID_COMMAND


def test_an_id_number_sent_as_a_number_is_an_invalid_id_number() -> None:
    payload = form()
    payload["beneficiary"] = payload["beneficiary"] | {"id_number": int(BENEFICIARY_ID[:17] + "0")}
    assert reason(c.CreateBinding, payload) is Reason.INVALID_ID_NUMBER


@pytest.mark.parametrize("payload", [
    {"binding_id": 12, "requested_by": GRANTOR_ID}, {"binding_id": "B" * 65, "requested_by": GRANTOR_ID},
    {"binding_id": "", "requested_by": GRANTOR_ID},
])
def test_revoke_with_a_binding_id_not_a_bounded_string_is_an_invalid_command(payload: dict) -> None:
    assert reason(c.RevokeBinding, payload) is Reason.INVALID_COMMAND


@pytest.mark.parametrize("order", [True, 1.0, "2", 0, 3])
def test_change_payment_order_takes_only_the_integers_one_and_two(order: Any) -> None:
    assert reason(c.ChangePaymentOrder, {"binding_id": "BND-1", "payment_order": order}) is Reason.INVALID_COMMAND


@pytest.mark.parametrize("payload,expected", [
    ({"person_id": 610100198005170011}, Reason.INVALID_ID_NUMBER),
    ({"person_id": GRANTOR_ID, "role": 1}, Reason.INVALID_COMMAND),
    ({"person_id": GRANTOR_ID, "role": "owner"}, Reason.INVALID_COMMAND),
])
def test_query_bindings_is_as_strict(payload: dict, expected: Reason) -> None:
    assert reason(c.QueryBindings, payload) is expected


# --- fields a gateway adds, and the outcome query --------------------------------------------------


@pytest.mark.parametrize("clerk_id", ["W1", "XA-clerk_0042", "c" * 32])
def test_a_window_clerks_id_is_taken_on_every_command_that_changes_bindings(clerk_id: str) -> None:
    assert c.CreateBinding.model_validate(form(channel="window", clerk_id=clerk_id)).clerk_id == clerk_id
    assert c.RevokeBinding.model_validate({"binding_id": "BND-1", "requested_by": GRANTOR_ID,
                                           "clerk_id": clerk_id}).clerk_id == clerk_id
    assert c.ChangePaymentOrder.model_validate({"binding_id": "BND-1", "payment_order": 1,
                                                "clerk_id": clerk_id}).clerk_id == clerk_id


def test_commands_without_the_added_fields_read_as_before() -> None:
    assert c.CreateBinding.model_validate(form()).clerk_id is None
    change = c.ChangePaymentOrder.model_validate({"binding_id": "BND-1", "payment_order": 2})
    assert (change.requested_by, change.clerk_id) == (None, None)


@pytest.mark.parametrize("clerk_id", ["", "c" * 33, "clerk 42", "柜员", "a/b", "a.b", 42, True])
@pytest.mark.parametrize("model,payload", [
    (c.CreateBinding, form(channel="window")),
    (c.RevokeBinding, {"binding_id": "BND-1", "requested_by": GRANTOR_ID}),
    (c.ChangePaymentOrder, {"binding_id": "BND-1", "payment_order": 1}),
], ids=["create", "revoke", "change"])
def test_a_clerk_id_not_1_to_32_letters_digits_dashes_or_underscores_is_an_invalid_command(
        model: type, payload: dict, clerk_id: Any) -> None:
    assert reason(model, payload | {"clerk_id": clerk_id}) is Reason.INVALID_COMMAND


@pytest.mark.parametrize("requested_by,expected", [
    (int(GRANTOR_ID[:17] + "0"), Reason.INVALID_ID_NUMBER), (GRANTOR_ID[:17] + ("0" if GRANTOR_ID[17] != "0" else "1"), Reason.INVALID_ID_NUMBER),
])
def test_change_payment_order_takes_only_a_valid_id_number_as_requested_by(requested_by: Any,
                                                                            expected: Reason) -> None:
    payload = {"binding_id": "BND-1", "payment_order": 1, "requested_by": requested_by}
    assert reason(c.ChangePaymentOrder, payload) is expected


@pytest.mark.parametrize("command_id", ["e-1", "c" * 128, " padded ", "命令-1"])
def test_an_outcome_query_asks_about_any_id_a_command_can_have_as_sent(command_id: str) -> None:
    # Not stripped: a command sent as " padded " is answered under exactly that id.
    assert c.QueryCommandOutcome.model_validate({"command_id": command_id}).command_id == command_id


@pytest.mark.parametrize("payload", [{}, {"command_id": ""}, {"command_id": "c" * 129}, {"command_id": 12},
                                     {"command_id": None}, {"command_id": ["e-1"]}])
def test_an_outcome_query_without_a_bounded_string_id_is_an_invalid_command(payload: dict) -> None:
    assert reason(c.QueryCommandOutcome, payload) is Reason.INVALID_COMMAND


def test_queries_are_known_command_types() -> None:
    assert c.QUERY_TYPES <= c.COMMAND_TYPES and c.QUERY_COMMAND_OUTCOME in c.COMMAND_MODELS


@pytest.mark.parametrize("occurred_at", [0, 1_700_000_000, "2026-06-01T09:30:00", "0001-01-01T00:00:00+01:00"])
def test_an_envelope_time_that_is_a_number_or_has_no_offset_is_refused(occurred_at: Any) -> None:
    body = {"event_id": "e-1", "event_type": "RevokeBinding", "occurred_at": occurred_at, "payload": {}}
    assert reason(c.CommandEnvelope, body) is Reason.INVALID_COMMAND


_NOT_STRINGS = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                         st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(),
                                                                               max_size=1))


@settings(database=None, deadline=None)
@given(field=st.sampled_from(["relation", "start_date", "end_date", "channel"]), value=_NOT_STRINGS)
def test_no_json_value_but_a_string_is_taken_where_the_contract_says_a_string(field: str, value: Any) -> None:
    # Round-trip through JSON: what a partner can actually send.
    payload = json.loads(json.dumps(form(**{field: value})))
    assert reason(c.CreateBinding, payload) is Reason.INVALID_COMMAND


# --- settings ------------------------------------------------------------------------------------


NAME_KEY = "unit-test-name-digest-key"


def test_outcome_records_outlive_the_topics_retention_by_default() -> None:
    s = BindingSettings(name_digest_key=NAME_KEY)
    assert s.binding_outcome_ttl_days >= s.kafka_retention_days


def test_an_outcome_ttl_shorter_than_the_retention_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="KAFKA_RETENTION_DAYS"):
        BindingSettings(binding_outcome_ttl_days=7, kafka_retention_days=30, name_digest_key=NAME_KEY)


def test_the_name_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAME_DIGEST_KEY", "s3cret-of-sixteen-or-more")
    assert BindingSettings().name_key() == b"s3cret-of-sixteen-or-more"


def test_without_a_name_key_the_service_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # No published fallback: a digest keyed with a key anyone can read is as weak as a bare hash.
    monkeypatch.delenv("NAME_DIGEST_KEY", raising=False)
    with pytest.raises(ValidationError, match="name_digest_key"):
        BindingSettings()
    monkeypatch.setenv("NAME_DIGEST_KEY", "")
    with pytest.raises(ValidationError, match="name_digest_key"):
        BindingSettings()


def test_a_short_name_key_is_refused_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAME_DIGEST_KEY", "short-s3cret")
    with pytest.raises(ValidationError) as error:
        BindingSettings()
    assert "short-s3cret" not in str(error.value)
