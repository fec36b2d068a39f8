"""What the live view and the summary show, read from the services' /metrics (Prometheus text,
parsed with prometheus_client's parser). Where a service serves no figure of a kind (an older
build, no HTTP yet), the simulator's own tally from its status file stands in, marked as such."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of every sample in a Prometheus text exposition."""
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.append((s.name, dict(s.labels), float(s.value)))
    return out


def scrape(url: str, timeout: float = 1.0) -> str | None:
    try:
        r = httpx.get(url, timeout=timeout)
        return r.text if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


@dataclass
class Figures:
    settled: int = 0
    refused: Counter = field(default_factory=Counter)       # by reason
    paid_fen: Counter = field(default_factory=Counter)      # own | grantor | cash
    cross_region: int = 0
    refunds: Counter = field(default_factory=Counter)       # settled | refused
    sms: Counter = field(default_factory=Counter)           # sent | failed | unknown
    bindings: Counter = field(default_factory=Counter)      # by outcome
    lag: dict[str, dict[str, float]] = field(default_factory=dict)  # service -> topic -> records behind
    from_simulator: set[str] = field(default_factory=set)   # figures taken from the simulator's tally
    per_second: float = 0.0                                 # charges answered per second, lately
    phase: str = ""                                         # the simulator's
    bureau_sent: Counter = field(default_factory=Counter)   # the simulator's bureau events, by kind
    bureau_refused: int = 0                                 # ... that the platform dead-lettered
    down: list[str] = field(default_factory=list)           # services that have ended, and how
    recent_sms: list[dict] = field(default_factory=list)    # the latest SmsSent the simulator read
    # what the simulator saw of holds, limits, disputes and reconciliation (its tally)
    quotes: Counter = field(default_factory=Counter)        # quoted | released:<reason>
    reconciled: Counter = field(default_factory=Counter)    # <level>:<result>
    disputes: Counter = field(default_factory=Counter)      # opened | upheld | dismissed
    binding_changes: Counter = field(default_factory=Counter)  # paused | resumed | limit_set
    drift: int = 0                                          # AccountDriftDetected

    @property
    def charges(self) -> int:
        return self.settled + sum(self.refused.values())

    @property
    def cross_share(self) -> float:
        return self.cross_region / self.settled if self.settled else 0.0


def read(texts: dict[str, str | None], status: dict | None) -> Figures:
    """Figures from each service's /metrics text (None: not served) and the simulator's tally."""
    f = Figures()
    seen: set[str] = set()
    for service, text in texts.items():
        if not text:
            continue
        try:
            parsed = samples(text)
        except ValueError:
            continue
        for name, labels, value in parsed:
            if name == "fma_charges_total":
                seen.add("charges")
                if labels.get("outcome") == "settled":
                    f.settled += int(value)
                else:
                    f.refused[labels.get("reason") or "?"] += int(value)
            elif name == "fma_paid_fen_total":
                seen.add("paid")
                f.paid_fen[labels.get("source", "?")] += int(value)
            elif name == "fma_cross_region_payments_total":
                seen.add("cross")
                f.cross_region += int(value)
            elif name == "fma_refunds_total":
                f.refunds[labels.get("outcome", "?")] += int(value)
            elif name == "fma_sms_total":
                seen.add("sms")
                f.sms[labels.get("outcome", "?")] += int(value)
            elif name == "fma_binding_commands_total":
                f.bindings[labels.get("outcome", "?")] += int(value)
            elif name == "fma_consumer_lag":
                f.lag.setdefault(service, {})[labels.get("topic", "?")] = value
    f.refused = +f.refused  # drop reasons counted zero
    if status:
        f.phase = status.get("phase", "")
        sent = status.get("sent", {})
        f.bureau_sent = Counter({k: sent.get(k, 0) for k in ("credit", "local_debit", "snapshot")})
        f.bureau_refused = status.get("bureau_refused", 0)
        f.recent_sms = [m for m in status.get("recent_sms", []) if isinstance(m, dict)]
        for name in ("quotes", "reconciled", "disputes", "binding_changes"):
            setattr(f, name, Counter(status.get(name) or {}))
        f.drift = status.get("drift", 0)
        if "charges" not in seen:
            f.settled, f.refused = status.get("settled", 0), Counter(status.get("refused", {}))
            f.from_simulator.add("charges")
        if "paid" not in seen:
            f.paid_fen = Counter(status.get("paid_fen", {}))
            f.from_simulator.add("paid")
        if "cross" not in seen:
            f.cross_region = status.get("cross_region", 0)
            f.from_simulator.add("cross")
        if "sms" not in seen:
            f.sms = Counter(status.get("sms", {}))
            f.from_simulator.add("sms")
        if not f.refunds and status.get("refunds"):
            f.refunds = Counter({"settled": status["refunds"], **{"refused": sum(status.get("refunds_refused", {}).values())}})
        if not f.bindings and status.get("bindings"):
            f.bindings = Counter(status["bindings"])
    return f


class Rate:
    """Charges answered per second over the last few seconds."""

    def __init__(self, window: float = 5.0) -> None:
        self._points: deque[tuple[float, int]] = deque()
        self._window = window

    def add(self, count: int, at: float | None = None) -> float:
        at = time.monotonic() if at is None else at
        self._points.append((at, count))
        while len(self._points) > 2 and at - self._points[0][0] > self._window:
            self._points.popleft()
        (t0, c0), (t1, c1) = self._points[0], self._points[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0
