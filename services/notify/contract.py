"""The notify service's messages on `notify.deliveries` (contract.md). Never a full name, ID
number or phone: the phone is masked (138****5678)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

SMS_SENT = "SmsSent"
SMS_FAILED = "SmsFailed"
SETTLEMENT_TYPES = frozenset({"ChargeSettled", "ChargeRejected", "RefundSettled", "FraudSuspected"})
BINDING_TYPES = frozenset({"BindingCreated", "BindingRevoked", "PaymentOrderChanged", "BindingRejected"})


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
    reason: str
    attempts: int
