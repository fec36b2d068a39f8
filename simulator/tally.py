"""What the simulator saw come back: outcomes of its charges, SMS, bindings. Pure counting.

`make run` shows the services' own /metrics; this tally is the simulator's view from outside
(its status file and final line), which also stands in where a metric is not served.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from shared.money import parse_yuan


RECENT_SMS = 5


@dataclass
class Tally:
    regions: dict[str, str]                           # person -> region, to tell cross-region payments
    phase: str = "starting"
    sent: Counter = field(default_factory=Counter)    # by kind (traffic.MIX)
    settled: int = 0
    refused: Counter = field(default_factory=Counter)  # charges refused, by reason
    paid_fen: Counter = field(default_factory=Counter)  # own | grantor | cash
    grantor_paid: int = 0                              # charges a grantor's account paid part of
    cross_region: int = 0                              # ... from an account in another region
    refunds: int = 0
    refunds_refused: Counter = field(default_factory=Counter)
    fraud_suspected: int = 0
    sms: Counter = field(default_factory=Counter)      # sent | failed
    bindings: Counter = field(default_factory=Counter)  # created | pending | refused:<reason>
    bureau_refused: int = 0                            # bureau events dead-lettered (should stay 0)
    quotes: Counter = field(default_factory=Counter)   # quoted | released:<reason>
    reconciled: Counter = field(default_factory=Counter)  # <level>:<result> of InstitutionReconciled
    disputes: Counter = field(default_factory=Counter)    # opened | upheld | dismissed
    binding_changes: Counter = field(default_factory=Counter)  # paused | resumed | limit_set
    grantor_actions: Counter = field(default_factory=Counter)  # the app calls the grantors made
    drift: int = 0                                     # AccountDriftDetected (should stay 0)
    # contract version 3: the bureaus check the platform's signature on every posting and report
    # they read, the HIS on every reply; one that does not verify is a failure (should stay
    # empty), counted as <postings|reply>:<refusal code>
    platform_verified: int = 0
    unverified: Counter = field(default_factory=Counter)
    # the latest SmsSent, as notify published them (phone already masked): `make run` shows them, so
    # a binding made through /docs is seen to reach its grantor's phone
    recent_sms: deque = field(default_factory=lambda: deque(maxlen=RECENT_SMS))

    def result(self, event_type: str, payload: dict) -> None:
        """A message on settlement.results."""
        if event_type == "ChargeSettled":
            self.settled += 1
            lines = payload.get("lines", [])
            for line in lines:
                self.paid_fen[line.get("source", "?")] += parse_yuan(line["amount"])
            grantors = [line for line in lines if line.get("source") == "grantor"]
            if grantors:
                self.grantor_paid += 1
                patient_region = self.regions.get(payload.get("patient_id", ""))
                if any(line.get("region") != patient_region for line in grantors):
                    self.cross_region += 1
        elif event_type == "ChargeRejected":
            target = self.refunds_refused if payload.get("refund_id") else self.refused
            target[payload.get("reason_code", "?")] += 1
        elif event_type == "RefundSettled":
            self.refunds += 1
        elif event_type == "FraudSuspected":
            self.fraud_suspected += 1
        elif event_type == "ChargeQuoted":
            self.quotes["quoted"] += 1
        elif event_type == "ChargeQuoteReleased":
            self.quotes[f"released:{payload.get('reason', '?')}"] += 1
        elif event_type == "InstitutionReconciled":
            self.reconciled[f"{payload.get('level', '?')}:{payload.get('result', '?')}"] += 1

    def binding_event(self, event_type: str, payload: dict) -> None:
        """A message on binding.events (the ones the play changes)."""
        if event_type == "DisputeOpened":
            self.disputes["opened"] += 1
        elif event_type == "DisputeResolved":
            self.disputes[str(payload.get("decision", "?"))] += 1
        elif event_type in ("BindingPaused", "BindingResumed", "GrantorLimitSet"):
            self.binding_changes[{"BindingPaused": "paused", "BindingResumed": "resumed",
                                  "GrantorLimitSet": "limit_set"}[event_type]] += 1

    def platform_message(self, topic: str, refusal: str | None) -> None:
        """A message the platform wrote for a partner (a posting, a reply), its signature checked."""
        if refusal is None:
            self.platform_verified += 1
        else:
            self.unverified[f"{'reply' if topic.startswith('reply.') else 'postings'}:{refusal}"] += 1

    @property
    def failures(self) -> int:
        """What should never happen in a play: bureau events refused, books that drifted,
        platform messages whose signature did not verify."""
        return self.bureau_refused + self.drift + sum(self.unverified.values())

    def delivery(self, event_type: str, payload: dict) -> None:
        """A message on notify.deliveries."""
        if event_type == "SmsSent":
            self.sms["sent"] += 1
            self.recent_sms.append({k: str(payload.get(k) or "")[:64] for k in
                                    ("sent_at", "phone", "recipient_role", "template", "binding_id", "charge_id")})
        elif event_type == "SmsFailed":
            self.sms["failed"] += 1

    def as_dict(self) -> dict:
        return {"phase": self.phase, "sent": dict(self.sent), "settled": self.settled, "refused": dict(self.refused),
                "paid_fen": dict(self.paid_fen), "grantor_paid": self.grantor_paid,
                "cross_region": self.cross_region, "refunds": self.refunds,
                "refunds_refused": dict(self.refunds_refused), "fraud_suspected": self.fraud_suspected,
                "sms": dict(self.sms), "bindings": dict(self.bindings),
                "bureau_refused": self.bureau_refused, "recent_sms": list(self.recent_sms),
                "quotes": dict(self.quotes), "reconciled": dict(self.reconciled), "disputes": dict(self.disputes),
                "binding_changes": dict(self.binding_changes), "grantor_actions": dict(self.grantor_actions),
                "drift": self.drift, "platform_verified": self.platform_verified,
                "unverified": dict(self.unverified)}
