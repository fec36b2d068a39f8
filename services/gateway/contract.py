"""The gateway's messages: the HTTP request and response bodies (OpenAPI) and the audit
record of a window clerk's action on `gateway.audit`. The commands and queries it sends are the
binding and settlement services' messages, in their wire shapes (documented by those services).

Request bodies are read as strictly as the services read Kafka (strings stay strings, sizes
bounded, no unknown field): a request the platform would refuse as malformed is refused here,
before anything is sent."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool

from shared.identity import IdNumber, Mobile
from shared.regions import RegionCode
from shared.wire import Day, Text

# Event types on the wire (contract.md; QueryCommandOutcome and CommandOutcomeUnknown added with the API).
CREATE_BINDING = "CreateBinding"
REVOKE_BINDING = "RevokeBinding"
CHANGE_PAYMENT_ORDER = "ChangePaymentOrder"
QUERY_BINDINGS = "QueryBindings"
QUERY_COMMAND_OUTCOME = "QueryCommandOutcome"
QUERY_CONSUMPTION = "QueryConsumption"
QUERY_PERSON = "QueryPerson"  # binding.commands, answered PersonFound
QUERY_ACCOUNT = "QueryAccount"  # settlement.queries, answered AccountFound
PERSON_FOUND = "PersonFound"
ACCOUNT_FOUND = "AccountFound"
BINDINGS_LISTED = "BindingsListed"
CONSUMPTION_LISTED = "ConsumptionListed"
COMMAND_OUTCOME_UNKNOWN = "CommandOutcomeUnknown"
BINDING_REJECTED = "BindingRejected"
CHARGE_REJECTED = "ChargeRejected"
OUTCOME_TYPES = frozenset({"BindingCreated", "BindingRevoked", "PaymentOrderChanged", BINDING_REJECTED})
WINDOW_ACTION_AUDITED = "WindowActionAudited"

PaymentOrder = Annotated[int, Strict(), Field(ge=1, le=2, description="顺位: 1 or 2.")]
BindingId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
CommandId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class _Form(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Party(_Form):
    id_number: IdNumber = Field(description="18-character resident ID number.")
    name: Annotated[Text, Field(min_length=1, max_length=64)]
    region: RegionCode = Field(description="6-digit pooling region code (Xi'an 610100, Baoji 610300, ...).")
    employer: Annotated[Text, Field(max_length=200)] | None = None
    community: Annotated[Text, Field(max_length=200)] | None = None
    phone: Mobile | None = Field(None, description="Mainland mobile; the grantor's is required.")


_XIAN_SON = {"id_number": "610102198503150018", "name": "王小明", "region": "610100", "employer": "西安某公司",
             "phone": "13812345678"}
_BAOJI_FATHER = {"id_number": "610302195501200031", "name": "王大山", "region": "610300", "community": "渭滨区某社区"}


class BindingRequest(_Form):
    """CreateBinding as the app or a window sends it; the channel (and the clerk) come from the token."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [{
        "grantor": _XIAN_SON, "beneficiary": _BAOJI_FATHER, "relation": "father", "payment_order": 1,
        "start_date": "2026-12-01", "end_date": "2027-11-30", "notice_accepted": True,
        "signature_digest": "sha256:" + "ab" * 32}]})

    grantor: Party = Field(description="授权者 / 共济人: the employee whose personal account pays.")
    beneficiary: Party = Field(description="使用者: the family member whose bills it pays.")
    relation: Annotated[Text, Field(max_length=32, description="What the beneficiary is to the grantor: "
                                                               "father, mother, spouse or child.")]
    payment_order: PaymentOrder
    start_date: Day
    end_date: Day
    notice_accepted: StrictBool = Field(description="The grantor read and accepted the notice (告知书).")
    signature_digest: Annotated[Text, Field(max_length=128)] | None = Field(
        None, description="sha256: and 64 hex digits of the signed personal commitment (承诺书).")


class RevocationRequest(_Form):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [
        {}, {"requested_by": "610102198503150018"}]})

    requested_by: IdNumber | None = Field(
        None, description="Who asks to end the binding (its grantor). An app token: omitted or its own person; "
                          "a window: required.")


class PaymentOrderRequest(_Form):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [
        {"payment_order": 2}, {"payment_order": 1, "requested_by": "610102198503150018"}]})

    payment_order: PaymentOrder
    requested_by: IdNumber | None = Field(
        None, description="Who asks (the binding's grantor). An app token: omitted or its own person; a window: "
                          "optional.")


