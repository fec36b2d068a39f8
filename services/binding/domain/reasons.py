"""Why a binding command is refused: the contract's reason codes with the words a clerk reads out."""

from __future__ import annotations

from enum import StrEnum

from shared.refusal import Refusal
from shared.signing import REFUSAL_TEXTS, SignatureRefused


class Reason(StrEnum):
    INVALID_ID_NUMBER = "INVALID_ID_NUMBER"
    INVALID_PHONE = "INVALID_PHONE"
    UNKNOWN_PERSON = "UNKNOWN_PERSON"
    NAME_MISMATCH = "NAME_MISMATCH"
    OUTSIDE_PROVINCE = "OUTSIDE_PROVINCE"
    SELF_BINDING = "SELF_BINDING"
    RELATION_NOT_ALLOWED = "RELATION_NOT_ALLOWED"
    GRANTOR_NOT_EMPLOYEE = "GRANTOR_NOT_EMPLOYEE"
    TOO_MANY_GRANTORS = "TOO_MANY_GRANTORS"
    PAYMENT_ORDER_TAKEN = "PAYMENT_ORDER_TAKEN"
    INVALID_DATES = "INVALID_DATES"
    NOTICE_NOT_ACCEPTED = "NOTICE_NOT_ACCEPTED"
    SIGNATURE_MISSING = "SIGNATURE_MISSING"
    DUPLICATE_BINDING = "DUPLICATE_BINDING"
    BINDING_NOT_FOUND = "BINDING_NOT_FOUND"
    NOT_GRANTOR = "NOT_GRANTOR"
    INVALID_COMMAND = "INVALID_COMMAND"
    PLATFORM_ERROR = "PLATFORM_ERROR"  # added: a defect on our side; the command is dead-lettered too
    # added with limits, pause and disputes (issue 15)
    ALREADY_PAUSED = "ALREADY_PAUSED"
    NOT_PAUSED = "NOT_PAUSED"
    DISPUTE_OPEN = "DISPUTE_OPEN"
    UNKNOWN_REFERENCE = "UNKNOWN_REFERENCE"
    ALREADY_DISPUTED = "ALREADY_DISPUTED"
    INVALID_LIMIT = "INVALID_LIMIT"
    # added with contract version 3: a command not believed (never recorded: a resend signed
    # as it should be is decided afresh)
    UNSIGNED = "UNSIGNED"
    UNKNOWN_SIGNER = "UNKNOWN_SIGNER"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    NOT_SIGNERS = "NOT_SIGNERS"


SIGNATURE_REASONS = frozenset({Reason.UNSIGNED, Reason.UNKNOWN_SIGNER, Reason.BAD_SIGNATURE, Reason.NOT_SIGNERS})


MESSAGES: dict[Reason, tuple[str, str]] = {
    Reason.INVALID_ID_NUMBER: ("身份证号码格式或校验位不正确", "The ID number is malformed or its check digit is wrong."),
    Reason.INVALID_PHONE: ("手机号码格式不正确", "The mobile phone number is not a valid mainland number."),
    Reason.UNKNOWN_PERSON: ("未查询到参保信息", "No insurance registration was found for this person."),
    Reason.NAME_MISMATCH: ("姓名与参保登记信息不一致", "The name does not match the insurance registration."),
    Reason.OUTSIDE_PROVINCE: ("参保地不在本省统筹区内", "The pooling region is not one of the province's."),
    Reason.SELF_BINDING: ("不能为本人办理家庭共济", "A person cannot grant mutual aid to himself or herself."),
    Reason.RELATION_NOT_ALLOWED: (
        "共济关系仅限父母、配偶、子女", "Mutual aid is limited to parents, spouse and children."),
    Reason.GRANTOR_NOT_EMPLOYEE: (
        "授权人须为职工医保参保人且有个人账户", "The grantor must be employee-insured with a personal account."),
    Reason.TOO_MANY_GRANTORS: (
        "使用者同一时期最多接受两名近亲属共济", "A beneficiary may accept mutual aid from at most two relatives at a time."),
    Reason.PAYMENT_ORDER_TAKEN: ("该支付顺位已被占用", "That payment order is already taken for this beneficiary."),
    Reason.INVALID_DATES: ("起止日期无效", "The start and end dates are invalid."),
    Reason.NOTICE_NOT_ACCEPTED: ("授权人须阅读并同意告知书", "The grantor must read and accept the notice."),
    Reason.SIGNATURE_MISSING: ("缺少电子签名的个人承诺书", "The electronically signed personal commitment is missing."),
    Reason.DUPLICATE_BINDING: ("已存在有效的共济关系", "An active binding between these two persons already exists."),
    Reason.BINDING_NOT_FOUND: ("未找到有效的共济关系", "No active binding with this id was found."),
    # Worded for both: revoking (解绑) and, when the caller names who asks, changing the order.
    Reason.NOT_GRANTOR: ("仅授权人本人可以变更、暂停或解除共济关系", "Only the grantor may change, pause or end this binding."),
    Reason.INVALID_COMMAND: ("请求缺少字段或字段类型错误", "A field is missing or has the wrong type."),
    Reason.PLATFORM_ERROR: ("平台处理异常，请稍后重试或联系12393", "The platform failed to handle this; retry later or call 12393."),
    Reason.ALREADY_PAUSED: ("该共济关系已暂停", "This binding is already paused."),
    Reason.NOT_PAUSED: ("该共济关系未暂停", "This binding is not paused."),
    Reason.DISPUTE_OPEN: ("该共济关系有尚未处理完毕的非本人授权申诉，暂不能恢复",
                          "A dispute of a payment from this binding is still open; it cannot be resumed yet."),
    Reason.UNKNOWN_REFERENCE: ("未查询到该编号对应的共济支付（仅限近90天内由您的账户支付的费用）",
                               "No mutual-aid payment from your account with this reference in the dispute window "
                               "(90 days by default)."),
    Reason.ALREADY_DISPUTED: ("该笔支付已提出过申诉", "This payment has already been disputed."),
    Reason.INVALID_LIMIT: ("每月共济限额须为0.00至1000000.00元", "The monthly limit must be from 0.00 to 1000000.00 yuan."),
    **{Reason(code.value): (zh, en[0].upper() + en[1:] + ".") for code, (zh, en) in REFUSAL_TEXTS.items()},
}


class BindingRefused(Refusal):
    """A binding command broke a rule; carries the contract's reason code."""

    MESSAGES = MESSAGES
