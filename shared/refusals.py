"""The binding refusals' catalogue: each reason code a binding command (or the gateway in front of
it) can be refused with, and the words a clerk reads out, in Chinese and English.

One place: the binding service's `Reason` messages are built from it, the gateway answers its own
refusals of the same codes with it, and the console shows it (GET /console/catalogue.json)."""

from __future__ import annotations

from shared.limits import MAX_MONTHLY_LIMIT_FEN, MIN_MONTHLY_LIMIT_FEN
from shared.money import format_yuan
from shared.signing import REFUSAL_TEXTS

_LOW, _HIGH = format_yuan(MIN_MONTHLY_LIMIT_FEN), format_yuan(MAX_MONTHLY_LIMIT_FEN)

BINDING_REFUSALS: dict[str, tuple[str, str]] = {
    "INVALID_ID_NUMBER": ("身份证号码格式或校验位不正确", "The ID number is malformed or its check digit is wrong."),
    "INVALID_PHONE": ("手机号码格式不正确", "The mobile phone number is not a valid mainland number."),
    "UNKNOWN_PERSON": ("未查询到参保信息", "No insurance registration was found for this person."),
    "NAME_MISMATCH": ("姓名与参保登记信息不一致", "The name does not match the insurance registration."),
    "OUTSIDE_PROVINCE": ("参保地不在本省统筹区内", "The pooling region is not one of the province's."),
    "SELF_BINDING": ("不能为本人办理家庭共济", "A person cannot grant mutual aid to himself or herself."),
    "RELATION_NOT_ALLOWED": ("共济关系仅限父母、配偶、子女", "Mutual aid is limited to parents, spouse and children."),
    "GRANTOR_NOT_EMPLOYEE": (
        "授权人须为职工医保参保人且有个人账户", "The grantor must be employee-insured with a personal account."),
    "TOO_MANY_GRANTORS": (
        "使用者同一时期最多接受两名近亲属共济", "A beneficiary may accept mutual aid from at most two relatives at a time."),
    "PAYMENT_ORDER_TAKEN": ("该支付顺位已被占用", "That payment order is already taken for this beneficiary."),
    "INVALID_DATES": ("起止日期无效", "The start and end dates are invalid."),
    "NOTICE_NOT_ACCEPTED": ("授权人须阅读并同意告知书", "The grantor must read and accept the notice."),
    "SIGNATURE_MISSING": ("缺少电子签名的个人承诺书", "The electronically signed personal commitment is missing."),
    "DUPLICATE_BINDING": ("已存在有效的共济关系", "An active binding between these two persons already exists."),
    "BINDING_NOT_FOUND": ("未找到有效的共济关系", "No active binding with this id was found."),
    # Worded for both: revoking (解绑) and, when the caller names who asks, changing the order.
    "NOT_GRANTOR": ("仅授权人本人可以变更、暂停或解除共济关系", "Only the grantor may change, pause or end this binding."),
    "INVALID_COMMAND": ("请求缺少字段或字段类型错误", "A field is missing or has the wrong type."),
    "PLATFORM_ERROR": ("平台处理异常，请稍后重试或联系12393", "The platform failed to handle this; retry later or call 12393."),
    # added with limits, pause and disputes (issue 15)
    "ALREADY_PAUSED": ("该共济关系已暂停", "This binding is already paused."),
    "NOT_PAUSED": ("该共济关系未暂停", "This binding is not paused."),
    "DISPUTE_OPEN": ("该共济关系有尚未处理完毕的非本人授权申诉，暂不能恢复",
                     "A dispute of a payment from this binding is still open; it cannot be resumed yet."),
    "UNKNOWN_REFERENCE": ("未查询到该编号对应的共济支付（仅限近90天内由您的账户支付的费用）",
                          "No mutual-aid payment from your account with this reference in the dispute window "
                          "(90 days by default)."),
    "ALREADY_DISPUTED": ("该笔支付已提出过申诉", "This payment has already been disputed."),
    "INVALID_LIMIT": (f"每月共济限额须为{_LOW}至{_HIGH}元", f"The monthly limit must be from {_LOW} to {_HIGH} yuan."),
    # added with contract version 3: a command not believed (the signature's own words, as a sentence)
    **{code.value: (zh, en[0].upper() + en[1:] + ".") for code, (zh, en) in REFUSAL_TEXTS.items()},
}

# Refusals the gateway alone gives (a request that never reaches the binding service).
GATEWAY_REFUSALS: dict[str, tuple[str, str]] = {
    "IDEMPOTENCY_KEY_REUSED": ("该幂等键已用于另一笔不同的请求", "This Idempotency-Key was already used for a different request."),
}


def catalogue() -> dict[str, dict[str, str]]:
    """Every refusal a clerk can meet, as the console reads it: code -> {"zh", "en"}."""
    return {code: {"zh": zh, "en": en} for code, (zh, en) in (BINDING_REFUSALS | GATEWAY_REFUSALS).items()}
