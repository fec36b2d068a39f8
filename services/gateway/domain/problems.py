"""How a refusal becomes an HTTP answer: the contract's reason code decides the status
(RFC 9457 problem details). Pure: no I/O, no framework."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.refusals import BINDING_REFUSALS, GATEWAY_REFUSALS

# BindingRejected reason codes (contract.md) that say the request collides with what exists, or
# with the binding's state (paused already, not paused, a dispute open, the payment disputed already).
CONFLICTS = frozenset({"DUPLICATE_BINDING", "TOO_MANY_GRANTORS", "PAYMENT_ORDER_TAKEN", "ALREADY_PAUSED",
                       "NOT_PAUSED", "DISPUTE_OPEN", "ALREADY_DISPUTED"})
_STATUS = {"BINDING_NOT_FOUND": 404, "UNKNOWN_REFERENCE": 404, "NOT_GRANTOR": 403,
           # A defect on the platform's side, not a fault of the request: retrying may help.
           "PLATFORM_ERROR": 500}
_TITLES = {409: "Conflicts with an existing binding", 404: "Not found", 403: "Forbidden",
           422: "Refused", 429: "Too Many Requests", 500: "Platform error"}
# The reasons the gateway gives itself, when a request never reaches the binding service: the
# binding service's own words for these codes, from the one catalogue (shared/refusals.py).
OWN_MESSAGES = {code: BINDING_REFUSALS[code] for code in ("INVALID_COMMAND", "INVALID_ID_NUMBER", "INVALID_PHONE",
                                                          "INVALID_DATES", "UNKNOWN_PERSON", "INVALID_LIMIT")
                } | GATEWAY_REFUSALS
_OWN_REASON_BY_ERROR = {"invalid_id_number": "INVALID_ID_NUMBER", "invalid_phone": "INVALID_PHONE",
                        "invalid_limit": "INVALID_LIMIT"}


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem: `type`, `title`, `status`, `detail`, and the contract's reason code
    with its Chinese and English messages when there is one."""

    status: int
    title: str
    detail: str
    reason_code: str | None = None
    message_zh: str | None = None
    message_en: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return f"urn:fma:problem:{self.reason_code}" if self.reason_code else "about:blank"

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        if self.reason_code:
            out |= {"reason_code": self.reason_code, "message_zh": self.message_zh, "message_en": self.message_en}
        return out | self.extra


def status_for(reason_code: str) -> int:
    """409 for conflicts, 404 for an unknown binding or reference, 403 for someone not the grantor, 500 for
    the platform's own defect, 422 for every other refusal of the request's content."""
    return 409 if reason_code in CONFLICTS else _STATUS.get(reason_code, 422)


def refusal(reason_code: str, message_zh: str, message_en: str) -> Problem:
    """A BindingRejected (or the gateway's own refusal) as a problem."""
    status = status_for(reason_code)
    return Problem(status, _TITLES[status], message_en, reason_code, message_zh, message_en)


def own_refusal(reason_code: str, detail: str = "", status: int = 422, **extra: Any) -> Problem:
    """A refusal the gateway decides itself, with the contract's words for its code (422, or
    404 for a person the look-up does not find)."""
    zh, en = OWN_MESSAGES[reason_code]
    return Problem(status, _TITLES[status], f"{en} ({detail})" if detail else en, reason_code, zh, en, extra)


def reason_for_errors(error_types: list[str]) -> str:
    """The closest reason code for a request that failed validation: a specific one only when
    every problem is of that kind (as the binding service decides), else INVALID_COMMAND."""
    reasons = {_OWN_REASON_BY_ERROR.get(t, "INVALID_COMMAND") for t in error_types}
    return reasons.pop() if len(reasons) == 1 else "INVALID_COMMAND"


def plain(status: int, title: str, detail: str, **extra: Any) -> Problem:
    """A problem with no reason code (401, 404 of a route, 413, 504, ...)."""
    return Problem(status, title, detail, extra=extra)
