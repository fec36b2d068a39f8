"""The binding service as app.py builds it: one set of settings made into its jobs, and its entry
points, each the method of the job that does it (the handlers and the tests call these)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from shared.signing import KeyFinder, SigningKey
from services.binding.metrics import BindingMetrics
from services.binding.storage.bindings import BindingStore
from services.binding.usecases.commands import Commands
from services.binding.usecases.disputes import BureauDecisions
from services.binding.usecases.payments import PaymentProjection
from services.binding.usecases.people import Registry
from services.binding.usecases.queries import Queries
from services.binding.usecases.sweeps import PayerIndex


class BindingService:
    def __init__(self, store: BindingStore, broker: KafkaBroker, today: Callable[[], date], *,
                 name_key: bytes, payer_grace_days: int, keys: KeyFinder, signing_key: SigningKey,
                 metrics: BindingMetrics | None = None,
                 references_caught_up: Callable[[], Awaitable[None]] | None = None,
                 dispute_window_days: int = 90) -> None:
        metrics = metrics or BindingMetrics(CollectorRegistry())
        self.payers = PayerIndex(store, today, payer_grace_days)
        self.queries = Queries(store, name_key)
        self.commands = Commands(store, broker, today, name_key=name_key, keys=keys, signing_key=signing_key,
                                 metrics=metrics, payers=self.payers, queries=self.queries,
                                 references_caught_up=references_caught_up)
        self.decisions = BureauDecisions(store, broker, keys, metrics, self.payers)
        self.payments = PaymentProjection(store, dispute_window_days)
        self.registry = Registry(store, broker, keys, name_key)
        # binding.commands (commands and queries)
        self.handle_commands = self.commands.handle_commands
        self.handle_command = self.commands.handle_command
        self.answer_defect = self.commands.answer_defect
        # bureau.accounts, bureau.disputes, settlement.results, and the periodic sweep
        self.register_people = self.registry.register_people
        self.decide_dispute = self.decisions.decide_dispute
        self.project_payments = self.payments.project_payments
        self.sweep_payers = self.payers.sweep
