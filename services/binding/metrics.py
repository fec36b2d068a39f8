"""What the binding service counts, for /metrics (shared/observability.py).

- `fma_binding_commands_total{outcome, reason}`: commands answered on binding.events, by outcome
  `created` (BindingCreated), `revoked` (BindingRevoked), `order_changed` (PaymentOrderChanged)
  or `rejected` (BindingRejected, `reason` its reason code; "" otherwise).

Counted once a batch's outcomes are published, one increment per label. A command answered again
with its recorded outcome (a redelivery, a resend) republishes the same event id; each event id
is counted once in a process (`shared.observability.Once`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from shared.observability import Once
from services.binding import contract as c

OUTCOMES = {c.BINDING_CREATED: "created", c.BINDING_REVOKED: "revoked",
            c.PAYMENT_ORDER_CHANGED: "order_changed", c.BINDING_REJECTED: "rejected"}


def labels_of(outcome: bytes) -> tuple[str, str, str]:
    """(event id, outcome, reason) of an outcome event as published."""
    event = orjson.loads(outcome)
    kind = OUTCOMES.get(event["event_type"], event["event_type"])
    reason = event["payload"].get("reason_code", "") if kind == "rejected" else ""
    return event["event_id"], kind, reason


def tally(labelled: Iterable[tuple[str, str, str]]) -> Counter[tuple[str, str]]:
    return Counter((kind, reason) for _, kind, reason in labelled)


class BindingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._commands = PromCounter("fma_binding_commands", "Binding commands answered, by outcome (created, "
                                     "revoked, order_changed, rejected) and reason code.", ["outcome", "reason"],
                                     registry=registry)
        self._once = Once()
        for kind in ("created", "revoked", "order_changed"):  # present from the start, at 0
            self._commands.labels(outcome=kind, reason="")

    def answered(self, outcomes: Iterable[bytes | None]) -> None:
        """Count the outcomes of a published batch (each event id once)."""
        labelled = {}
        for outcome in outcomes:
            if outcome:
                event_id, kind, reason = labels_of(outcome)
                labelled.setdefault(event_id, (event_id, kind, reason))
        fresh = self._once.fresh(labelled)
        for (kind, reason), n in tally(labelled[i] for i in fresh).items():
            self._commands.labels(outcome=kind, reason=reason).inc(n)
