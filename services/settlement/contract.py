"""The settlement service's messages (contract.md): charges and refunds from the HIS on
`his.charges`, results on `settlement.results`, postings for the bureaus on `bureau.postings.<region>`
(contract version 3: one topic per region, signed by the platform)."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from shared.envelope import Envelope
from shared.identity import IdNumber
from shared.institutions import INSTITUTION_CODE_PATTERN
from shared.money import SignedYuan, Yuan, format_yuan
from shared.regions import RegionCode
from shared.wire import Day, Text, Time
from services.settlement.domain.reasons import Reason

CHARGE_SUBMITTED = "ChargeSubmitted"
CHARGE_REFUNDED = "ChargeRefunded"
CHARGE_QUOTE_REQUESTED = "ChargeQuoteRequested"  # added (issue 15): 预结算, a quote with a hold
CHARGE_QUOTE_CANCELLED = "ChargeQuoteCancelled"  # added (issue 15): release a quote's hold
CHARGE_TYPES = frozenset({CHARGE_SUBMITTED, CHARGE_REFUNDED, CHARGE_QUOTE_REQUESTED, CHARGE_QUOTE_CANCELLED})
CHARGE_QUOTED = "ChargeQuoted"
CHARGE_QUOTE_RELEASED = "ChargeQuoteReleased"
CHARGE_SETTLED = "ChargeSettled"
CHARGE_REJECTED = "ChargeRejected"
REFUND_SETTLED = "RefundSettled"
PAYMENT_REVERSED = "PaymentReversed"  # added (issue 21): an upheld dispute gives the grantor line back
FRAUD_SUSPECTED = "FraudSuspected"
POSTING = "Posting"
QUERY_CONSUMPTION = "QueryConsumption"  # added: 家庭共济消费查询, on settlement.queries
CONSUMPTION_LISTED = "ConsumptionListed"
QUERY_ACCOUNT = "QueryAccount"  # added: a person's account as a charge would find it, on settlement.queries
ACCOUNT_FOUND = "AccountFound"
QUERY_TYPES = frozenset({QUERY_CONSUMPTION, QUERY_ACCOUNT})
RECONCILIATION_REPORT = "ReconciliationReport"  # added: 对账 result, on bureau.postings.<region>

# Charge and refund ids go into Redis keys and derived ids (posting ids join them with ':'), so
# they are bounded to an alphabet without ':' or anything a key or a log line would mind.
CHARGE_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
ChargeId = Annotated[Text, Field(min_length=1, max_length=64, pattern=CHARGE_ID_PATTERN)]
InstitutionCode = Annotated[Text, Field(pattern=INSTITUTION_CODE_PATTERN)]


# pydantic's own JSON form of a time (an offset of zero written Z), for `_Charge.canonical`
_JSON_TIME = TypeAdapter(AwareDatetime)


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    def digest(self) -> str:
        """The body's fingerprint: a resent charge with the same body is the same charge."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class _Charge(_In):
    charge_id: ChargeId
    institution_code: InstitutionCode
    institution_region: RegionCode
    patient_id: IdNumber
    patient_name: Text = Field(min_length=1, max_length=64)
    code_holder_id: IdNumber
    presented_via: Literal["own_device", "family_account"]
    visit_kind: Literal["outpatient", "inpatient", "pharmacy"]
    total: Yuan
    fund_paid: Yuan
    individual_borne: Yuan
    charged_at: Time

    def digest(self) -> str:
        """The charge's fingerprint, without the quote it names: a quote and its charge share it."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:32]

    def canonical(self) -> str:
        """What the fingerprint is taken of. Stored with every settled charge, so its bytes never
        change: the JSON of `self.model_dump(mode="json", exclude={"quote_id"})` with sorted keys
        (`serialised`, which tests/unit/test_settlement_contract.py holds it to, byte for byte, for
        every kind of charge). Built here field by field in that order, for every charge read, at
        about a third of the serialiser's cost."""
        v = self.__dict__
        return json.dumps({
            "charge_id": v["charge_id"], "charged_at": _JSON_TIME.dump_python(v["charged_at"], mode="json"),
            "code_holder_id": v["code_holder_id"], "fund_paid": format_yuan(v["fund_paid"]),
            "individual_borne": format_yuan(v["individual_borne"]), "institution_code": v["institution_code"],
            "institution_region": v["institution_region"], "patient_id": v["patient_id"],
            "patient_name": v["patient_name"], "presented_via": v["presented_via"], "total": format_yuan(v["total"]),
            "visit_kind": v["visit_kind"]}, separators=(",", ":"))

    def serialised(self) -> str:
        """`canonical` by pydantic's serialiser: what it must equal."""
        return json.dumps(self.model_dump(mode="json", exclude={"quote_id"}), sort_keys=True, separators=(",", ":"))


