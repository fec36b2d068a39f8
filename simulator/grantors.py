"""What the province's grantors do in the app while the play goes on: set a monthly limit on a
binding (共济限额), pause and resume it, and now and then dispute a payment they did not
authorise (非本人授权), by the reference their SMS carried.

Pure: `GrantorActions.next(rng)` says which HTTP call to make and for whom; the I/O side
(simulator/run.py) makes it with the grantor's own app token and feeds back what binding.events
and settlement.results said, so the grantors act on the bindings and payments as they are.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

LIMITS = ("300.00", "800.00", "2000.00", None)  # None: the limit is lifted
# Of the actions, per hundred. Disputes are rare: most payments are the family's own.
ACTIONS = {"limit": 40, "pause": 20, "resume": 30, "dispute": 10}


@dataclass(frozen=True)
class Call:
    """One HTTP call to the gateway, made with `grantor_id`'s app token."""

    action: str
    method: str
    path: str
    body: dict | None
    grantor_id: str


@dataclass
class GrantorActions:
    bindings: dict[str, str] = field(default_factory=dict)      # binding id -> grantor
    paused: set[str] = field(default_factory=set)
    disputed: set[str] = field(default_factory=set)              # bindings with a dispute not yet decided
    _payments: deque = field(default_factory=lambda: deque(maxlen=200))  # (grantor, reference, binding)

    # -- what the platform said (fed by the I/O side) -------------------------------------------

    def binding_event(self, event_type: str, payload: dict) -> None:
        binding_id = payload.get("binding_id")
        if event_type == "BindingCreated" and binding_id:
            self.bindings[binding_id] = payload["grantor_id"]
        elif event_type == "BindingRevoked":
            self.bindings.pop(binding_id, None)
        elif event_type == "BindingPaused":
            self.paused.add(binding_id)
        elif event_type == "BindingResumed":
            self.paused.discard(binding_id)
        elif event_type == "DisputeOpened":
            self.disputed.add(binding_id)
        elif event_type == "DisputeResolved":
            self.disputed.discard(binding_id)

    def paid(self, payload: dict) -> None:
        """A ChargeSettled: each grantor line's reference is what the grantor's SMS showed."""
        for line in payload.get("lines", []):
            if line.get("source") == "grantor" and line.get("reference") and line.get("binding_id"):
                self._payments.append((line["person_id"], line["reference"], line["binding_id"]))

    # -- what a grantor does next ----------------------------------------------------------------

    def next(self, rng: random.Random) -> Call | None:
        action = rng.choices(list(ACTIONS), list(ACTIONS.values()))[0]
        return getattr(self, f"_{action}")(rng)

    def _limit(self, rng: random.Random) -> Call | None:
        if not self.bindings:
            return None
        binding_id = rng.choice(sorted(self.bindings))
        return Call("limit", "PUT", f"/v1/bindings/{binding_id}/limit", {"monthly_limit": rng.choice(LIMITS)},
                    self.bindings[binding_id])

    def _pause(self, rng: random.Random) -> Call | None:
        running = sorted(set(self.bindings) - self.paused)
        # at most a fifth of the bindings paused: the play stays mostly paid by grantors
        if not running or len(self.paused) * 5 >= len(self.bindings):
            return None
        binding_id = rng.choice(running)
        return Call("pause", "POST", f"/v1/bindings/{binding_id}/pause", {}, self.bindings[binding_id])

    def _resume(self, rng: random.Random) -> Call | None:
        waiting = sorted((self.paused - self.disputed) & set(self.bindings))
        if not waiting:
            return None
        binding_id = rng.choice(waiting)
        return Call("resume", "POST", f"/v1/bindings/{binding_id}/resume", {}, self.bindings[binding_id])

    def _dispute(self, rng: random.Random) -> Call | None:
        if not self._payments:
            return None
        grantor, reference, binding_id = self._payments.popleft()
        if binding_id in self.disputed or binding_id in self.paused:
            return None
        return Call("dispute", "POST", "/v1/disputes", {"reference": reference}, grantor)
