"""The tests' oracle of the payment waterfall (支付顺序) and its refund, as pure functions over
integer fen.

The settlement rules live in one place, the Redis Functions (services/settlement/storage/, the
`settlement` library: waterfall.lua, charges.lua): they decide and apply every split and refund atomically. This module is not
called by any service; it restates the rules plainly so that tests (hypothesis among them) can
check the Functions against it.

Issue 15: an account pays from what is available (balance less what live quotes hold); a
grantor's binding may be paused (it pays nothing, the waterfall goes on) or limited to what is
left of its monthly limit. A quote (预结算) is the same split, held instead of posted: its lines
tell what is left to spend (`held=True`). Issue 21: a refund may name the payer lines it returns
(`named_refund_plan`); without them, last paid first (`refund_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.settlement.domain.lines import Line, Source

__all__ = ["Account", "Line", "Source", "named_refund_plan", "payer_of", "refund_plan", "split"]


@dataclass(frozen=True)
class Account:
    """An account that may pay: the patient's own, or a grantor's in payment order."""

    person_id: str
    region: str
    balance: int
    payment_order: int | None = None
    held: int = 0  # held by live quotes: not available to this charge
    limit_left: int | None = None  # what the binding's monthly limit leaves this month; None = no limit
    paused: bool = False  # a paused binding pays nothing
    binding_id: str | None = None

    @property
    def available(self) -> int:
        return self.balance - self.held


def split(borne: int, own: Account | None, grantors: list[Account], held: bool = False) -> list[Line]:
    """Pay `borne` fen: the patient's own account up to what is available, then each grantor in
    payment order up to what is available and what its monthly limit leaves (a paused binding
    pays nothing), the rest in cash. Accounts that pay nothing get no line; the cash line is
    always there, so the HIS reads what to collect at the counter.

    balance_after is the balance after the debit; for a quote (`held`), what is left to spend
    once the quote holds its amount."""
    if borne < 0:
        raise ValueError("the individually borne amount cannot be negative")
    lines: list[Line] = []
    remaining = borne
    payers = ([("own", own)] if own else []) + [("grantor", g) for g in sorted(grantors, key=_order)]
    for source, account in payers:
        if account.paused:
            continue
        take = min(max(account.available, 0), remaining)
        if account.limit_left is not None:
            take = min(take, max(account.limit_left, 0))
        if take > 0:
            after = (account.available if held else account.balance) - take
            lines.append(Line(source, take, account.person_id, account.region, account.payment_order,
                              after, binding_id=account.binding_id))
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


def payer_of(line: Line) -> str:
    """A paid line as a refund names it (contract.RefundLine): own, grantor_1, grantor_2, cash."""
    return f"grantor_{line.payment_order}" if line.source == "grantor" else line.source


def named_refund_plan(paid: list[Line], refunded: list[int], amount: int, named: dict[str, int]) -> list[int]:
    """A refund naming its lines (issue 21): exactly `named` (payer -> fen) goes back, each no more
    than that payer has left of the charge; a payer the charge has not, or more than is left, is
    refused, as is an amount above what is left of the whole charge."""
    room = sum(line.amount - back for line, back in zip(paid, refunded))
    if amount < 0 or amount > room:
        raise ValueError("refund exceeds what was paid")
    plan = [0] * len(paid)
    for payer, fen in named.items():
        found = [i for i, line in enumerate(paid) if payer_of(line) == payer]
        if not found or fen > paid[found[-1]].amount - refunded[found[-1]]:
            raise ValueError("refund exceeds what was paid")
        plan[found[-1]] = fen
    return plan


def _order(account: Account) -> int:
    return account.payment_order or 0
