"""The binding service's messages (contract.md): commands it accepts on `binding.commands`
and the events it publishes on `binding.events`. Names and fields are fixed; fields may be added."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, Strict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from shared.identity import IdNumber, Mobile
from shared.money import Yuan
from shared.references import REFERENCE_PATTERN
from shared.regions import RegionCode
from shared.wire import Day, Text, Time
from services.binding.domain.reasons import Reason

CREATE_BINDING = "CreateBinding"
REVOKE_BINDING = "RevokeBinding"
CHANGE_PAYMENT_ORDER = "ChangePaymentOrder"
QUERY_BINDINGS = "QueryBindings"  # added: the role query (我的共济关系), answered on reply_to
QUERY_COMMAND_OUTCOME = "QueryCommandOutcome"  # added: an earlier command's outcome, answered on reply_to
QUERY_PERSON = "QueryPerson"  # added: a person's registration (the window's look-up), answered on reply_to
# added with limits, pause and disputes (issue 15)
SET_GRANTOR_LIMIT = "SetGrantorLimit"
PAUSE_BINDING = "PauseBinding"
RESUME_BINDING = "ResumeBinding"
DISPUTE_PAYMENT = "DisputePayment"
QUERY_DISPUTES = "QueryDisputes"  # the grantor's disputes, answered on reply_to
# Queries change nothing and are answered only on the caller's reply topic.
QUERY_TYPES = frozenset({QUERY_BINDINGS, QUERY_COMMAND_OUTCOME, QUERY_PERSON, QUERY_DISPUTES})
COMMAND_TYPES = frozenset({CREATE_BINDING, REVOKE_BINDING, CHANGE_PAYMENT_ORDER, SET_GRANTOR_LIMIT, PAUSE_BINDING,
                           RESUME_BINDING, DISPUTE_PAYMENT}) | QUERY_TYPES

BINDING_CREATED = "BindingCreated"
BINDING_REVOKED = "BindingRevoked"
PAYMENT_ORDER_CHANGED = "PaymentOrderChanged"
BINDING_REJECTED = "BindingRejected"
BINDINGS_LISTED = "BindingsListed"
COMMAND_OUTCOME_UNKNOWN = "CommandOutcomeUnknown"
PERSON_FOUND = "PersonFound"
GRANTOR_LIMIT_SET = "GrantorLimitSet"
BINDING_PAUSED = "BindingPaused"
BINDING_RESUMED = "BindingResumed"
DISPUTE_OPENED = "DisputeOpened"
DISPUTES_LISTED = "DisputesListed"
DISPUTE_RESOLVED = "DisputeResolved"
# bureau.disputes (bureau -> binding)
DISPUTE_DECIDED = "DisputeDecided"
DISPUTE_DECIDED_TYPES = frozenset({DISPUTE_DECIDED})
# settlement.results: read for the reference projection; FraudSuspected (kind grantor_dispute)
# published there, as settlement publishes its identity-mismatch FraudSuspected
CHARGE_SETTLED = "ChargeSettled"
REFUND_SETTLED = "RefundSettled"  # read for what refunds returned of a payment (issue 21)
FRAUD_SUSPECTED = "FraudSuspected"


# Strings stay strings and sizes are bounded (contract.md, version 2): a JSON number where the
# contract says a string, a date or an ID number is INVALID_COMMAND, never coerced. (IdNumber,
# Mobile and RegionCode accept only strings already.) `Literal[1, 2]` alone would take true and
# 1.0 for 1, hence a strict integer.
PaymentOrder = Annotated[int, Strict(), Field(ge=1, le=2, description="顺位: 1 or 2.")]
BindingId = Annotated[Text, Field(min_length=1, max_length=64)]
# The service-window clerk who keyed a command in (channel "window"). The binding service only
# checks its shape: the audit trail of who did what at a window is the gateway's (gateway.audit).
ClerkId = Annotated[Text, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$",
                                description="The window clerk's id: 1-32 of A-Z a-z 0-9 _ -.")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class CommandEnvelope(_Strict):
    """The envelope of a command, read as strictly as its payload (`occurred_at` a time string
    with an offset, not the number 0)."""

    event_id: Annotated[Text, Field(min_length=1, max_length=128)]
    event_type: Text
    schema_version: Annotated[int, Strict()] = 1
    occurred_at: Time
    payload: dict[str, Any]


class PartyForm(_Strict):
    id_number: IdNumber
    name: Annotated[Text, Field(min_length=1, max_length=64)]
    region: RegionCode
    employer: Annotated[Text, Field(max_length=200)] | None = None
    community: Annotated[Text, Field(max_length=200)] | None = None
    phone: Mobile | None = None


class CreateBinding(_Strict):
    grantor: PartyForm
    beneficiary: PartyForm
    relation: Annotated[Text, Field(max_length=32, description="What the beneficiary is to the grantor.")]
    payment_order: PaymentOrder
    start_date: Day
    end_date: Day
    notice_accepted: StrictBool
    signature_digest: Annotated[Text, Field(max_length=128)] | None = Field(
        None, description="sha256: and 64 hex digits of the signed commitment.")
    channel: Literal["app", "mini_program", "window"]
    clerk_id: ClerkId | None = None  # added

    @model_validator(mode="after")
    def _grantor_is_reachable(self) -> CreateBinding:
        # The grantor is told by SMS whenever the account pays; a child or an elderly
        # beneficiary may have no phone, the grantor may not.
        if self.grantor.phone is None:
            raise PydanticCustomError("invalid_phone", "the grantor's mobile phone is required")
        return self


class RevokeBinding(_Strict):
    binding_id: BindingId
    requested_by: IdNumber
    clerk_id: ClerkId | None = None  # added


class ChangePaymentOrder(_Strict):
    binding_id: BindingId
    payment_order: PaymentOrder
    requested_by: IdNumber | None = Field(  # added
        None, description="Who asks; when given, refused NOT_GRANTOR unless the binding's grantor.")
    clerk_id: ClerkId | None = None  # added


class SetGrantorLimit(_Strict):
    """共济限额: the most this binding pays in a calendar month (China time)."""

    binding_id: BindingId
    requested_by: IdNumber = Field(description="Must be the binding's grantor, else NOT_GRANTOR.")
    monthly_limit: Yuan | None = Field(description="0.00 to 1000000.00 (0: pays nothing); null lifts the limit. "
                                                   "Required: send null explicitly to lift it.")
    clerk_id: ClerkId | None = None


class PauseBinding(_Strict):
    binding_id: BindingId
    requested_by: IdNumber = Field(description="Must be the binding's grantor, else NOT_GRANTOR.")
    clerk_id: ClerkId | None = None


class ResumeBinding(_Strict):
    binding_id: BindingId
    requested_by: IdNumber = Field(description="Must be the binding's grantor, else NOT_GRANTOR.")
    clerk_id: ClerkId | None = None


class DisputePayment(_Strict):
    """非本人授权: the grantor says a payment from his or her account was not authorised."""

    reference: Annotated[Text, Field(pattern=REFERENCE_PATTERN, description=(
        "The payment's reference from the payment SMS: 8 of 0-9 A-H J K M N P-T V-Z."))]
    requested_by: IdNumber = Field(description="The grantor whose account paid.")
    channel: Literal["app", "window", "sms"]
    clerk_id: ClerkId | None = Field(None, description="Required when channel is window.")

    @model_validator(mode="after")
    def _window_names_its_clerk(self) -> DisputePayment:
        if self.channel == "window" and self.clerk_id is None:
            raise PydanticCustomError("missing_clerk", "a dispute keyed in at a window names the clerk")
        return self


class QueryDisputes(_Strict):
    person_id: IdNumber = Field(description="The grantor whose disputes to list.")


class DisputeDecided(_Strict):
    """The bureau's decision on a dispute (bureau.disputes, key dispute_id)."""

    dispute_id: Annotated[Text, Field(min_length=1, max_length=64)]
    region: RegionCode = Field(description="The deciding bureau's region: must be the grantor's.")
    decision: Literal["upheld", "dismissed"]
    decided_at: Time
    note: Annotated[Text, Field(max_length=200)] | None = None


