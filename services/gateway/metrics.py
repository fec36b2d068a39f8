"""What the gateway counts, for /metrics (shared/observability.py).

- `fma_http_requests_total{method, route, status}`: requests answered, by route template (never
  the raw path: it may hold an ID number).
- `fma_http_request_seconds{route}`: how long they took, as a histogram.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("fma_http_requests_total", "HTTP requests answered by the gateway.",
                                ["method", "route", "status"], registry=registry)
        self.seconds = Histogram("fma_http_request_seconds", "Time to answer an HTTP request.", ["route"],
                                 registry=registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def answered(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, route=route, status=str(status)).inc()
        self.seconds.labels(route=route).observe(seconds)