class ChargeSubmitted(_Charge):
    quote_id: ChargeId | None = Field(None, description=(
        "Added (issue 15): the ChargeQuoted this charge settles; it posts exactly the held split. Without it, "
        "a live quote of the same charge is posted as well."))


class ChargeQuoteRequested(_Charge):
    """预结算: exactly ChargeSubmitted's fields; answered ChargeQuoted (the split, held)."""


class ChargeQuoteCancelled(_In):
    institution_code: InstitutionCode
    charge_id: ChargeId
    quote_id: ChargeId


RefundPayer = Literal["own", "grantor_1", "grantor_2", "cash"]


class RefundLine(_In):
    payer: RefundPayer = Field(description="Whose line of the charge: the own account, the grantor of payment "
                                           "order 1 or 2, or cash.")
    amount: Yuan


class ChargeRefunded(_In):
    charge_id: ChargeId
    institution_code: InstitutionCode = Field(description="Contract version 2: the charge's institution.")
    refund_id: ChargeId
    amount: Yuan
    refunded_at: Time
    lines: list[RefundLine] | None = Field(None, min_length=1, max_length=4, description=(
        "Added (issue 21): the payer lines this refund returns, each payer at most once, summing to `amount`; "
        "a line more than that payer has left of the charge (or a payer the charge has not) is refused "
        "REFUND_EXCEEDS_PAID. Without it: last paid, first refunded (cash, grantor 2, grantor 1, own)."))

    @model_validator(mode="after")
    def _lines_sum_to_amount(self) -> ChargeRefunded:
        if self.lines is not None:
            if len({x.payer for x in self.lines}) != len(self.lines):
                raise PydanticCustomError("duplicate_payer", "each payer at most once in lines")
            if sum(x.amount for x in self.lines) != self.amount:
                raise PydanticCustomError("lines_not_amount", "lines do not sum to amount")
        return self

    def digest(self) -> str:
        """As every message's, with `lines` left out when absent (refunds recorded before lines existed
        keep their fingerprint)."""
        canonical = json.dumps(self.model_dump(mode="json", exclude={"lines"} if self.lines is None else None),
                               sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def named_lines(self) -> str:
        """The lines as the refund Function reads them: "payer:fen,..." ('' when none are named)."""
        return ",".join(f"{x.payer}:{int(x.amount)}" for x in self.lines or ())


class _ChargeSubmittedMessage(Envelope):
    event_type: Literal["ChargeSubmitted"]
    payload: ChargeSubmitted


class _ChargeRefundedMessage(Envelope):
    event_type: Literal["ChargeRefunded"]
    payload: ChargeRefunded


class _ChargeQuoteRequestedMessage(Envelope):
    event_type: Literal["ChargeQuoteRequested"]
    payload: ChargeQuoteRequested


class _ChargeQuoteCancelledMessage(Envelope):
    event_type: Literal["ChargeQuoteCancelled"]
    payload: ChargeQuoteCancelled


ChargeMessage = (_ChargeSubmittedMessage | _ChargeRefundedMessage | _ChargeQuoteRequestedMessage
                 | _ChargeQuoteCancelledMessage)
# A his.charges message read and validated in one pass, straight from its bytes (pydantic-core):
# the envelope and the payload its event_type names. Anything it refuses is read again step by
# step (shared.envelope.read, then each model), which tells a dead letter from a refusal and
# names the reason; that reading is the contract, this one only its fast path for valid messages.
CHARGE_MESSAGE: TypeAdapter[ChargeMessage] = TypeAdapter(
    Annotated[ChargeMessage, Field(discriminator="event_type")])


def reason_for(error: ValidationError) -> Reason:
    """INVALID_AMOUNT when only amounts are wrong; INVALID_CHARGE for anything else."""
    kinds = {e["type"] for e in error.errors()}
    return Reason.INVALID_AMOUNT if kinds == {"invalid_amount"} else Reason.INVALID_CHARGE


def describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['type']}" for e in error.errors()[:5])


