"""Why a binding command is refused: the contract's reason codes with the words a clerk reads out."""

from __future__ import annotations

from enum import StrEnum

from shared.refusal import Refusal
from shared.refusals import BINDING_REFUSALS


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


# The words live in the shared catalogue (the gateway and the console read the same ones).
MESSAGES: dict[Reason, tuple[str, str]] = {Reason(code): texts for code, texts in BINDING_REFUSALS.items()}


class BindingRefused(Refusal):
    """A binding command broke a rule; carries the contract's reason code."""

    MESSAGES = MESSAGES
