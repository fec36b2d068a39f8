"""对账: compare what the platform posted to a region's book on a day with what its bureau
reports having applied, and list every difference. Pure; amounts in fen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["missing_at_bureau", "unknown_to_platform", "amount_mismatch", "direction_mismatch"]


@dataclass(frozen=True)
class Entry:
    direction: str  # debit | credit
    amount: int


@dataclass(frozen=True)
class Difference:
    posting_id: str
    kind: Kind
    platform: Entry | None
    bureau: Entry | None


def reconcile(platform: dict[str, Entry], bureau: dict[str, Entry]) -> list[Difference]:
    """Every posting id on either side that does not agree, in id order."""
    differences = []
    for posting_id in sorted(platform.keys() | bureau.keys()):
        ours, theirs = platform.get(posting_id), bureau.get(posting_id)
        if theirs is None:
            differences.append(Difference(posting_id, "missing_at_bureau", ours, None))
        elif ours is None:
            differences.append(Difference(posting_id, "unknown_to_platform", None, theirs))
        elif ours.direction != theirs.direction:
            differences.append(Difference(posting_id, "direction_mismatch", ours, theirs))
        elif ours.amount != theirs.amount:
            differences.append(Difference(posting_id, "amount_mismatch", ours, theirs))
    return differences


def net(entries: dict[str, Entry]) -> int:
    """Credits minus debits, the day's movement on the book."""
    return sum(e.amount if e.direction == "credit" else -e.amount for e in entries.values())
