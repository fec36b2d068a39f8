"""The gateway's messages: the HTTP request and response bodies (OpenAPI) and the audit
record of a window clerk's action on `gateway.audit`. The commands and queries it sends are the
binding and settlement services' messages, in their wire shapes (documented by those services).

Request bodies are read as strictly as the services read Kafka (strings stay strings, sizes
bounded, no unknown field): a request the platform would refuse as malformed is refused here,
before anything is sent."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, Strict, StrictBool,
                      WithJsonSchema, model_validator)
from pydantic_core import PydanticCustomError

from shared.identity import IdNumber, Mobile
from shared import limits
from shared.limits import MonthlyLimit
from shared.money import SIGNED_YUAN_PATTERN, YUAN_PATTERN
from shared.regions import RegionCode
from shared.references import read_reference
from shared.wire import Day, Text, Time

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
# Added with limits, pause and disputes (issue 15; the binding service's I-4 commands).
SET_GRANTOR_LIMIT = "SetGrantorLimit"
PAUSE_BINDING = "PauseBinding"
RESUME_BINDING = "ResumeBinding"
DISPUTE_PAYMENT = "DisputePayment"
QUERY_DISPUTES = "QueryDisputes"  # binding.commands, answered DisputesListed
DISPUTES_LISTED = "DisputesListed"
GRANTOR_LIMIT_SET = "GrantorLimitSet"
BINDING_PAUSED = "BindingPaused"
BINDING_RESUMED = "BindingResumed"
DISPUTE_OPENED = "DisputeOpened"
OUTCOME_TYPES = frozenset({"BindingCreated", "BindingRevoked", "PaymentOrderChanged", GRANTOR_LIMIT_SET,
                           BINDING_PAUSED, BINDING_RESUMED, DISPUTE_OPENED, BINDING_REJECTED})
# The outcome each command is answered with (else BindingRejected).
OUTCOME_OF = {CREATE_BINDING: "BindingCreated", REVOKE_BINDING: "BindingRevoked",
              CHANGE_PAYMENT_ORDER: "PaymentOrderChanged", SET_GRANTOR_LIMIT: GRANTOR_LIMIT_SET,
              PAUSE_BINDING: BINDING_PAUSED, RESUME_BINDING: BINDING_RESUMED, DISPUTE_PAYMENT: DISPUTE_OPENED}
WINDOW_ACTION_AUDITED = "WindowActionAudited"
SMS_REPLY_RECEIVED = "SmsReplyReceived"  # sms.uplink, the provider's uplink callback (I-6)
TOKEN_REVOKED = "TokenRevoked"  # gateway.revocations (contract version 3)
CLERK_REVOKED = "ClerkRevoked"

PaymentOrder = Annotated[int, Strict(), Field(ge=1, le=2, description="顺位: 1 or 2.")]
# Amounts in answers are passed on as settlement gave them (yuan strings); their schemas say which
# may be negative: a balance (never clamped, contract version 2), never a payment or a refund.
Amount = Annotated[str, WithJsonSchema({"type": "string", "pattern": YUAN_PATTERN, "examples": ["128.50"]})]
SignedAmount = Annotated[str, WithJsonSchema({"type": "string", "pattern": SIGNED_YUAN_PATTERN,
                                              "examples": ["1280.50", "-40.00"]})]
def _reference(value: Any) -> str:
    """A payment reference as printed in the payment SMS (I-2), read leniently: case, spaces, O for 0,
    I/L for 1 and a leading BF (the SMS reply form) are forgiven."""
    read = read_reference(value) if isinstance(value, str) and len(value) <= 32 else None
    if read is None:
        raise PydanticCustomError("invalid_reference", "not a payment reference (8 characters, e.g. 7K2P9QXM)")
    return read


Reference = Annotated[str, BeforeValidator(_reference),
                      WithJsonSchema({"type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{8}$",
                                      "examples": ["7K2P9QXM"],
                                      "description": "The payment's reference, as the payment SMS prints it."})]
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


_GRANTOR_ASKS = ("Who asks (the binding's grantor). An app token: omitted or its own person; a window: "
                 "required.")


class LimitRequest(_Form):
    """共济限额: how much the binding may pay a calendar month (China time); null clears the limit."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [
        {"monthly_limit": "500.00"}, {"monthly_limit": None},
        {"monthly_limit": "0.00", "requested_by": "610102198503150018"}]})

    monthly_limit: MonthlyLimit | None = Field(description=f"Yuan a month, {limits.catalogue()['min']} (pays "
                                                           f"nothing) to {limits.catalogue()['max']}; null: no limit.")
    requested_by: IdNumber | None = Field(None, description=_GRANTOR_ASKS)