class SettledLine(BaseModel):
    source: Literal["own", "grantor", "cash"]
    person_id: str | None = None
    region: str | None = None
    payment_order: int | None = None
    amount: Yuan
    balance_after: SignedYuan | None = None
    binding_id: str | None = Field(None, description="Added (issue 15), grantor lines: the binding that paid.")
    reference: str | None = Field(None, description=(
        "Added (issue 15), grantor lines: the payment's reference (8 characters, shared/references.py), the one "
        "the grantor's SMS carries and a dispute names."))


class ChargeSettled(BaseModel):
    charge_id: str
    patient_id: str
    individual_borne: Yuan
    lines: list[SettledLine]
    settled_at: str
    institution_code: str = Field(description="Added: where the charge was made (for the grantor's SMS).")
    charged_at: str = Field(description="Added: when the charge was made, as the HIS sent it.")


class RefundSettled(BaseModel):
    charge_id: str
    refund_id: str
    institution_code: str = Field(description="Contract version 2: the charge's institution.")
    patient_id: str = Field(description="Added: whose charge is refunded.")
    amount: Yuan
    lines: list[SettledLine]
    settled_at: str = Field(description="When the platform applied the refund (its clock, not the HIS's).")


class PaymentReversed(BaseModel):
    """Issue 21: an upheld dispute (非本人授权, DisputeResolved upheld) gives the disputed grantor line
    back to the grantor, net of what refunds had returned of it, as the platform's own movement
    (one credit Posting with its account_seq). The institution owes the amount to the fund
    (its daily ledger shows it, InstitutionReconciled `reversals`); no later refund can credit
    this line again. One per dispute: a redelivered decision republishes the same bytes."""

    charge_id: str
    institution_code: str
    dispute_id: str
    patient_id: str = Field(description="The beneficiary the charge was for.")
    grantor_id: str
    binding_id: str
    line_paid: Yuan = Field(description="What the grantor line paid of the charge.")
    refunded_before: Yuan = Field(description="What refunds had returned of that line before the reversal.")
    amount: Yuan = Field(description="Given back now: line_paid - refunded_before (0.00: nothing was left out).")
    lines: list[SettledLine] = Field(description="The credit line (none when the amount is 0.00).")
    reversed_at: str = Field(description="When the platform applied the reversal (its clock).")


class ChargeRejected(BaseModel):
    charge_id: str
    refund_id: str | None = None
    institution_code: str | None = Field(None, description=(
        "Contract version 2: the institution named by the message; absent only when it named none valid."))
    reason_code: Reason
    message_zh: str
    message_en: str
    source_event_id: str | None = Field(None, description=(
        "Added: the event_id of the message refused, so a sender can match the refusal of a message "
        "that carried no usable charge_id."))


class ChargeQuoted(BaseModel):
    """预结算 (issue 15): the whole split of a ChargeQuoteRequested, held as one unit until held_until."""

    quote_id: str = Field(description=(
        "Derived from (institution_code, charge_id): one quote per charge at a time. A quote cancelled or "
        "expired may be requested again with new amounts (issue 21): that quote's id is the first one's "
        "followed by .2, .3, ..."))
    charge_id: str
    institution_code: str
    patient_id: str
    individual_borne: Yuan
    lines: list[SettledLine] = Field(description=(
        "As ChargeSettled's lines; balance_after is what is left to spend once this quote holds its amount."))
    quoted_at: str
    held_until: str


class ChargeQuoteReleased(BaseModel):
    """Every hold of a quote's split released together (issue 15)."""

    quote_id: str
    charge_id: str
    institution_code: str
    reason: Literal["cancelled", "expired", "binding_paused", "binding_revoked"]
    lines: list[SettledLine] = Field(description="The split that was held, as ChargeQuoted told it.")
    released_at: str


class FraudSuspected(BaseModel):
    charge_id: str
    patient_id: str
    code_holder_id: str | None = Field(None, description="Null for a grantor's dispute.")
    institution_code: str
    institution_region: str | None = Field(None, description="Null for a grantor's dispute.")
    presented_via: str | None = Field(None, description="Null for a grantor's dispute.")
    kind: Literal["identity_mismatch", "grantor_dispute"] = Field("identity_mismatch", description=(
        "Added (issue 15): identity_mismatch (settlement: another person's code) or grantor_dispute (binding: "
        "the grantor says the payment was not authorised, 非本人授权)."))
    dispute_id: str | None = Field(None, description="grantor_dispute only.")
    grantor_id: str | None = Field(None, description="grantor_dispute only.")
    binding_id: str | None = Field(None, description="grantor_dispute only.")
    amount: Yuan | None = Field(None, description="grantor_dispute only: what the grantor's account paid.")


