"""The settlement service's use cases, one module a job:

- charges.py: charges, refunds and quotes from the HIS (his.charges);
- quotes.py: quotes due released by the sweeper, every release announced;
- binding_events.py: holds released by a binding paused or revoked, upheld disputes reversed;
- bureau_books.py: institutions, people, account movements and postings reports from the bureaus;
- his_reconciliation.py: the ledger of settlement.results and the HIS's daily reports (对账);
- queries.py: the consumption and account queries;
- answers.py: what they share: a batch's answers and their delivery.

`SettlementService` builds the jobs that share one store, broker, clock and key (app.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from shared import envelope
from services.settlement.metrics import SettlementMetrics
from services.settlement.signatures import Signatures
from services.settlement.storage.accounts import SettlementStore
from services.settlement.usecases.answers import Answers
from services.settlement.usecases.binding_events import BindingEvents
from services.settlement.usecases.bureau_books import BureauBooks
from services.settlement.usecases.charges import Charges
from services.settlement.usecases.queries import Queries
from services.settlement.usecases.quotes import Quotes

__all__ = ["Answers", "BindingEvents", "BureauBooks", "Charges", "Queries", "Quotes", "SettlementService"]


class SettlementService:
    """The settlement jobs of one process, over one store, broker, clock, metrics and key; the
    subscribers each call one of them (handlers/subscribers.py)."""

    def __init__(self, store: SettlementStore, broker: KafkaBroker, max_age: timedelta = timedelta(days=7),
                 clock: Callable[[], datetime] = envelope.now, metrics: SettlementMetrics | None = None,
                 signatures: Signatures | None = None) -> None:
        metrics = metrics or SettlementMetrics(CollectorRegistry())
        self.quotes = Quotes(store, broker, metrics, clock)
        self.charges = Charges(store, broker, max_age, clock, metrics, signatures, released=self.quotes.released)
        self.bindings = BindingEvents(store, broker, self.quotes, clock, metrics, signatures)
        self.books = BureauBooks(store, broker, metrics, signatures)
        self.queries = Queries(store, broker, clock, signatures)