class GrantorRequest(_Form):
    """Pause or resume a binding: only who asks (the grantor)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [
        {}, {"requested_by": "610102198503150018"}]})

    requested_by: IdNumber | None = Field(None, description=_GRANTOR_ASKS)


class DisputeRequest(_Form):
    """非本人授权: the grantor disputes a payment from his or her account by the SMS's reference."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [
        {"reference": "7K2P9QXM"}, {"reference": "BF 7K2P9QXM", "grantor_id": "610102198503150018"}]})

    reference: Reference
    grantor_id: IdNumber | None = Field(None, description="The grantor whose account paid. An app token: omitted "
                                                          "or its own person; a window: required.")


class SmsInbound(BaseModel):
    """The SMS provider's uplink callback: one reply a grantor sent to the platform's number."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "message_id": "up-20261120-000123", "phone": "13812345678", "text": "BF 7K2P9QXM",
        "received_at": "2026-11-20T10:20:00+08:00"}]})

    message_id: Annotated[Text, Field(min_length=1, max_length=64, description="The provider's id of the reply "
                                                                                "(a resent callback keeps it).")]
    phone: Mobile = Field(description="The sender's mobile number.")
    text: Annotated[Text, Field(max_length=160, description="What the sender wrote.")]
    received_at: Time


class SmsReplyReceived(BaseModel):
    """A grantor's SMS reply, as the provider called it in (on sms.uplink, key message_id; I-6)."""

    message_id: str = Field(description="The provider's id of the reply, at most 64 characters.")
    phone: str = Field(description="The sender's mainland mobile number (notify resolves it to a person).")
    text: str = Field(description="The reply's text, at most 160 characters (e.g. BF 7K2P9QXM).")
    received_at: datetime


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
                    "grantor_region": "610100", "beneficiary_region": "610300", "channel": "app"}}, {
        "command_id": "7c1d2e3f-0a1b-4c5d-8e9f-a0b1c2d3e4f5", "status": "limit_set", "event_type": "GrantorLimitSet",
        "outcome": {"command_id": "7c1d2e3f-0a1b-4c5d-8e9f-a0b1c2d3e4f5", "binding_id": "BND-4f6c0a7e9d1b2c3a4e5f6a7b",
                    "grantor_id": "610***********0018", "beneficiary_id": "610***********0031",
                    "monthly_limit": "500.00", "previous_limit": "800.00"}}, {
        "command_id": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", "status": "dispute_opened", "event_type": "DisputeOpened",
        "outcome": {"command_id": "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9", "dispute_id": "DSP-9c1e0b7a5d3f2e4c6a8b0d1e",
                    "reference": "7K2P9QXM", "binding_id": "BND-4f6c0a7e9d1b2c3a4e5f6a7b",
                    "grantor_id": "610***********0018", "beneficiary_id": "610***********0031",
                    "charge_id": "C20261120001", "institution_code": "H61030001", "amount": "45.60",
                    "channel": "app", "opened_at": "2026-11-20T10:20:01+08:00"}}]})

    command_id: str
    status: Literal["created", "revoked", "payment_order_changed", "limit_set", "paused", "resumed",
                    "dispute_opened", "rejected"]
    event_type: str = Field(description="The event binding.events carried: BindingCreated, BindingRevoked, "
                                        "PaymentOrderChanged, GrantorLimitSet, BindingPaused, BindingResumed, "
                                        "DisputeOpened or BindingRejected.")
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
    monthly_limit: str | None = Field(None, description="共济限额: yuan a calendar month; null: no limit.")
    paused: bool = Field(False, description="Paused by the grantor, or by a dispute: pays nothing until resumed.")