class QueryBindings(_Strict):
    person_id: IdNumber
    role: Literal["grantor", "beneficiary"] | None = None


class QueryCommandOutcome(_Strict):
    # Not stripped, and bounded exactly as envelope.read bounds an event id: every id a command
    # can be answered under can be asked about, and " x" is not taken for "x".
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    command_id: Annotated[Text, Field(min_length=1, max_length=128,
                                      description="The event_id of the command asked about.")]


class QueryPerson(_Strict):
    """Is this person registered, where, in which scheme; and, when a name is given, is it the
    registered one. The name is compared by its keyed digest inside the binding service (the
    same comparison NAME_MISMATCH makes); it is never stored, logged or echoed."""

    person_id: IdNumber
    name: Annotated[Text, Field(min_length=1, max_length=64, description="The name on the ID card, to verify.")] \
        | None = None


COMMAND_MODELS: dict[str, type[BaseModel]] = {
    CREATE_BINDING: CreateBinding,
    REVOKE_BINDING: RevokeBinding,
    CHANGE_PAYMENT_ORDER: ChangePaymentOrder,
    QUERY_BINDINGS: QueryBindings,
    QUERY_COMMAND_OUTCOME: QueryCommandOutcome,
    QUERY_PERSON: QueryPerson,
    SET_GRANTOR_LIMIT: SetGrantorLimit,
    PAUSE_BINDING: PauseBinding,
    RESUME_BINDING: ResumeBinding,
    DISPUTE_PAYMENT: DisputePayment,
    QUERY_DISPUTES: QueryDisputes,
}