class Posting(BaseModel):
    posting_id: str = Field(description=(
        "P:{institution}:{charge}:{line} for a charge's debit, R:{institution}:{charge}:{refund}:{line} "
        "for a refund's credit, V:{institution}:{charge}:{dispute}:{line} for an upheld dispute's credit; no part can hold ':', so ids never collide."))
    region: str
    person_id: str
    direction: Literal["debit", "credit"]
    amount: Yuan
    charge_id: str
    refund_id: str | None = None
    dispute_id: str | None = Field(None, description=(
        "Added (issue 21): the upheld dispute of a PaymentReversed's credit (posting id "
        "V:{institution}:{charge}:{dispute}:{line})."))
    beneficiary_id: str | None = None
    posted_at: str
    institution_code: str = Field(description="Added: the charge's institution.")
    account_seq: int = Field(description=(
        "Contract version 2: this posting's place in its account's sequence: 1, 2, 3, ... with no gap, "
        "in the order the platform applied its debits and credits to the account."))


class QueryConsumption(_In):
    grantor_id: IdNumber
    date_from: Day
    date_to: Day


class Payment(BaseModel):
    charge_id: str
    institution_code: str
    institution_name: str | None = Field(None, description=(
        "Added: the institution's registered name (as the SMS name it); absent when none is registered."))
    settled_at: str
    paid: Yuan
    refunded: Yuan


class BeneficiarySpending(BaseModel):
    beneficiary_id: str = Field(description="Masked.")
    payments: list[Payment]
    total_paid: Yuan
    total_refunded: Yuan
    binding_id: str | None = Field(None, description="Added (issue 15): the binding by which the grantor pays.")
    monthly_limit: Yuan | None = Field(None, description="Added (issue 15): the binding's monthly limit; null = none.")
    used_this_month: Yuan | None = Field(None, description=(
        "Added (issue 15): paid (and held by live quotes) this calendar month, China time."))
    left_this_month: Yuan | None = Field(None, description="Added (issue 15): what the limit leaves; null = no limit.")
    paused: bool = Field(False, description="Added (issue 15): the grantor paused the binding (it pays nothing).")


class ConsumptionListed(BaseModel):
    command_id: str
    grantor_id: str = Field(description="Masked.")
    date_from: date
    date_to: date
    beneficiaries: list[BeneficiarySpending]
    total_paid: Yuan
    total_refunded: Yuan


class QueryAccount(_In):
    person_id: IdNumber


class AccountFound(BaseModel):
    """The answer to QueryAccount (on reply_to only): the account as the next charge would find it."""

    command_id: str = Field(description="The query's event_id.")
    person_id: str = Field(description="Masked.")
    registered: bool = Field(description="Whether settlement has read a PersonRegistered for this person.")
    region: str | None = None
    scheme: Literal["employee", "resident"] | None = None
    balance: SignedYuan | None = Field(None, description=(
        "The platform's balance of the personal account (the bureau's last balance adjusted by the platform's "
        "later postings; may be negative); null for a resident (no personal account) or an unknown person."))
    held: Yuan | None = Field(None, description=(
        "Added (issue 15): what live quotes (预结算) hold of the balance; a charge may spend balance - held."))


class ReconciliationDifference(BaseModel):
    posting_id: str
    kind: Literal["missing_at_bureau", "unknown_to_platform", "amount_mismatch", "direction_mismatch"]
    platform_direction: str | None = None
    platform_amount: Yuan | None = None
    bureau_direction: str | None = None
    bureau_amount: Yuan | None = None


class ReconciliationReport(BaseModel):
    """对账: the platform's postings to a region's book on a day against the bureau's report."""

    report_for: str = Field(description="event_id of the bureau's DailyPostingsReported (its part 1).")
    report_id: str = Field("", description="The report's id as the bureau named it (empty by default).")
    parts: int = Field(1, description="How many parts the bureau's report came in.")
    region: str
    day: date
    platform_count: int
    bureau_count: int
    matched: int
    platform_net: SignedYuan = Field(description="Credits minus debits the platform posted (may be negative).")
    bureau_net: SignedYuan
    differences: list[ReconciliationDifference]
