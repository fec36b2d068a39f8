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
limit, not paused. Only bindings not revoked are present; the reader filters by the day: a binding
is in force on a China date when start <= date <= end (a renewal queued to start later, or one
whose end the sweep has not removed yet, is in the index but not in force).

This module is the only Python reader of the layout; binding_index.lua beside it is the only Lua
reader, written into the `binding` and `settlement` Function libraries ahead of their own files
(`LUA_READER`, shared/function_library.py). tests/integration/test_settlement_functions.py checks
that the settle Function pays what `payers_in_force` chooses from what `encode_payer` writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

PAUSED = "p"
# The Lua reader of the same layout, as a (package, file) part of a Function library.
LUA_READER = ("shared", "binding_index.lua")


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


def in_force(payer: Payer, day: date) -> bool:
    """The binding covers `day` (a China date, both ends included), paused or not."""
    return payer.start_date <= day <= payer.end_date


def decode_payers(entries: Mapping[str | bytes, str | bytes]) -> list[Payer]:
    """A beneficiary's whole index (its hash, as HGETALL answers it), in payment order."""
    payers = [decode_payer(_text(binding_id), _text(value)) for binding_id, value in entries.items()]
    return sorted(payers, key=lambda p: (p.payment_order, p.binding_id))


def payers_in_force(entries: Mapping[str | bytes, str | bytes], day: date) -> list[Payer]:
    """The bindings that may pay on `day`, in payment order, as the settle Function chooses them
    (paused ones included: they are in force and pay nothing)."""
    return [p for p in decode_payers(entries) if in_force(p, day)]


def grantor_payer(entries: Mapping[str | bytes, str | bytes], grantor_id: str, day: date) -> Payer | None:
    """The grantor's binding in force on `day`, or None: never a renewal still to start, never
    one that has ended."""
    return next((p for p in payers_in_force(entries, day) if p.grantor_id == grantor_id), None)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _day(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))
