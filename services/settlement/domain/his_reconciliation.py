"""对账 with a hospital's HIS, per institution and day (China date of the platform's settled_at):
what the HIS says it settled against what the platform settled. Pure; amounts in fen.

对总账 compares the day's totals; when they differ the platform asks for the detail (对明细账),
and every charge or refund the two sides do not agree on is listed with its ids:
- `missing_on_platform`: the HIS has it, the platform settled nothing of the kind that day;
- `missing_at_institution`: the platform settled it, the HIS does not list it;
- `amount_differs`: both have it, some amount differs (borne, own, family or cash; a refund's amount).

The family part (家庭共济) is one aggregate per charge, as the national HIS interfaces report it:
the sum of the grantors' lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Kind = Literal["missing_on_platform", "missing_at_institution", "amount_differs"]
RefundKey = tuple[str, str]  # (charge_id, refund_id)


@dataclass(frozen=True)
class ChargeAmounts:
    """One settled charge as both sides book it."""

    borne: int  # individual_borne: own + family + cash
    own: int
    family: int
    cash: int


@dataclass(frozen=True)
class Totals:
    """对总账: a day's totals."""

    charge_count: int
    borne: int
    own: int
    family: int
    cash: int
    refund_count: int
    refunded: int


@dataclass(frozen=True)
class Book:
    """One side's detail of a day: charges by id, refunds by (charge id, refund id)."""

    charges: Mapping[str, ChargeAmounts]
    refunds: Mapping[RefundKey, int]


@dataclass(frozen=True)
class Difference:
    kind: Kind
    charge_id: str
    refund_id: str | None
    platform: ChargeAmounts | int | None  # int: a refund's amount
    institution: ChargeAmounts | int | None


class DuplicateRow(ValueError):
    """The HIS's detail lists one charge (or refund) twice: which of the rows it means is unknown."""

    def __init__(self, charge_id: str, refund_id: str | None) -> None:
        super().__init__(f"charge {charge_id}" + (f" refund {refund_id}" if refund_id else "") + " listed twice")
        self.charge_id, self.refund_id = charge_id, refund_id


def charge_amounts(borne: int, lines: Iterable[tuple[str, int]]) -> ChargeAmounts:
    """A ChargeSettled's (source, fen) lines folded into the HIS's four columns."""
    paid = {"own": 0, "grantor": 0, "cash": 0}
    for source, amount in lines:
        paid[source] += amount
    return ChargeAmounts(borne, paid["own"], paid["grantor"], paid["cash"])


def book_of(charges: Iterable[tuple[str, ChargeAmounts]], refunds: Iterable[tuple[str, str, int]]) -> Book:
    """The HIS's detail rows (from every part) as a Book; a charge or refund listed twice is refused."""
    by_charge: dict[str, ChargeAmounts] = {}
    for charge_id, amounts in charges:
        if charge_id in by_charge:
            raise DuplicateRow(charge_id, None)
        by_charge[charge_id] = amounts
    by_refund: dict[RefundKey, int] = {}
    for charge_id, refund_id, amount in refunds:
        if (charge_id, refund_id) in by_refund:
            raise DuplicateRow(charge_id, refund_id)
        by_refund[charge_id, refund_id] = amount
    return Book(by_charge, by_refund)


def totals(book: Book) -> Totals:
    c = book.charges.values()
    return Totals(len(book.charges), sum(x.borne for x in c), sum(x.own for x in c), sum(x.family for x in c),
                  sum(x.cash for x in c), len(book.refunds), sum(book.refunds.values()))


def compare(platform: Book, institution: Book) -> list[Difference]:
    """Every charge and refund the two books do not agree on: charges in id order, then refunds
    in (charge id, refund id) order."""
    out: list[Difference] = []
    for charge_id in sorted(platform.charges.keys() | institution.charges.keys()):
        ours, theirs = platform.charges.get(charge_id), institution.charges.get(charge_id)
        if kind := _kind(ours, theirs):
            out.append(Difference(kind, charge_id, None, ours, theirs))
    for charge_id, refund_id in sorted(platform.refunds.keys() | institution.refunds.keys()):
        ours_r, theirs_r = platform.refunds.get((charge_id, refund_id)), institution.refunds.get((charge_id, refund_id))
        if kind := _kind(ours_r, theirs_r):
            out.append(Difference(kind, charge_id, refund_id, ours_r, theirs_r))
    return out


def _kind(ours: object, theirs: object) -> Kind | None:
    if ours is None:
        return "missing_on_platform"
    if theirs is None:
        return "missing_at_institution"
    return "amount_differs" if ours != theirs else None
