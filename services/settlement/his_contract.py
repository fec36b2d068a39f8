"""Reconciliation with the HIS (对账, issue 15): what a hospital's HIS sends on
`his.reconciliation` (key: institution code) and what the platform answers on
`settlement.results` (key: institution code).

- `InstitutionDailyTotals` (对总账): the day's totals as the HIS booked them.
- `InstitutionDailyDetail` (对明细账): every charge and refund of the day, in parts
  (`part` of `parts`, at most 100 parts of at most 1,000 charges and 1,000 refunds each).
- `InstitutionReconciled`: what was compared and every difference, with its charge (and refund) ids.
- `InstitutionReconciliationRejected`: a message that was read but cannot be reconciled, with a reason.
- `AccountDriftDetected` (bureau.postings.<region>, key region): 对账 per account, a snapshot against the
  cache.

The day is the China date of the platform's `settled_at` (结算日期) of each ChargeSettled and
RefundSettled. Inputs are strict: amounts are yuan strings, counts JSON integers, the day a
YYYY-MM-DD string; nothing is coerced.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.money import Fen, SignedYuan, Yuan
from shared.signing import REFUSAL_TEXTS
from shared.wire import Count, Day, Text
from services.settlement.contract import ChargeId, InstitutionCode

INSTITUTION_DAILY_TOTALS = "InstitutionDailyTotals"
INSTITUTION_DAILY_DETAIL = "InstitutionDailyDetail"
RECONCILIATION_TYPES = frozenset({INSTITUTION_DAILY_TOTALS, INSTITUTION_DAILY_DETAIL})
INSTITUTION_RECONCILED = "InstitutionReconciled"
INSTITUTION_RECONCILIATION_REJECTED = "InstitutionReconciliationRejected"

MAX_PARTS = 100
MAX_ROWS_PER_PART = 1000
# An answer lists at most this many differences a message (some 250 kB), in as many messages as it needs.
MAX_DIFFERENCES_PER_MESSAGE = 1000


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class InstitutionDailyTotals(_In):
    """对总账: what the HIS settled through the platform on `day`."""

    institution_code: InstitutionCode
    day: Day
    charge_count: Count
    individual_borne_total: Yuan
    own_total: Yuan = Field(description="Paid from the patients' own personal accounts.")
    family_total: Yuan = Field(description="Paid from grantors' accounts (家庭共济), as one aggregate.")
    cash_total: Yuan
    refund_count: Count
    refund_total: Yuan


class DetailCharge(_In):
    charge_id: ChargeId
    individual_borne: Yuan
    own: Yuan
    family: Yuan
    cash: Yuan


class DetailRefund(_In):
    charge_id: ChargeId
    refund_id: ChargeId
    amount: Yuan


class InstitutionDailyDetail(_In):
    """对明细账: one part of the day's detail; reconciled once every part of the same
    (institution_code, day, report_id) is in."""

    institution_code: InstitutionCode
    day: Day
    part: int = Field(1, strict=True, ge=1, le=MAX_PARTS, description="This part's number, from 1.")
    parts: int = Field(1, strict=True, ge=1, le=MAX_PARTS, description="How many parts the detail has.")
    charges: list[DetailCharge] = Field(default_factory=list, max_length=MAX_ROWS_PER_PART)
    refunds: list[DetailRefund] = Field(default_factory=list, max_length=MAX_ROWS_PER_PART)
    report_id: Text = Field("", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$", description=(
        "Names one detail of the institution-day when the HIS sends more than one (a correction); empty by "
        "default. Parts of different report_ids are never mixed."))

    @model_validator(mode="after")
    def _part_within_parts(self) -> InstitutionDailyDetail:
        if self.part > self.parts:
            raise ValueError("part is greater than parts")
        return self


class LedgerTotals(BaseModel):
    charge_count: int
    individual_borne_total: Yuan
    own_total: Yuan
    family_total: Yuan
    cash_total: Yuan
    refund_count: int
    refund_total: Yuan


class ReversalRow(BaseModel):
    charge_id: str
    dispute_id: str
    amount: Yuan


class LedgerReversals(BaseModel):
    """Issue 21: upheld disputes the platform reversed that day (PaymentReversed, by reversed_at):
    amounts the institution owes the fund. Not part of the comparison (the HIS books no reversal)."""

    reversal_count: int = 0
    reversal_total: Yuan = Field(default_factory=lambda: Fen(0))
    reversals: list[ReversalRow] = Field(default_factory=list, description=(
        "Detail level: each reversal (charge_id, dispute_id, amount); empty at totals level."))


class ChargeAmounts(BaseModel):
    individual_borne: Yuan
    own: Yuan
    family: Yuan
    cash: Yuan


class RefundAmount(BaseModel):
    amount: Yuan


class InstitutionDifference(BaseModel):
    kind: Literal["missing_on_platform", "missing_at_institution", "amount_differs"]
    charge_id: str
    refund_id: str | None = Field(None, description="Set for a refund's difference; absent for a charge's.")
    platform: ChargeAmounts | RefundAmount | None = Field(None, description="Absent when missing on the platform.")
    institution: ChargeAmounts | RefundAmount | None = Field(
        None, description="Absent when missing at the institution.")


class InstitutionReconciled(BaseModel):
    """对账 result of one institution and day."""

    institution_code: str
    day: date
    level: Literal["totals", "detail"]
    result: Literal["balanced", "differs"]
    report_for: str = Field(description="event_id of the InstitutionDailyTotals, or of the detail's part 1.")
    report_id: str = Field("", description="The detail's report_id (detail level).")
    parts: int = Field(1, description="How many parts the detail came in (detail level).")
    platform_totals: LedgerTotals = Field(description="What the platform settled for the institution that day.")
    institution_totals: LedgerTotals = Field(description="What the HIS reported (detail: summed from its rows).")
    detail_requested: bool = Field(description="Totals that differ: the platform asks for InstitutionDailyDetail.")
    owed_to_fund: LedgerReversals = Field(default_factory=LedgerReversals, description=(
        "Added (issue 21): upheld disputes reversed that day, owed by the institution to the fund."))
    differences: list[InstitutionDifference] = Field(description=(
        "Every charge and refund the two sides do not agree on (detail level; empty at totals level), in "
        "charge id order, then refunds; at most 1,000 a message (see answer_part)."))
    differences_total: int = Field(description="How many differences the whole answer lists.")
    answer_part: int = Field(1, description=(
        "This message's place in the answer, from 1: a detail with more than 1,000 differences is answered in "
        "several messages, the same but for their differences (the first keeps the answer's event_id)."))
    answer_parts: int = Field(1, description="How many messages the answer has.")
    compared_at: str = Field(description="The platform's clock when it compared.")
    day_closed: bool = Field(description=(
        "False when the day (China time) was still in progress when compared: the answer covers what was "
        "settled until compared_at."))
    final: bool = Field(description=(
        "Always true: the platform's ledger is written as it settles, so it is never behind. (Earlier "
        "releases read it back from their own results and answered false when it had not caught up in "
        "time.) An answer is recorded and answered again the same on a redelivery."))


class ReconciliationReason(StrEnum):
    INVALID_RECONCILIATION = "INVALID_RECONCILIATION"
    UNKNOWN_INSTITUTION = "UNKNOWN_INSTITUTION"
    DAY_NOT_KEPT = "DAY_NOT_KEPT"
    PARTS_INCONSISTENT = "PARTS_INCONSISTENT"
    DUPLICATE_ROW = "DUPLICATE_ROW"
    DUPLICATE_REPORT_CONFLICT = "DUPLICATE_REPORT_CONFLICT"  # issue 21: an event_id reused with another body
    PLATFORM_ERROR = "PLATFORM_ERROR"
    # contract version 3: the report does not prove who sent it, or its signer is another institution
    UNSIGNED = "UNSIGNED"
    UNKNOWN_SIGNER = "UNKNOWN_SIGNER"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    NOT_SIGNERS = "NOT_SIGNERS"


MESSAGES = {
    ReconciliationReason.INVALID_RECONCILIATION: (
        "对账消息字段缺失或格式错误", "a field of the reconciliation message is missing or of the wrong type"),
    ReconciliationReason.UNKNOWN_INSTITUTION: (
        "非本平台登记的定点医药机构", "the institution is not a designated institution known to the platform"),
    ReconciliationReason.DAY_NOT_KEPT: (
        "对账日期超出平台保存期限或尚未到来", "the day is older than the platform keeps its ledger, or in the future"),
    ReconciliationReason.PARTS_INCONSISTENT: (
        "明细各分包的总包数不一致", "the detail's parts disagree on how many parts there are"),
    ReconciliationReason.DUPLICATE_ROW: (
        "明细中同一笔结算或退费出现多次", "the detail lists one charge or refund more than once"),
    ReconciliationReason.DUPLICATE_REPORT_CONFLICT: (
        "同一 event_id 的对账报告内容不一致；更正的报告请使用新的 event_id",
        "a report with this event_id was received with another body; send a corrected report with a new event_id"),
    ReconciliationReason.PLATFORM_ERROR: (
        "平台内部错误，请稍后重发", "platform error; send the message again later"),
    **{ReconciliationReason(code.value): texts for code, texts in REFUSAL_TEXTS.items()},
}


class InstitutionReconciliationRejected(BaseModel):
    institution_code: str | None = Field(None, description="Absent only when the message named none valid.")
    day: date | None = None
    source_event_id: str = Field(description="event_id of the message refused.")
    reason_code: ReconciliationReason
    message_zh: str
    message_en: str


# -- 对账 per account (bureau.postings.<region>, key region): the drift check of a BalanceSnapshot --
ACCOUNT_DRIFT_DETECTED = "AccountDriftDetected"


class AccountDriftDetected(BaseModel):
    """A BalanceSnapshot found the platform's balance of an account off by more than the platform's
    postings after the snapshot's watermark explain. The snapshot is applied all the same (the
    bureau's book is authoritative); this tells the bureau and the operators by how much it was off."""

    person_id: str
    region: str
    bureau_seq: int = Field(description="The snapshot's bureau_seq.")
    snapshot_balance: SignedYuan = Field(description="The snapshot's balance (may be negative).")
    in_flight: SignedYuan = Field(description=(
        "Signed sum of the platform's postings after postings_applied_through (credits positive, debits "
        "negative): what the snapshot does not include yet."))
    platform_balance: SignedYuan = Field(description="The platform's balance of the account just before the snapshot.")
    drift: SignedYuan = Field(description="platform_balance - (snapshot_balance + in_flight), signed.")