class BindingsView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "person_id": "610***********0018", "bindings": [{
            "binding_id": "BND-4f6c0a7e9d1b2c3a4e5f6a7b", "role": "grantor", "role_zh": "授权者",
            "counterpart_id": "610***********0031", "relation": "father", "payment_order": 1,
            "start_date": "2026-12-01", "end_date": "2027-11-30", "status": "active",
            "grantor_region": "610100", "beneficiary_region": "610300", "monthly_limit": "500.00",
            "paused": False}]}]})

    person_id: str = Field(description="Masked.")
    bindings: list[ListedBinding]


class PaymentRow(BaseModel):
    beneficiary_id: str = Field(description="Masked.")
    charge_id: str
    institution_code: str
    institution_name: str | None = Field(None, description=(
        "The institution's registered name (as the SMS name it), when settlement knows it; the console shows "
        "it, else the code."))
    settled_at: str
    paid: Amount = Field(description="Yuan paid from the grantor's account.")
    refunded: Amount = Field(description="Yuan of it refunded since.")


class BeneficiaryTotals(BaseModel):
    beneficiary_id: str = Field(description="Masked.")
    payments: int
    total_paid: Amount
    total_refunded: Amount
    binding_id: str | None = Field(None, description="The binding that pays for this beneficiary.")
    monthly_limit: Amount | None = Field(None, description="共济限额: yuan a calendar month (China time); null: none.")
    used_this_month: Amount | None = Field(None, description="Yuan paid this month, held amounts included, "
                                                          "refunds given back.")
    left_this_month: Amount | None = Field(None, description="Yuan the limit still allows this month; null: no limit.")
    paused: bool | None = Field(None, description="Whether the binding is paused (pays nothing).")


class ConsumptionView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "grantor_id": "610***********0018", "from": "2026-11-01", "to": "2026-11-30",
        "total_paid": "128.50", "total_refunded": "0.00",
        "beneficiaries": [{"beneficiary_id": "610***********0031", "payments": 1, "total_paid": "128.50",
                           "total_refunded": "0.00", "binding_id": "BND-4f6c0a7e9d1b2c3a4e5f6a7b",
                           "monthly_limit": "500.00", "used_this_month": "128.50", "left_this_month": "371.50",
                           "paused": False}],
        "page": 1, "page_size": 50, "total_items": 1, "total_pages": 1,
        "items": [{"beneficiary_id": "610***********0031", "charge_id": "C20261120001",
                   "institution_code": "H61030001", "settled_at": "2026-11-20T10:15:00+08:00",
                   "paid": "128.50", "refunded": "0.00"}]}]})

    grantor_id: str = Field(description="Masked.")
    date_from: date = Field(alias="from", serialization_alias="from")
    date_to: date = Field(alias="to", serialization_alias="to")
    total_paid: Amount = Field(description="Over the whole range, every page.")
    total_refunded: Amount
    beneficiaries: list[BeneficiaryTotals]
    page: int
    page_size: int
    total_items: int
    total_pages: int
    items: list[PaymentRow]


class Dispute(BaseModel):
    dispute_id: str
    reference: str
    binding_id: str
    beneficiary_id: str = Field(description="Masked.")
    charge_id: str
    institution_code: str
    amount: Amount = Field(description="Yuan the disputed payment took from the grantor's account.")
    status: Literal["open", "upheld", "dismissed"] = Field(description="open until the bureau decides; upheld: "
                                                                       "refunded through the institution; "
                                                                       "dismissed: the grantor may resume.")
    opened_at: datetime
    decided_at: datetime | None = None


