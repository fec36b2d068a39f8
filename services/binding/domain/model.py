"""What a binding is, and what the binding service knows of an insured person."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum


class Relation(StrEnum):
    """What the beneficiary is to the grantor (父母、配偶、子女)."""

    FATHER = "father"
    MOTHER = "mother"
    SPOUSE = "spouse"
    CHILD = "child"


class Scheme(StrEnum):
    EMPLOYEE = "employee"  # 职工基本医保: has a personal account
    RESIDENT = "resident"  # 居民医保: no personal account


class Status(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


@dataclass(frozen=True)
class Insured:
    """A registration from the person's regional bureau. The name is kept only as a digest."""

    person_id: str
    region: str
    scheme: Scheme
    name_digest: str


@dataclass(frozen=True)
class Binding:
    binding_id: str
    grantor_id: str
    beneficiary_id: str
    relation: Relation
    payment_order: int
    start_date: date
    end_date: date
    grantor_region: str
    beneficiary_region: str
    signature_digest: str
    channel: str
    status: Status = Status.ACTIVE
    monthly_limit: int | None = None  # fen per calendar month (China time); None: no limit
    paused: bool = False  # pays nothing while paused (by the grantor, or by a dispute)
    open_disputes: int = 0  # disputes of its payments not yet decided: it cannot be resumed meanwhile

    def is_active_on(self, day: date) -> bool:
        """Still in force on `day` or later: not revoked and not yet ended."""
        return self.status is Status.ACTIVE and self.end_date >= day

    @property
    def is_revoked(self) -> bool:
        return self.status is Status.REVOKED

    def overlaps(self, start: date, end: date) -> bool:
        return self.start_date <= end and start <= self.end_date

    def overlaps_from(self, day: date, other: Binding) -> bool:
        """Whether this binding and `other` are both in force on some day from `day` on: the
        days a rule can still change (a charge is settled by the payer index as it is now)."""
        return max(self.start_date, other.start_date, day) <= min(self.end_date, other.end_date)

    def covers(self, day: date) -> bool:
        return self.start_date <= day <= self.end_date

    def revoked(self) -> Binding:
        return replace(self, status=Status.REVOKED)

    def with_order(self, payment_order: int) -> Binding:
        return replace(self, payment_order=payment_order)


class DisputeStatus(StrEnum):
    OPEN = "open"
    UPHELD = "upheld"  # the bureau found the payment was not the grantor's: refunded through the normal path
    DISMISSED = "dismissed"  # the payment stands; the grantor may resume the binding


@dataclass(frozen=True)
class Payment:
    """A grantor's payment of a charge, as the reference projection keeps it (from ChargeSettled)."""

    grantor_id: str
    reference: str
    beneficiary_id: str
    binding_id: str  # "" when the settled line did not say
    institution_code: str
    charge_id: str
    amount: int  # fen
    charged_on: date
    grantor_region: str


@dataclass(frozen=True)
class Dispute:
    """非本人授权: a grantor says a payment from his or her account was not authorised."""

    dispute_id: str
    grantor_id: str
    reference: str
    binding_id: str
    beneficiary_id: str
    charge_id: str
    institution_code: str
    amount: int  # fen
    channel: str
    opened_at: int  # epoch seconds
    grantor_region: str
    paused_binding: bool  # opening it paused the binding (it was not paused already)
    status: DisputeStatus = DisputeStatus.OPEN
    decided_at: int | None = None  # epoch seconds

    @property
    def is_open(self) -> bool:
        return self.status is DisputeStatus.OPEN
