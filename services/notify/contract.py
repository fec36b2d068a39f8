"""The notify service's messages: what it reads off `settlement.results` and `binding.events`,
read strictly (strings stay strings, ids are real ID numbers), and what it publishes on
`notify.deliveries` (contract.md). Never a full name, ID number or phone in what it publishes:
the phone is masked (138****5678)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from shared.identity import IdNumber
from shared.money import Yuan
from shared.wire import Day, Text, Time

SMS_SENT = "SmsSent"
SMS_FAILED = "SmsFailed"
SETTLEMENT_TYPES = frozenset({"ChargeSettled", "ChargeRejected", "RefundSettled", "FraudSuspected"})
BINDING_TYPES = frozenset({"BindingCreated", "BindingRevoked", "PaymentOrderChanged", "BindingRejected"})

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
    balance_after: Yuan | None = None

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


# The events that call for an SMS; the others (rejections, fraud reports) are only acknowledged.
READ: dict[str, type[BaseModel]] = {
    "ChargeSettled": ChargeSettledIn, "RefundSettled": RefundSettledIn, "BindingCreated": BindingCreatedIn,
    "BindingRevoked": BindingRevokedIn, "PaymentOrderChanged": PaymentOrderChangedIn,
}


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


class SmsSent(_Delivery):
    provider_message_id: str


class SmsFailed(_Delivery):
    reason: str = Field(description="no_phone, outcome_unknown (never resent), gateway_refused or "
                                    "gateway_unavailable.")
    attempts: int
    detail: str | None = Field(None, description="Added: the gateway's code or status, when it gave one.")
