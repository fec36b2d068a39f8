"""The payment waterfall (支付顺序) and its refund, as pure functions over integer fen.

The settlement Function (storage/settlement.lua) applies exactly these rules atomically in
Redis; tests check the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["own", "grantor", "cash"]


@dataclass(frozen=True)
class Account:
    """An account that may pay: the patient's own, or a grantor's in payment order."""

    person_id: str
    region: str
    balance: int
    payment_order: int | None = None


@dataclass(frozen=True)
class Line:
    source: Source
    amount: int
    person_id: str | None = None
    region: str | None = None
    payment_order: int | None = None
    balance_after: int | None = None
    # The posting's place in its account's sequence (contract version 2): given by the Function
    # that applies the line, never by the pure plan.
    account_seq: int | None = None


def split(borne: int, own: Account | None, grantors: list[Account]) -> list[Line]:
    """Pay `borne` fen: the patient's own account up to its balance, then each grantor in payment
    order up to that balance, the rest in cash. Accounts that pay nothing get no line; the cash
    line is always there, so the HIS reads what to collect at the counter."""
    if borne < 0:
        raise ValueError("the individually borne amount cannot be negative")
    lines: list[Line] = []
    remaining = borne
    payers = ([("own", own)] if own else []) + [("grantor", g) for g in sorted(grantors, key=_order)]
    for source, account in payers:
        take = min(max(account.balance, 0), remaining)
        if take > 0:
            lines.append(Line(source, take, account.person_id, account.region, account.payment_order,
                              account.balance - take))
            remaining -= take
    lines.append(Line("cash", remaining))
    return lines


def refund_plan(paid: list[Line], refunded: list[int], amount: int) -> list[int]:
    """How much of `amount` goes back to each paid line, given what each has had back already.

    Last paid, first refunded (cash, then grantor 2, grantor 1, the own account last): after a
    partial refund every account stands as if the smaller bill had been charged in the first
    place, which is the only order that keeps the waterfall's promise retroactively.
    """
    room = sum(line.amount - back for line, back in zip(paid, refunded))
    if amount < 0 or amount > room:
        raise ValueError("refund exceeds what was paid")
    plan = [0] * len(paid)
    remaining = amount
    for i in reversed(range(len(paid))):
        give = min(paid[i].amount - refunded[i], remaining)
        plan[i] = give
        remaining -= give
    return plan


def _order(account: Account) -> int:
    return account.payment_order or 0
