"""What the settlement service counts, for /metrics (shared/observability.py).

The use cases note what each answered message ended as (`Settled`, `Refunded`, `Refused`) beside
its outcome; once a batch's outcomes are published, `SettlementMetrics.record` folds the notes
into one `Tally` (`tally`, pure) and increments each counter once per label: nothing is counted
per record on the hot path, nothing for an outcome that was not published.

- `fma_charges_total{outcome="settled"|"refused", reason}`: charges (ChargeSubmitted) settled,
  or refused with the contract's reason code (`reason` is "" when settled).
- `fma_refunds_total{outcome="refunded"|"refused", reason}`: refunds (ChargeRefunded) likewise.
- `fma_paid_fen_total{source="own"|"grantor"|"cash"}`: fen paid by settled charges, by the line
  that paid them (refunds are not deducted: this is what was paid, not what stayed paid).
- `fma_cross_region_payments_total`: settled charges that a grantor's account in another pooling
  region than the institution's paid a part of (跨统筹区共济). Its ratio to
  `fma_charges_total{outcome="settled"}` is the cross-region share.
- `fma_account_drift_total`, `fma_account_drift_fen_total` (对账 per account, issue 15): BalanceSnapshots
  that found the platform's balance off by more than its postings after the snapshot's watermark
  explain, and the fen they were off by (absolute), counted when the snapshot is first applied.
- `fma_quotes_total{outcome="quoted"|"released", reason}` (预结算): quotes held, and quotes released
  whole, by why (`cancelled`, `expired`, `binding_paused`, `binding_revoked`; "" when quoted). A
  quote settled with its id counts as a settled charge.
- `fma_institution_reconciliations_total{level, result}` and `..._refused_total{reason}`: 对账 with
  the HIS (`ReconciliationMetrics`, below).

Each decision is counted once: a charge or refund answered again from its record (a redelivery,
a resend) is a replay and is not counted; a refusal is counted once per refusal event id in a
process (`shared.observability.Once`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from shared.observability import Once
from services.settlement.domain.lines import Line


@dataclass(frozen=True)
class Settled:
    """A charge settled for the first time: where it was charged and the lines that paid it."""

    institution_region: str
    lines: Sequence[Line]


@dataclass(frozen=True)
class Refunded:
    """A refund applied for the first time."""


@dataclass(frozen=True)
class Refused:
    kind: Literal["charge", "refund"]
    reason: str
    event_id: str  # of the ChargeRejected: the same for every republication of this refusal


@dataclass(frozen=True)
class Quoted:
    """A quote held for the first time (its split on hold)."""


@dataclass(frozen=True)
class QuoteReleased:
    reason: str
    quote_id: str  # a release is counted once per quote in a process, however often it is announced


Noted = Settled | Refunded | Refused | Quoted | QuoteReleased
QUOTED = Quoted()
REFUNDED = Refunded()


@dataclass
class Tally:
    charges: Counter[tuple[str, str]] = field(default_factory=Counter)  # (outcome, reason)
    refunds: Counter[tuple[str, str]] = field(default_factory=Counter)
    paid_fen: Counter[str] = field(default_factory=Counter)  # source
    cross_region: int = 0
    quotes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (outcome, reason)


def is_cross_region(institution_region: str, lines: Iterable[Line]) -> bool:
    return any(x.source == "grantor" and x.region is not None and x.region != institution_region for x in lines)


def tally(noted: Iterable[Noted]) -> Tally:
    t = Tally()
    for n in noted:
        if isinstance(n, Settled):
            t.charges["settled", ""] += 1
            for x in n.lines:
                t.paid_fen[x.source] += x.amount
            t.cross_region += is_cross_region(n.institution_region, n.lines)
        elif isinstance(n, Refunded):
            t.refunds["refunded", ""] += 1
        elif isinstance(n, Quoted):
            t.quotes["quoted", ""] += 1
        elif isinstance(n, QuoteReleased):
            t.quotes["released", n.reason] += 1
        else:
            (t.charges if n.kind == "charge" else t.refunds)["refused", n.reason] += 1
    return t


class SettlementMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._charges = PromCounter("fma_charges", "Charges answered: settled, or refused by reason code.",
                                    ["outcome", "reason"], registry=registry)
        self._refunds = PromCounter("fma_refunds", "Refunds answered: refunded, or refused by reason code.",
                                    ["outcome", "reason"], registry=registry)
        self._paid = PromCounter("fma_paid_fen", "Fen paid by settled charges, by source (own account, a "
                                 "grantor's account, cash).", ["source"], registry=registry)
        self._cross = PromCounter("fma_cross_region_payments", "Settled charges a grantor's account in another "
                                  "pooling region than the institution's paid a part of.", registry=registry)
        self._quotes = PromCounter("fma_quotes", "Quotes (预结算): held, or released whole by reason.",
                                   ["outcome", "reason"], registry=registry)
        self._once = Once()
        # 对账 per account (issue 15): a BalanceSnapshot found the cache off by more than the
        # platform's postings after its watermark explain (usecases/bureau_books.py, _bureau_batch).
        self._drift = PromCounter("fma_account_drift", "BalanceSnapshots that found the platform's balance off by "
                                  "more than its postings in flight explain.", registry=registry)
        self._drift_fen = PromCounter("fma_account_drift_fen", "Fen of those drifts (absolute).", registry=registry)
        # Present from the start, so a rate over them has a first sample of 0.
        self._charges.labels(outcome="settled", reason="")
        self._refunds.labels(outcome="refunded", reason="")
        for source in ("own", "grantor", "cash"):
            self._paid.labels(source=source)

    def record(self, noted: list[Noted]) -> None:
        """Count a published batch's outcomes."""
        if not noted:
            return
        t = tally(self._first_time(noted))
        for (outcome, reason), n in t.charges.items():
            self._charges.labels(outcome=outcome, reason=reason).inc(n)
        for (outcome, reason), n in t.refunds.items():
            self._refunds.labels(outcome=outcome, reason=reason).inc(n)
        for source, fen in t.paid_fen.items():
            self._paid.labels(source=source).inc(fen)
        if t.cross_region:
            self._cross.inc(t.cross_region)
        for (outcome, reason), n in t.quotes.items():
            self._quotes.labels(outcome=outcome, reason=reason).inc(n)

    def drifted(self, fen: int) -> None:
        """A snapshot applied for the first time found the cache off by `fen` (signed)."""
        self._drift.inc()
        self._drift_fen.inc(abs(fen))

    def _first_time(self, noted: list[Noted]) -> list[Noted]:
        """Refusals and quote releases not counted before in this process (once each, even twice
        in one batch)."""
        def once_key(n: Noted) -> str | None:
            return n.event_id if isinstance(n, Refused) else \
                f"released:{n.quote_id}" if isinstance(n, QuoteReleased) else None

        fresh = set(self._once.fresh(k for n in noted if (k := once_key(n))))
        kept = []
        for n in noted:
            if (k := once_key(n)) is not None:
                if k not in fresh:
                    continue
                fresh.discard(k)
            kept.append(n)
        return kept


class ReconciliationMetrics:
    """对账 with the HIS (usecases/his_reconciliation.py): answers by level and result, refusals by reason.

    - `fma_institution_reconciliations_total{level="totals"|"detail", result="balanced"|"differs"}`:
      final answers, each counted once (a redelivery answered from its record is not).
    - `fma_institution_reconciliations_refused_total{reason}`.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._answers = PromCounter("fma_institution_reconciliations", "Final answers to the HIS's daily totals "
                                    "and detail, by level and result.", ["level", "result"], registry=registry)
        self._refused = PromCounter("fma_institution_reconciliations_refused", "Reconciliation messages refused, "
                                    "by reason code.", ["reason"], registry=registry)

    def reconciled(self, level: str, result: str) -> None:
        self._answers.labels(level=level, result=result).inc()

    def refused(self, reason: str) -> None:
        self._refused.labels(reason=reason).inc()
