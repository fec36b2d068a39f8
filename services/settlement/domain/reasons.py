"""Why a charge or a refund is refused: the contract's reason codes, in Chinese and English."""

from __future__ import annotations

from enum import StrEnum

from shared.refusal import Refusal
from shared.signing import REFUSAL_TEXTS


class Reason(StrEnum):
    UNKNOWN_PATIENT = "UNKNOWN_PATIENT"
    OUTSIDE_PROVINCE = "OUTSIDE_PROVINCE"
    AMOUNTS_INCONSISTENT = "AMOUNTS_INCONSISTENT"
    INVALID_AMOUNT = "INVALID_AMOUNT"
    DUPLICATE_CHARGE_CONFLICT = "DUPLICATE_CHARGE_CONFLICT"
    IDENTITY_MISMATCH = "IDENTITY_MISMATCH"
    UNKNOWN_CHARGE = "UNKNOWN_CHARGE"
    REFUND_EXCEEDS_PAID = "REFUND_EXCEEDS_PAID"
    INVALID_CHARGE = "INVALID_CHARGE"
    UNKNOWN_INSTITUTION = "UNKNOWN_INSTITUTION"  # contract version 2
    PLATFORM_ERROR = "PLATFORM_ERROR"  # added: a defect of the platform; the message is also dead-lettered
    QUOTE_UNKNOWN = "QUOTE_UNKNOWN"  # issue 15: quotes (预结算)
    QUOTE_EXPIRED = "QUOTE_EXPIRED"
    QUOTE_RELEASED = "QUOTE_RELEASED"
    QUOTE_MISMATCH = "QUOTE_MISMATCH"
    ALREADY_SETTLED = "ALREADY_SETTLED"
    # contract version 3: the message does not prove who sent it, or its signer may not say it
    UNSIGNED = "UNSIGNED"
    UNKNOWN_SIGNER = "UNKNOWN_SIGNER"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    NOT_SIGNERS = "NOT_SIGNERS"


# One answer per message (issue 21): every refusal is recorded by the message's event id, but these,
# which a resend may legitimately change. The settle Function decides it for the refusals read off
# its projections (who is registered, which institutions are designated: storage/common.lua, PROVISIONAL,
# answered by FCALL provisional_refusals); the signature refusals of contract version 3 (the key
# projection may be behind) are answered before any Function and never recorded either.
PROJECTION_REFUSALS = frozenset({Reason.UNKNOWN_PATIENT, Reason.UNKNOWN_INSTITUTION})
SIGNATURE_REFUSALS = frozenset({Reason.UNSIGNED, Reason.UNKNOWN_SIGNER, Reason.BAD_SIGNATURE, Reason.NOT_SIGNERS})
PROVISIONAL = PROJECTION_REFUSALS | SIGNATURE_REFUSALS


MESSAGES: dict[Reason, tuple[str, str]] = {
    Reason.UNKNOWN_PATIENT: ("未查询到患者参保信息", "The patient is not registered with any pooling region."),
    Reason.OUTSIDE_PROVINCE: ("患者参保地不在本省", "The patient is insured outside the province."),
    Reason.AMOUNTS_INCONSISTENT: ("统筹支付与个人负担之和不等于总费用",
                                  "fund_paid + individual_borne does not equal total."),
    Reason.INVALID_AMOUNT: ("金额无效（负数或超过两位小数）", "An amount is negative or has more than two decimals."),
    Reason.DUPLICATE_CHARGE_CONFLICT: ("同一结算单号的内容不一致", "The same charge_id was sent with a different body."),
    Reason.IDENTITY_MISMATCH: ("疑似欺诈骗保：须使用患者本人医保码结算",
                               "Suspected fraud: the scanned code is not the patient's own."),
    Reason.UNKNOWN_CHARGE: ("未找到原结算记录", "No settled charge with this charge_id."),
    Reason.REFUND_EXCEEDS_PAID: ("退费金额超过已支付金额", "The refund exceeds what is left of the amount paid."),
    Reason.INVALID_CHARGE: ("结算请求缺少字段或字段类型错误", "A field is missing or has the wrong type."),
    Reason.UNKNOWN_INSTITUTION: ("非定点医药机构或机构所属统筹区不符",
                                 "The institution is not designated, or not in the region the charge names."),
    Reason.PLATFORM_ERROR: ("平台处理异常，请稍后重试或联系运维",
                            "The platform could not process this message; operators have been alerted."),
    Reason.QUOTE_UNKNOWN: ("未找到该预结算", "No quote with this quote_id for this charge."),
    Reason.QUOTE_EXPIRED: ("预结算已过期，冻结金额已释放；请不带 quote_id 按普通结算提交",
                           "The quote expired and its holds were released; submit the charge without "
                           "quote_id, as a plain charge."),
    Reason.QUOTE_RELEASED: ("预结算已撤销或因共济关系暂停/解除而释放",
                            "The quote was cancelled, or released because a binding of it was paused or revoked."),
    Reason.QUOTE_MISMATCH: ("结算内容与预结算不一致", "The charge differs from the quote it names."),
    Reason.ALREADY_SETTLED: ("该结算单已结算", "The charge is already settled: it can no longer be quoted or cancelled."),
    **{Reason(code.value): texts for code, texts in REFUSAL_TEXTS.items()},
}


class ChargeRefused(Refusal):
    """A charge or refund broke a rule; carries the contract's reason code."""

    MESSAGES = MESSAGES
