"""The notify service as app.py builds it: one set of settings made into its jobs, and its entry
points, each the method of the job that does it (the handlers and the tests call these)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from shared import envelope
from shared.kafka import Outage
from shared.signing import KeyFinder, SigningKey
from services.notify.domain.quiet import QuietHours
from services.notify.metrics import NotifyMetrics
from services.notify.providers.base import SmsProvider
from services.notify.storage.deliveries import DeliveryStore
from services.notify.usecases.deliveries import Deliveries
from services.notify.usecases.directory import Directory
from services.notify.usecases.notices import Notices
from services.notify.usecases.replies import Replies


class NotifyService:
    def __init__(self, store: DeliveryStore, broker: KafkaBroker, provider: SmsProvider, quiet: QuietHours,
                 attempts: int, backoff_ms: int, *, template_codes: dict[str, str] | None = None,
                 lease_seconds: float = 60, unknown_wait_seconds: float = 600,
                 unknown_retry_seconds: float = 10, send_concurrency: int = 100,
                 clock: Callable[[], datetime] = envelope.now, metrics: NotifyMetrics | None = None,
                 keys: KeyFinder, signing_key: SigningKey) -> None:
        metrics = metrics or NotifyMetrics(CollectorRegistry())
        # One outage for every job: Redis or Kafka away is logged once, whichever job meets it.
        outage = Outage("notify")
        self.deliveries = Deliveries(store, broker, provider, quiet, attempts, backoff_ms,
                                     template_codes=template_codes or {}, lease_seconds=lease_seconds,
                                     unknown_wait_seconds=unknown_wait_seconds,
                                     unknown_retry_seconds=unknown_retry_seconds, send_concurrency=send_concurrency,
                                     clock=clock, metrics=metrics, outage=outage)
        self.notices = Notices(store, broker, self.deliveries, clock=clock, outage=outage)
        self.replies = Replies(store, broker, self.deliveries, keys=keys, signing_key=signing_key, metrics=metrics,
                               outage=outage)
        self.directory = Directory(store, broker, keys)
        # settlement.results, binding.events, sms.uplink: answered with SMS
        self.on_settlement_results = self.notices.on_settlement_results
        self.on_binding_events = self.notices.on_binding_events
        self.on_sms_replies = self.replies.on_sms_replies
        # projections
        self.on_bureau_accounts = self.directory.on_bureau_accounts
        self.on_institutions = self.directory.on_institutions
        self.on_binding_projection = self.directory.on_binding_projection
        # periodic
        self.check_endings = self.notices.check_endings
        self.release_due = self.deliveries.release_due
