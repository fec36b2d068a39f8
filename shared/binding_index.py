"""The payer index: for each beneficiary, the grantors whose accounts may pay, in Redis.

Owner: the binding service writes it, in the same transaction that records a binding's
outcome. The settlement service only reads it, inside its settlement Function, so a binding
pays from the moment BindingCreated is published and stops the moment BindingRevoked (or
BindingPaused) is. That is why this one layout sits in the shared kernel instead of being a
settlement projection.

Layout: hash `bnd:pay:{beneficiary_id}`, field `binding_id`, value
`grantor_id|payment_order|start YYYYMMDD|end YYYYMMDD|grantor_region|monthly_limit_fen|paused`:
- monthly_limit_fen: decimal digits of fen (the grantor's 共济限额 per calendar month, China
  time), or empty: no limit. "0" pays nothing.
- paused: `p` while the grantor (or an open dispute) has paused the binding, empty otherwise. A
  paused binding stays in the index (it is not revoked) and pays nothing.
The value written before limits and pause had the first five fields only; readers take it as no
limit, not paused. Only bindings not revoked are present; the reader filters by the charge's date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

PAUSED = "p"


def payers_key(beneficiary_id: str) -> str:
    return f"bnd:pay:{beneficiary_id}"


@dataclass(frozen=True)
class Payer:
    binding_id: str
    grantor_id: str
    payment_order: int
    start_date: date
    end_date: date
    grantor_region: str
    monthly_limit_fen: int | None = None
    paused: bool = False


def encode_payer(payer: Payer) -> str:
    limit = "" if payer.monthly_limit_fen is None else str(payer.monthly_limit_fen)
    return "|".join((payer.grantor_id, str(payer.payment_order), payer.start_date.strftime("%Y%m%d"),
                     payer.end_date.strftime("%Y%m%d"), payer.grantor_region, limit,
                     PAUSED if payer.paused else ""))


def decode_payer(binding_id: str, value: str) -> Payer:
    grantor_id, order, start, end, region, *rest = value.split("|")
    limit, paused = (rest + ["", ""])[:2]
    return Payer(binding_id, grantor_id, int(order), _day(start), _day(end), region,
                 int(limit) if limit else None, paused == PAUSED)


def _day(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))
