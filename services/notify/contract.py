"""The notify service's messages: what it reads off `settlement.results`, `binding.events` and
`sms.uplink`, read strictly (strings stay strings, ids are real ID numbers), and what it publishes
on `notify.deliveries` and (a grantor's SMS reply) `binding.commands` (contract.md). Never a full
name, ID number or phone in what it publishes: the phone is masked (138****5678)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from shared.identity import IdNumber, Mobile
from shared.money import SignedYuan, Yuan
from shared.references import REFERENCE_PATTERN
from shared.wire import Day, Text, Time

SMS_SENT = "SmsSent"
SMS_FAILED = "SmsFailed"
SETTLEMENT_TYPES = frozenset({"ChargeSettled", "ChargeRejected", "RefundSettled", "FraudSuspected"})
# Also on settlement.results, and nothing to tell anyone by SMS: quotes and their releases
# (预结算), the answers to a HIS's reconciliation (对账), and the reversal of an upheld dispute (the
# grantor is told by DisputeResolved on binding.events). Read and passed over, never dead-lettered.
SETTLEMENT_SILENT_TYPES = frozenset({"ChargeQuoted", "ChargeQuoteReleased", "InstitutionReconciled",
                                     "InstitutionReconciliationRejected", "PaymentReversed"})
BINDING_PAUSED, BINDING_RESUMED, GRANTOR_LIMIT_SET = "BindingPaused", "BindingResumed", "GrantorLimitSet"
DISPUTE_OPENED, DISPUTE_RESOLVED = "DisputeOpened", "DisputeResolved"
BINDING_TYPES = frozenset({"BindingCreated", "BindingRevoked", "PaymentOrderChanged", "BindingRejected",
                           BINDING_PAUSED, BINDING_RESUMED, GRANTOR_LIMIT_SET, DISPUTE_OPENED, DISPUTE_RESOLVED})
SMS_REPLY_RECEIVED = "SmsReplyReceived"
UPLINK_TYPES = frozenset({SMS_REPLY_RECEIVED})
DISPUTE_PAYMENT = "DisputePayment"

# SmsFailed reasons (added to the contract's field `reason`; `detail` says more).
NO_PHONE = "no_phone"                    # the recipient has no phone, or was never registered in time
OUTCOME_UNKNOWN = "outcome_unknown"      # the gateway may have sent it: never sent again
GATEWAY_REFUSED = "gateway_refused"      # the gateway answered that it will not send it
GATEWAY_UNAVAILABLE = "gateway_unavailable"  # every attempt failed before the gateway took it


# -- read ------------------------------------------------------------------------------------------
Id = Annotated[str, Strict(), Field(min_length=1, max_length=64)]
Order = Annotated[int, Strict(), Field(ge=1, le=2)]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SettledLine(_In):
    source: Literal["own", "grantor", "cash"]
    person_id: IdNumber | None = None
    amount: Yuan
    # Signed: a balance the bureau's own spending drove below zero is never clamped (contract v2), and
    # the SMS of a payment or refund that left it there is the one most worth sending.
    balance_after: SignedYuan | None = None
    # The payment's short reference (grantor lines, issue 15). Only shown when it has the
    # reference's shape; otherwise notify derives it (domain/notices.py): an odd one costs the SMS
    # nothing, as an odd institution code costs it only the institution's name.
    reference: Text | None = Field(None, max_length=16)

    @model_validator(mode="after")
    def _a_grantor_line_names_the_account(self) -> SettledLine:
        if self.source == "grantor" and (self.person_id is None or self.balance_after is None):
            raise ValueError("a grantor line carries person_id and balance_after")
        return self


class ChargeSettledIn(_In):
    charge_id: Id
    patient_id: IdNumber
    # Only looked up in notify's projection of registered institutions, never shown as sent: an
    # odd code costs the SMS its institution's name (neutral wording), not the SMS itself.
    institution_code: Text | None = Field(None, max_length=64)
    lines: list[SettledLine] = Field(max_length=16)
    settled_at: Time
    charged_at: Time | None = None


class RefundSettledIn(_In):
    charge_id: Id
    refund_id: Id
    patient_id: IdNumber
    institution_code: Text | None = Field(None, max_length=64)
    lines: list[SettledLine] = Field(max_length=16)
    settled_at: Time


class BindingCreatedIn(_In):
    binding_id: Id
    grantor_id: IdNumber
    beneficiary_id: IdNumber
    relation: Text = Field(max_length=32)
    payment_order: Order
    start_date: Day
    end_date: Day


class BindingRevokedIn(_In):
    binding_id: Id
    grantor_id: IdNumber
    beneficiary_id: IdNumber
    end_date: Day | None = None  # finds the binding in the ending-soon projection (binding always sends it)


class OrderChangeIn(_In):
    binding_id: Id
    grantor_id: IdNumber
    payment_order: Order
    previous_order: Order


class PaymentOrderChangedIn(_In):
    binding_id: Id
    beneficiary_id: IdNumber
    changes: list[OrderChangeIn] = Field(max_length=4)


class _BindingChange(_In):
    binding_id: Id
    grantor_id: IdNumber
    beneficiary_id: IdNumber


class BindingPausedIn(_BindingChange):
    cause: Literal["grantor", "dispute"]
    dispute_id: Id | None = None


class BindingResumedIn(_BindingChange):
    pass


class GrantorLimitSetIn(_BindingChange):
    monthly_limit: Yuan | None = None   # null: no limit any more
    previous_limit: Yuan | None = None


Reference = Annotated[str, Strict(), Field(pattern=REFERENCE_PATTERN)]


class DisputeOpenedIn(_BindingChange):
    dispute_id: Id
    reference: Reference
    charge_id: Id
    institution_code: Text = Field(max_length=64)
    amount: Yuan


class DisputeResolvedIn(_BindingChange):
    dispute_id: Id
    decision: Literal["upheld", "dismissed"]
    charge_id: Id
    institution_code: Text = Field(max_length=64)
    amount: Yuan


# The events that call for an SMS; the others (fraud reports, rejections) are only acknowledged,
# except a rejection of a dispute notify asked for an SMS reply (usecases/notices.py, `Notices._refused`).
READ: dict[str, type[BaseModel]] = {
    "ChargeSettled": ChargeSettledIn, "RefundSettled": RefundSettledIn, "BindingCreated": BindingCreatedIn,
    "BindingRevoked": BindingRevokedIn, "PaymentOrderChanged": PaymentOrderChangedIn,
    BINDING_PAUSED: BindingPausedIn, BINDING_RESUMED: BindingResumedIn, GRANTOR_LIMIT_SET: GrantorLimitSetIn,
    DISPUTE_OPENED: DisputeOpenedIn, DISPUTE_RESOLVED: DisputeResolvedIn,
}


class SmsReplyReceived(BaseModel):
    """A grantor's SMS reply, put on `sms.uplink` by the gateway from the provider's callback (key
    message_id). Read strictly: every field a JSON string, bounded."""

    model_config = ConfigDict(extra="ignore")

    message_id: Annotated[Text, Field(min_length=1, max_length=64, description="The provider's id of the reply.")]
    phone: Mobile
    text: Annotated[Text, Field(max_length=160)]
    received_at: Time


# -- published -------------------------------------------------------------------------------------
class _Delivery(BaseModel):
    message_id: str
    source_event_id: str
    source_event_type: str
    charge_id: str | None = None
    binding_id: str | None = None
    recipient_role: Literal["grantor", "beneficiary"]
    phone: str
    template: str
    segments: int
    provider: str
    sent_at: str


class DisputePayment(BaseModel):
    """What notify asks of the binding service on `binding.commands` for a reply it understood
    (key: the reference; event id derived from the reply's message_id and the person)."""

    reference: str = Field(description="The payment's 8-character reference, as read from the reply.")
    requested_by: str = Field(description="The person whose registered phone sent the reply.")
    channel: Literal["sms"] = "sms"


class SmsSent(_Delivery):
    provider_message_id: str


class SmsFailed(_Delivery):
    reason: str = Field(description="no_phone, outcome_unknown (never resent), gateway_refused or "
                                    "gateway_unavailable.")
    attempts: int
    detail: str | None = Field(None, description="Added: the gateway's code or status, when it gave one.")
