"""Ids the platform derives from partners' ids (contract version 2: "ids never collide").

Posting ids are read by the bureaus, so they stay legible: their parts are joined with ':',
which no part may hold (institution codes, charge and refund ids are bounded to
[A-Za-z0-9_.-]), and a charge's debit and a refund's credit differ in their first letter and
in their number of parts. Outcome event ids are uuid5 of a JSON array of their parts: no two
different tuples give the same text, whatever the parts hold.
"""

from __future__ import annotations

import hashlib
import json
import uuid

_NAMESPACE = uuid.UUID("0f3a6c1e-8d2b-5a47-9e61-5e771e3e7000")
_NAMESPACE_BYTES = _NAMESPACE.bytes


def _part(value: str) -> str:
    if not value or ":" in value:
        raise ValueError(f"an id part must be non-empty and hold no ':': {value!r}")
    return value


def posting_prefix(institution_code: str, charge_id: str, refund_id: str | None = None) -> str:
    """Everything of a posting id but the line index (the Function appends it)."""
    if refund_id is None:
        return f"P:{_part(institution_code)}:{_part(charge_id)}:"
    return f"R:{_part(institution_code)}:{_part(charge_id)}:{_part(refund_id)}:"


def reversal_prefix(institution_code: str, charge_id: str, dispute_id: str) -> str:
    """An upheld dispute's credit (PaymentReversed): V and four parts, beside P (three) and R (four)."""
    return f"V:{_part(institution_code)}:{_part(charge_id)}:{_part(dispute_id)}:"


def posting_id(institution_code: str, charge_id: str, refund_id: str | None, line: int) -> str:
    return f"{posting_prefix(institution_code, charge_id, refund_id)}{line}"


def event_id(*parts: str | int | None) -> str:
    """A stable event id for an outcome of the given parts, the same on every redelivery."""
    name = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    # uuid.uuid5(_NAMESPACE, name), without building UUID objects: this runs for every outcome.
    h = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def quote_id(institution_code: str, charge_id: str) -> str:
    """A charge's quote (预结算): one per charge, the same on every request."""
    return event_id("ChargeQuoted", institution_code, charge_id)
