"""家庭共济消费查询: what each beneficiary spent from a grantor's account, pure."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class Spent:
    charge_id: str
    day: date
    beneficiary_id: str
    paid: int
    refunded: int
    settled_at: str
    institution_code: str = ""


def by_beneficiary(rows: list[Spent], first: date, last: date) -> dict[str, list[Spent]]:
    """The payments settled between `first` and `last` (charge days, inclusive), per beneficiary,
    in the order they were settled."""
    grouped: dict[str, list[Spent]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.settled_at):
        if first <= row.day <= last:
            grouped[row.beneficiary_id].append(row)
    return dict(grouped)
