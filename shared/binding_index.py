"""The payer index: for each beneficiary, the grantors whose accounts may pay, in Redis.

Owner: the binding service writes it, in the same transaction that records a binding's
outcome. The settlement service only reads it, inside its settlement Function, so a binding
pays from the moment BindingCreated is published and stops the moment BindingRevoked is. That
is why this one layout sits in the shared kernel instead of being a settlement projection.

Layout: hash `bnd:pay:{beneficiary_id}`, field `binding_id`, value
`grantor_id|payment_order|start YYYYMMDD|end YYYYMMDD|grantor_region`. Only bindings not revoked
are present; the reader filters by the charge's date.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


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


def encode_payer(payer: Payer) -> str:
    return "|".join((payer.grantor_id, str(payer.payment_order), payer.start_date.strftime("%Y%m%d"),
                     payer.end_date.strftime("%Y%m%d"), payer.grantor_region))


def decode_payer(binding_id: str, value: str) -> Payer:
    grantor_id, order, start, end, region = value.split("|")
    return Payer(binding_id, grantor_id, int(order), _day(start), _day(end), region)


def _day(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))
