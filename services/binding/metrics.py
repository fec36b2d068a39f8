"""What the binding service counts, for /metrics (shared/observability.py).

- `fma_binding_commands_total{outcome, reason}`: commands answered on binding.events, by outcome
  `created` (BindingCreated), `revoked` (BindingRevoked), `order_changed` (PaymentOrderChanged),
  `limit_set` (GrantorLimitSet), `paused` (BindingPaused), `resumed` (BindingResumed),
  `dispute_opened` (DisputeOpened) or `rejected` (BindingRejected, `reason` its reason code, among
  them UNSIGNED, UNKNOWN_SIGNER, BAD_SIGNATURE and NOT_SIGNERS for commands not believed; ""
  otherwise).
- `fma_binding_disputes_decided_total{decision}`: bureau decisions applied (`upheld`, `dismissed`);
  a redelivered decision counts again.

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
            c.PAYMENT_ORDER_CHANGED: "order_changed", c.BINDING_REJECTED: "rejected",
            c.GRANTOR_LIMIT_SET: "limit_set", c.BINDING_PAUSED: "paused", c.BINDING_RESUMED: "resumed",
            c.DISPUTE_OPENED: "dispute_opened"}


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
        self._decided = PromCounter("fma_binding_disputes_decided", "Bureau decisions on disputes applied, by "
                                    "decision (upheld, dismissed).", ["decision"], registry=registry)
        self._once = Once()
        for kind in ("created", "revoked", "order_changed", "limit_set", "paused", "resumed", "dispute_opened"):
            self._commands.labels(outcome=kind, reason="")  # present from the start, at 0
        for decision in ("upheld", "dismissed"):
            self._decided.labels(decision=decision)

    def dispute_decided(self, decision: str) -> None:
        self._decided.labels(decision=decision).inc()

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
