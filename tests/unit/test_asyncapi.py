"""The generated AsyncAPI documents say what contract.md says: its topics, event types and fields."""

from pathlib import Path

import pytest
import yaml

from shared.asyncapi import SERVICES_DIR, platform_document, platform_yaml, service_documents
from services.binding.asyncapi import binding_document
from services.notify.asyncapi import notify_document
from services.settlement.asyncapi import settlement_document

CONTRACT = {
    "binding.commands": {"CreateBinding": ["grantor", "beneficiary", "relation", "payment_order", "start_date",
                                           "end_date", "notice_accepted", "signature_digest", "channel"],
                         "RevokeBinding": ["binding_id", "requested_by"],
                         "ChangePaymentOrder": ["binding_id", "payment_order"]},
    "binding.events": {"BindingCreated": ["command_id", "binding_id", "grantor_id", "beneficiary_id", "relation",
                                          "payment_order", "start_date", "end_date", "grantor_region",
                                          "beneficiary_region"],
                       "BindingRevoked": ["command_id", "binding_id"],
                       "PaymentOrderChanged": ["command_id", "binding_id"],
                       "BindingRejected": ["command_id", "reason_code", "message_zh", "message_en"]},
    "his.charges": {"ChargeSubmitted": ["charge_id", "institution_code", "institution_region", "patient_id",
                                        "patient_name", "code_holder_id", "presented_via", "visit_kind", "total",
                                        "fund_paid", "individual_borne", "charged_at"],
                    "ChargeRefunded": ["charge_id", "refund_id", "amount", "refunded_at", "institution_code"]},
    "settlement.results": {"ChargeSettled": ["charge_id", "patient_id", "individual_borne", "lines", "institution_code"],
                           "RefundSettled": ["charge_id", "refund_id", "lines", "institution_code"],
                           "ChargeRejected": ["charge_id", "reason_code", "message_zh", "message_en", "institution_code"],
                           "FraudSuspected": ["charge_id", "patient_id", "code_holder_id", "institution_code"]},
    "bureau.institutions": {"InstitutionRegistered": ["institution_code", "name", "region", "kind"]},
    "bureau.postings.{region}": {"Posting": ["posting_id", "region", "person_id", "direction", "amount", "charge_id",
                                    "refund_id", "beneficiary_id", "posted_at", "account_seq"]},
    "bureau.accounts": {"PersonRegistered": ["person_id", "name", "region", "scheme", "employer", "community",
                                             "phone", "balance"],
                        "AccountCredited": ["person_id", "region", "amount", "bureau_seq"],
                        "AccountDebitedLocally": ["person_id", "region", "amount", "bureau_seq"],
                        "BalanceSnapshot": ["person_id", "region", "balance", "bureau_seq", "postings_applied_through"]},
}
CONTRACT["notify.deliveries"] = {
    "SmsSent": ["message_id", "source_event_id", "source_event_type", "charge_id", "binding_id", "recipient_role",
                "phone", "template", "segments", "provider", "provider_message_id", "sent_at"],
    "SmsFailed": ["message_id", "source_event_id", "source_event_type", "recipient_role", "phone", "template",
                  "segments", "provider", "reason", "attempts"]}
CASES = [(topic, event, fields) for topic, events in CONTRACT.items() for event, fields in events.items()]


def documents():
    return [binding_document(), settlement_document(), notify_document()]


@pytest.mark.parametrize("topic,event_type,fields", CASES)
def test_every_contract_message_is_documented_with_its_fields(topic, event_type, fields):
    # the document of the service that owns the message (others may name it on their channels)
    docs = [d for d in documents() if event_type in d["channels"].get(topic, {}).get("messages", {})
            and event_type in d["components"]["messages"]]
    assert docs, f"{event_type} on {topic} is in no AsyncAPI document"
    doc = docs[0]
    message = doc["components"]["messages"][event_type]
    assert message["payload"]["properties"]["event_type"] == {"const": event_type}
    model = message["payload"]["properties"]["payload"]["$ref"].rsplit("/", 1)[1]
    assert set(fields) <= set(doc["components"]["schemas"][model]["properties"])


def test_amounts_are_documented_as_yuan_strings():
    schemas = settlement_document()["components"]["schemas"]
    assert schemas["ChargeSubmitted"]["properties"]["total"]["type"] == "string"


# -- docs/asyncapi.yaml: the platform's one document ------------------------------------------

DOCS_ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def test_docs_asyncapi_yaml_is_what_the_code_generates_now():
    assert DOCS_ASYNCAPI.read_text(encoding="utf-8") == platform_yaml(), (
        "docs/asyncapi.yaml is stale: run `make asyncapi` and commit it")


@pytest.mark.parametrize("topic,event_type,fields", CASES)
def test_the_platform_document_carries_every_contract_message(topic, event_type, fields):
    doc = yaml.safe_load(DOCS_ASYNCAPI.read_text(encoding="utf-8"))
    assert event_type in doc["channels"][topic]["messages"], f"{event_type} on {topic}"
    message = doc["components"]["messages"][event_type]
    model = message["payload"]["properties"]["payload"]["$ref"].rsplit("/", 1)[1]
    assert set(fields) <= set(doc["components"]["schemas"][model]["properties"])


def test_every_service_with_an_asyncapi_module_is_in_the_platform_document():
    services = {p.parent.name for p in SERVICES_DIR.glob("*/asyncapi.py")}
    assert set(service_documents()) == services
    operations = platform_document()["operations"]
    assert {op_id.split(".", 1)[0] for op_id in operations} == services


def test_every_reference_in_the_platform_document_resolves():
    doc = platform_document()

    def refs(node):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from ([v] if k == "$ref" else refs(v))
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        node = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]


def test_a_model_name_two_services_use_differently_is_qualified_not_merged():
    schemas = platform_document()["components"]["schemas"]
    assert "UNKNOWN_PATIENT" in schemas["SettlementReason"]["enum"]
    assert "NOT_GRANTOR" in schemas["BindingReason"]["enum"]
