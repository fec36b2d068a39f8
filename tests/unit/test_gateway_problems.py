"""A refusal's reason code decides the HTTP status of the gateway's problem+json answer."""

import pytest

from services.gateway.domain.problems import own_refusal, plain, reason_for_errors, refusal, status_for


@pytest.mark.parametrize("reason,status", [
    ("DUPLICATE_BINDING", 409), ("TOO_MANY_GRANTORS", 409), ("PAYMENT_ORDER_TAKEN", 409),
    ("BINDING_NOT_FOUND", 404), ("NOT_GRANTOR", 403), ("PLATFORM_ERROR", 500),
    ("INVALID_ID_NUMBER", 422), ("INVALID_PHONE", 422), ("UNKNOWN_PERSON", 422), ("NAME_MISMATCH", 422),
    ("OUTSIDE_PROVINCE", 422), ("SELF_BINDING", 422), ("RELATION_NOT_ALLOWED", 422),
    ("GRANTOR_NOT_EMPLOYEE", 422), ("INVALID_DATES", 422), ("NOTICE_NOT_ACCEPTED", 422),
    ("SIGNATURE_MISSING", 422), ("INVALID_COMMAND", 422), ("A_CODE_ADDED_LATER", 422),
    ("ALREADY_PAUSED", 409), ("NOT_PAUSED", 409), ("DISPUTE_OPEN", 409), ("ALREADY_DISPUTED", 409),
    ("UNKNOWN_REFERENCE", 404), ("INVALID_LIMIT", 422),
])
def test_each_reason_code_has_its_status(reason, status):
    assert status_for(reason) == status


def test_a_binding_refusal_is_an_rfc_9457_problem_with_the_contracts_words():
    body = refusal("DUPLICATE_BINDING", "已存在有效的共济关系", "An active binding already exists.").body()
    assert body == {"type": "urn:fma:problem:DUPLICATE_BINDING", "title": "Conflicts with an existing binding",
                    "status": 409, "detail": "An active binding already exists.",
                    "reason_code": "DUPLICATE_BINDING", "message_zh": "已存在有效的共济关系",
                    "message_en": "An active binding already exists."}


def test_a_problem_without_a_reason_code_is_about_blank_and_carries_no_reason_fields():
    body = plain(401, "Unauthorized", "A bearer token is required.").body()
    assert body == {"type": "about:blank", "title": "Unauthorized", "status": 401,
                    "detail": "A bearer token is required."}


def test_the_gateways_own_refusal_says_where_and_keeps_the_contracts_messages():
    body = own_refusal("INVALID_COMMAND", "body.payment_order: int_type", errors=[]).body()
    assert body["status"] == 422 and body["reason_code"] == "INVALID_COMMAND"
    assert body["message_en"] == "A field is missing or has the wrong type."
    assert body["detail"].endswith("(body.payment_order: int_type)") and body["errors"] == []


@pytest.mark.parametrize("errors,reason", [
    (["invalid_id_number"], "INVALID_ID_NUMBER"),
    (["invalid_id_number", "invalid_id_number"], "INVALID_ID_NUMBER"),
    (["invalid_phone"], "INVALID_PHONE"),
    (["invalid_id_number", "invalid_phone"], "INVALID_COMMAND"),
    (["missing"], "INVALID_COMMAND"),
    (["int_type", "invalid_id_number"], "INVALID_COMMAND"),
    (["invalid_limit"], "INVALID_LIMIT"),
])
def test_a_validation_failure_gets_a_specific_reason_only_when_every_error_is_of_that_kind(errors, reason):
    assert reason_for_errors(errors) == reason