class LookupRequest(_Form):
    """查询参保人: the ID number, and the name printed on the ID card to verify (never stored,
    logged or echoed: the binding service compares its keyed digest)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [
        {"id_number": "610102198503150018", "name": "王小明"}, {"id_number": "610302195501200031", "name": None}]})

    id_number: IdNumber = Field(description="18-character resident ID number.")
    name: Annotated[Text, Field(min_length=1, max_length=64)] | None = Field(
        None, description="The name on the ID card; null: not verified (no balance shown).")


# -- responses (documented in the OpenAPI page) ----------------------------------------------------------
class CommandOutcome(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "command_id": "2f0d6c1e-8b7a-4c55-9a51-0d2c9b1e7f10", "status": "created", "event_type": "BindingCreated",
        "outcome": {"command_id": "2f0d6c1e-8b7a-4c55-9a51-0d2c9b1e7f10", "binding_id": "BND-4f6c0a7e9d1b2c3a4e5f6a7b",
                    "grantor_id": "610***********0018", "beneficiary_id": "610***********0031",
                    "relation": "father", "payment_order": 1, "start_date": "2026-12-01", "end_date": "2027-11-30",
                    "grantor_region": "610100", "beneficiary_region": "610300", "channel": "app"}}]})

    command_id: str
    status: Literal["created", "revoked", "payment_order_changed", "rejected"]
    event_type: str = Field(description="The event binding.events carried: BindingCreated, BindingRevoked, "
                                        "PaymentOrderChanged or BindingRejected.")
    outcome: dict[str, Any] = Field(description="That event's payload, ID numbers masked.")


class CommandAccepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "command_id": "2f0d6c1e-8b7a-4c55-9a51-0d2c9b1e7f10", "status": "pending",
        "location": "/v1/commands/2f0d6c1e-8b7a-4c55-9a51-0d2c9b1e7f10"}]})

    command_id: str
    status: Literal["pending"] = "pending"
    location: str = Field(description="Where to ask for the outcome (also the Location header).")


class ListedBinding(BaseModel):
    binding_id: str
    role: Literal["grantor", "beneficiary"] = Field(description="The person's role in it.")
    role_zh: str = Field(description="授权者 or 使用者.")
    counterpart_id: str = Field(description="The other person's ID number, masked.")
    relation: str
    payment_order: int
    start_date: date
    end_date: date
    status: str
    grantor_region: str
    beneficiary_region: str


class BindingsView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "person_id": "610***********0018", "bindings": [{
            "binding_id": "BND-4f6c0a7e9d1b2c3a4e5f6a7b", "role": "grantor", "role_zh": "授权者",
            "counterpart_id": "610***********0031", "relation": "father", "payment_order": 1,
            "start_date": "2026-12-01", "end_date": "2027-11-30", "status": "active",
            "grantor_region": "610100", "beneficiary_region": "610300"}]}]})

    person_id: str = Field(description="Masked.")
    bindings: list[ListedBinding]


class PaymentRow(BaseModel):
    beneficiary_id: str = Field(description="Masked.")
    charge_id: str
    institution_code: str
    settled_at: str
    paid: str = Field(description="Yuan paid from the grantor's account.")
    refunded: str = Field(description="Yuan of it refunded since.")


class BeneficiaryTotals(BaseModel):
    beneficiary_id: str = Field(description="Masked.")
    payments: int
    total_paid: str
    total_refunded: str


class ConsumptionView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "grantor_id": "610***********0018", "from": "2026-11-01", "to": "2026-11-30",
        "total_paid": "128.50", "total_refunded": "0.00",
        "beneficiaries": [{"beneficiary_id": "610***********0031", "payments": 1, "total_paid": "128.50",
                           "total_refunded": "0.00"}],
        "page": 1, "page_size": 50, "total_items": 1, "total_pages": 1,
        "items": [{"beneficiary_id": "610***********0031", "charge_id": "C20261120001",
                   "institution_code": "H61030001", "settled_at": "2026-11-20T10:15:00+08:00",
                   "paid": "128.50", "refunded": "0.00"}]}]})

    grantor_id: str = Field(description="Masked.")
    date_from: date = Field(alias="from", serialization_alias="from")
    date_to: date = Field(alias="to", serialization_alias="to")
    total_paid: str = Field(description="Over the whole range, every page.")
    total_refunded: str
    beneficiaries: list[BeneficiaryTotals]
    page: int
    page_size: int
    total_items: int
    total_pages: int
    items: list[PaymentRow]


class MeView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"role": "window", "clerk_id": "clerk-xa-0001", "region": "610100", "region_name": "西安市",
         "person_id": None},
        {"role": "app", "clerk_id": None, "region": None, "region_name": None, "person_id": "610***********0018"}]})

    role: Literal["window", "supervisor", "app"]
    clerk_id: str | None = Field(description="The clerk (window, supervisor).")
    region: str | None = Field(description="The clerk's bureau region (window, supervisor).")
    region_name: str | None = Field(description="That region's name (西安市).")
    person_id: str | None = Field(description="The app's person, masked.")


class LookupView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "person_id": "610***********0018", "registered": True, "region": "610100", "region_name": "西安市",
        "scheme": "employee", "name_verified": True, "balance": "1280.50"}]})

    person_id: str = Field(description="Masked.")
    registered: bool
    region: str | None
    region_name: str | None
    scheme: Literal["employee", "resident"] | None
    name_verified: bool | None = Field(description="Whether the name sent is the registered one; null when no "
                                                   "name was sent.")
    balance: str | None = Field(description="Yuan in the personal account as a charge would find it; only when "
                                            "the name is verified and the person is an employee.")


class AuditEntry(BaseModel):
    at: datetime
    clerk_id: str
    region: str
    action: str = Field(description="create_binding, revoke_binding, change_payment_order, lookup, list_bindings, "
                                    "query_consumption or query_command.")
    command_id: str = Field(description="The command's id, or the query's.")
    subject_id: str = Field(description="The person acted for, masked ('' when unknown).")
    outcome: str = Field(description="A command: accepted, refused or pending (no outcome within the wait); a "
                                     "query: answered (forbidden, failed).")
    reason_code: str | None = Field(description="Why refused (a command), or UNKNOWN_PERSON / NAME_MISMATCH (a "
                                                "look-up).")


class AuditView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "entries": [{"at": "2026-11-20T10:15:00.123456+08:00", "clerk_id": "clerk-xa-0001", "region": "610100",
                     "action": "create_binding", "command_id": "2f0d6c1e-8b7a-4c55-9a51-0d2c9b1e7f10",
                     "subject_id": "610***********0018", "outcome": "accepted", "reason_code": None}],
        "page": 1, "page_size": 50, "total": 1}]})

    entries: list[AuditEntry] = Field(description="Newest first.")
    page: int
    page_size: int
    total: int = Field(description="Entries in the range, every page.")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details (application/problem+json)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "type": "urn:fma:problem:DUPLICATE_BINDING", "title": "Conflicts with an existing binding", "status": 409,
        "detail": "An active binding between these two persons already exists.",
        "reason_code": "DUPLICATE_BINDING", "message_zh": "已存在有效的共济关系",
        "message_en": "An active binding between these two persons already exists."}]})

    type: str
    title: str
    status: int
    detail: str
    reason_code: str | None = Field(None, description="The contract's reason code, when there is one.")
    message_zh: str | None = None
    message_en: str | None = None
    command_id: str | None = Field(None, description="The refused command's id (a BindingRejected).")
    errors: list[dict[str, Any]] | None = Field(
        None, description="Where a request failed validation: loc, type, msg (never the value sent).")


# -- gateway.audit ---------------------------------------------------------------------------------------
class WindowActionAudited(BaseModel):
    """A window clerk's action, published on gateway.audit (key: the clerk id)."""

    clerk_id: str
    region: str = Field(description="The clerk's bureau region.")
    action: Literal["create_binding", "revoke_binding", "change_payment_order", "list_bindings",
                    "query_consumption", "query_command", "lookup"]
    command_id: str = Field(description="The command's id, or the query's.")
    subject_id: str = Field(description="The person acted for, masked ('' when the gateway cannot tell).")
    binding_id: str | None = None
    outcome: str = Field(description="created, revoked, payment_order_changed, rejected, pending (no outcome "
                                     "within the wait), answered (a query or a look-up), forbidden or failed.")
    reason_code: str | None = None
    at: datetime = Field(description="When the clerk acted. A command audited `pending` is audited again once "
                                     "decided, with the same command_id and time: that record supersedes it.")