class DisputesView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "person_id": "610***********0018", "disputes": [{
            "dispute_id": "DSP-9c1e0b7a5d3f2e4c6a8b0d1e", "reference": "7K2P9QXM",
            "binding_id": "BND-4f6c0a7e9d1b2c3a4e5f6a7b", "beneficiary_id": "610***********0031",
            "charge_id": "C20261120001", "institution_code": "H61030001", "amount": "128.50", "status": "open",
            "opened_at": "2026-11-20T10:20:01+08:00", "decided_at": None}]}]})

    person_id: str = Field(description="The grantor, masked.")
    disputes: list[Dispute] = Field(description="The grantor's disputes, as the binding service lists them.")


class SmsAccepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"message_id": "up-20261120-000123",
                                                               "status": "accepted"}]})

    message_id: str
    status: Literal["accepted"] = "accepted"


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
    balance: SignedAmount | None = Field(description="Yuan in the personal account as a charge would find it, "
                                                     "negative when the bureau's own spending took it below zero "
                                                     "(never clamped); only when the name is verified and the "
                                                     "person is an employee.")


class AuditEntry(BaseModel):
    at: datetime
    clerk_id: str
    region: str
    action: str = Field(description="create_binding, revoke_binding, change_payment_order, set_limit, "
                                    "pause_binding, resume_binding, dispute_payment, lookup, list_bindings, "
                                    "list_disputes, query_consumption or query_command.")
    command_id: str = Field(description="The command's id, or the query's.")
    subject_id: str = Field(description="The person acted for, masked ('' when unknown).")
    subject_region: str | None = Field(None, description="Where that person is insured, when known: an entry of "
                                                         "another region's clerk about one of this region's persons "
                                                         "is listed for a supervisor of both.")
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
    action: Literal["create_binding", "revoke_binding", "change_payment_order", "set_limit", "pause_binding",
                    "resume_binding", "dispute_payment", "list_bindings", "list_disputes", "query_consumption",
                    "query_command", "lookup"]
    command_id: str = Field(description="The command's id, or the query's.")
    subject_id: str = Field(description="The person acted for, masked ('' when the gateway cannot tell).")
    subject_region: str | None = Field(
        None, description="Added (version 3): the region the person acted for is insured in, when known. An entry "
                          "is listed for the clerk's region and for this one (a supervisor sees what clerks "
                          "elsewhere did to the region's persons).")
    binding_id: str | None = None
    outcome: str = Field(description="created, revoked, payment_order_changed, limit_set, paused, resumed, "
                                     "dispute_opened, rejected, pending (no outcome within the wait), answered (a query "
                                     "or a look-up), forbidden or failed.")
    reason_code: str | None = None
    at: datetime = Field(description="When the clerk acted. A command audited `pending` is audited again once "
                                     "decided, with the same command_id and time: that record supersedes it.")


# -- gateway.revocations (contract version 3) --------------------------------------------------------------
_Jti = Annotated[str, Strict(), Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
_Clerk = Annotated[str, Strict(), Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


class TokenRevoked(BaseModel):
    """One bearer token revoked by its `jti` (key: the jti): every gateway refuses it from then on."""

    jti: _Jti
    revoked_at: datetime


class ClerkRevoked(BaseModel):
    """A window clerk revoked (key: the clerk id): every token of the clerk issued at or before
    `revoked_at` is refused; the sign-on issues the clerk no new one until reinstated."""

    clerk_id: _Clerk
    revoked_at: datetime


class AccessRevocation(BaseModel):
    """POST /admin/revocations on the operator port: exactly one of `jti` and `clerk_id`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"clerk_id": "clerk-xa-0001"},
                                                                              {"jti": "3e5fef09-b920-4dd7"}]})

    jti: _Jti | None = None
    clerk_id: _Clerk | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "AccessRevocation":
        if (self.jti is None) == (self.clerk_id is None):
            raise ValueError("name exactly one of jti and clerk_id")
        return self