# The only amount of a binding command is SetGrantorLimit's monthly_limit.
_REASON_BY_ERROR = {"invalid_id_number": Reason.INVALID_ID_NUMBER, "invalid_phone": Reason.INVALID_PHONE,
                    "invalid_amount": Reason.INVALID_LIMIT}


def reason_for(error: ValidationError) -> Reason:
    """The closest reason code for a command that failed validation: a specific one only when
    every problem is of that kind, else INVALID_COMMAND."""
    reasons = {_REASON_BY_ERROR.get(e["type"], Reason.INVALID_COMMAND) for e in error.errors()}
    return reasons.pop() if len(reasons) == 1 else Reason.INVALID_COMMAND


def describe(error: ValidationError) -> str:
    """Where the command is wrong, without echoing its values (they may be ID numbers)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['type']}" for e in error.errors()[:5])


class BindingCreated(BaseModel):
    command_id: str
    binding_id: str
    grantor_id: str
    beneficiary_id: str
    relation: str
    payment_order: int
    start_date: date
    end_date: date
    grantor_region: str
    beneficiary_region: str
    channel: str


class BindingRevoked(BaseModel):
    command_id: str
    binding_id: str
    grantor_id: str
    beneficiary_id: str
    status: Literal["revoked"] = "revoked"
    start_date: date
    end_date: date


class OrderChange(BaseModel):
    binding_id: str
    grantor_id: str
    payment_order: int
    previous_order: int


class PaymentOrderChanged(BaseModel):
    command_id: str
    binding_id: str
    beneficiary_id: str
    payment_order: int
    previous_order: int
    changes: list[OrderChange] = Field(description="Every binding whose order moved; two when orders were swapped.")


class BindingRejected(BaseModel):
    command_id: str
    reason_code: Reason
    message_zh: str
    message_en: str


class ListedBinding(BaseModel):
    binding_id: str
    role: Literal["grantor", "beneficiary"] = Field(description="The asking person's role: 授权者 or 使用者.")
    counterpart_id: str = Field(description="The other person's ID number, masked.")
    relation: str
    payment_order: int
    start_date: date
    end_date: date
    status: str
    grantor_region: str
    beneficiary_region: str
    monthly_limit: Yuan | None = Field(None, description="Added: the grantor's monthly limit; absent: none.")
    paused: bool = Field(False, description="Added: paused by the grantor or by a dispute (pays nothing).")


class BindingsListed(BaseModel):
    command_id: str
    person_id: str = Field(description="Masked.")
    bindings: list[ListedBinding]


class CommandOutcomeUnknown(BaseModel):
    """The answer to QueryCommandOutcome when no outcome is recorded for the command: not
    received (yet), still being decided, its record expired (BINDING_OUTCOME_TTL_DAYS), or met a
    platform defect (answered PLATFORM_ERROR, never recorded)."""

    command_id: str = Field(description="The command asked about.")


class PersonFound(BaseModel):
    """The answer to QueryPerson (on reply_to only)."""

    command_id: str = Field(description="The query's event_id.")
    person_id: str = Field(description="Masked.")
    registered: bool = Field(description="Whether a PersonRegistered for this person has been read.")
    region: str | None = Field(None, description="The registering bureau's region; null when not registered.")
    scheme: Literal["employee", "resident"] | None = None
    name_matches: bool | None = Field(
        None, description="Whether the name sent is the registered one; null when no name was sent or the person "
                          "is not registered.")


class GrantorLimitSet(BaseModel):
    command_id: str
    binding_id: str
    grantor_id: str
    beneficiary_id: str
    monthly_limit: Yuan | None = Field(None, description="The new limit; absent: no limit.")
    previous_limit: Yuan | None = Field(None, description="The limit before; absent: there was none.")


class BindingPaused(BaseModel):
    command_id: str = Field(description="PauseBinding's event_id, or the DisputePayment's that paused it.")
    binding_id: str
    grantor_id: str
    beneficiary_id: str
    cause: Literal["grantor", "dispute"]
    dispute_id: str | None = Field(None, description="With cause dispute: the dispute that paused it.")


class BindingResumed(BaseModel):
    command_id: str
    binding_id: str
    grantor_id: str
    beneficiary_id: str


class DisputeOpened(BaseModel):
    command_id: str
    dispute_id: str = Field(description="Derived from the grantor and the reference: one dispute per payment.")
    reference: str
    binding_id: str
    grantor_id: str
    beneficiary_id: str
    charge_id: str
    institution_code: str
    amount: Yuan = Field(description=(
        "What the grantor's account paid of the charge and refunds have not returned (issue 21: still out)."))
    channel: str
    opened_at: datetime
    grantor_region: str = Field(description="The grantor's region: its bureau decides (DisputeDecided).")


class ListedDispute(BaseModel):
    dispute_id: str
    reference: str
    binding_id: str
    beneficiary_id: str = Field(description="Masked.")
    charge_id: str
    institution_code: str
    amount: Yuan
    status: Literal["open", "upheld", "dismissed"]
    opened_at: datetime
    decided_at: datetime | None = None


class DisputesListed(BaseModel):
    command_id: str
    person_id: str = Field(description="Masked.")
    disputes: list[ListedDispute] = Field(description="Newest first, at most 100.")


class DisputeResolved(BaseModel):
    dispute_id: str
    decision: Literal["upheld", "dismissed"]
    binding_id: str
    grantor_id: str
    beneficiary_id: str
    charge_id: str
    institution_code: str
    amount: Yuan = Field(description=(
        "What was still out of the payment when decided (refunds since it opened deducted). Upheld: settlement "
        "gives the grantor line back, net of every refund of it, as PaymentReversed (issue 21)."))
    decided_at: datetime


class DisputeFraudSuspected(BaseModel):
    """FraudSuspected of kind grantor_dispute, on settlement.results (key charge_id): the grantor
    says the payment was not authorised. code_holder_id, presented_via and institution_region
    (an identity mismatch's fields) are absent."""

    charge_id: str
    patient_id: str = Field(description="The beneficiary the charge was for.")
    institution_code: str
    kind: Literal["grantor_dispute"] = "grantor_dispute"
    dispute_id: str
    grantor_id: str
    binding_id: str
    amount: Yuan
