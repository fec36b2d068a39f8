"""A line of a charge or refund as the settlement Functions answer it (services/settlement/storage/*.lua,
the home of the settlement rules): who paid or got back how much, the balance after, and the
posting's place in its account's sequence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Source = Literal["own", "grantor", "cash"]


@dataclass(frozen=True)
class Line:
    source: Source
    amount: int
    person_id: str | None = None
    region: str | None = None
    payment_order: int | None = None
    balance_after: int | None = None
    # The posting's place in its account's sequence (contract version 2): given by the Function
    # that applies the line, never by the tests' oracle (tests/oracle/waterfall.py).
    account_seq: int | None = None
    binding_id: str | None = None  # grantor lines: the binding that paid

