"""What the notify service counts, for /metrics (shared/observability.py).

- `fma_sms_total{outcome="sent"|"failed"|"unknown"}`: SMS outcomes recorded by this process:
  `sent` (SmsSent), `unknown` (SmsFailed `outcome_unknown`: the gateway may have delivered it, so
  it is never sent again), `failed` (every other SmsFailed: no phone, gateway refused or away).

- `fma_sms_uplink_total{outcome=...}`: SMS replies read off sms.uplink: `dispute_asked` (a reference
  read from a registered phone: DisputePayment published), `not_understood` (a registered phone,
  no reference: told how to reply, at most once a day), `opted_out` (an unsubscribe: not
  answered), `unknown_phone` (no person registered with it: nothing), `unreadable` (not an
  SmsReplyReceived one can read: dead-lettered). A redelivered reply is counted again.

A message has one recorded outcome (storage/notify.lua); it is counted when this process records
it, once per wave of sends, never when a recorded outcome is only published again. A message that
calls for no SMS (a beneficiary without a phone) has no outcome and is not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from services.notify import contract as c

OUTCOMES = ("sent", "failed", "unknown")
UPLINK_OUTCOMES = ("dispute_asked", "not_understood", "opted_out", "unknown_phone", "unreadable")


def sms_outcome(outcome: dict[str, Any]) -> str:
    """The `outcome` label of a recorded outcome (usecases/deliveries.py's outcome dicts)."""
    if outcome["type"] == c.SMS_SENT:
        return "sent"
    return "unknown" if outcome.get("reason") == c.OUTCOME_UNKNOWN else "failed"


def tally(outcomes: Iterable[dict[str, Any]]) -> Counter[str]:
    return Counter(sms_outcome(o) for o in outcomes)


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._sms = PromCounter("fma_sms", "SMS outcomes recorded: sent, failed, or unknown (the gateway may "
                                "have delivered it; never sent again).", ["outcome"], registry=registry)
        for outcome in OUTCOMES:  # present from the start, at 0
            self._sms.labels(outcome=outcome)
        self._uplink = PromCounter("fma_sms_uplink", "SMS replies read off sms.uplink, by what they called for.",
                                   ["outcome"], registry=registry)
        for outcome in UPLINK_OUTCOMES:
            self._uplink.labels(outcome=outcome)

    def uplink(self, outcome: str) -> None:
        self._uplink.labels(outcome=outcome).inc()

    def recorded(self, outcomes: Iterable[dict[str, Any]]) -> None:
        for outcome, n in tally(outcomes).items():
            self._sms.labels(outcome=outcome).inc(n)
