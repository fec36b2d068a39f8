"""Answering subscriptions fetch with a short wait while work flows and a long one once quiet.

On the local Tansu broker a fetch is answered only when its wait has run out, never as soon as a
record arrives (measured: README, "Performance"), so a consumer that must answer within
milliseconds asks every few milliseconds, all day: the idle platform spent most of its CPU on such
empty fetches. Here a
consumer on a short wait (`KAFKA_FETCH_MAX_WAIT_MS`) that has fetched nothing for
`KAFKA_QUIET_AFTER_MS` goes over to `KAFKA_QUIET_FETCH_MAX_WAIT_MS`; the first fetch that
brings a record puts it back on the short wait. Under load nothing changes; the price is that the
first message after a quiet spell waits up to the quiet wait at each such hop. On Apache Kafka a
fetch returns as soon as data arrives, so there the quiet wait costs nothing.

aiokafka builds every FetchRequest from its Fetcher's `_fetch_max_wait_ms` and answers each in
`_proc_fetch_request` (aiokafka 0.12 to 0.14, the versions pyproject.toml allows): `govern` wraps
the one and sets the other. tests/integration/test_fetch_waits.py fails if an upgrade moves them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FetchWaits:
    """The waits, in ms, from the settings. `quiet_ms` no longer than `short_ms`: governing is off."""

    short_ms: int
    quiet_ms: int
    quiet_after_ms: int

    def next_wait(self, brought_records: bool, quiet_for_ms: float) -> int:
        """The next fetch's wait, after a fetch that did or did not bring records, the consumer
        having fetched nothing for `quiet_for_ms`."""
        if brought_records or quiet_for_ms < self.quiet_after_ms:
            return self.short_ms
        return self.quiet_ms

    def governs(self, wait_ms: int) -> bool:
        """A consumer built with `wait_ms` is governed: it is an answering one (short wait) and
        the quiet wait is longer."""
        return wait_ms == self.short_ms < self.quiet_ms


class Governor:
    """Sets one consumer's fetch wait after each of its fetches (see the module)."""

    def __init__(self, fetcher: Any, waits: FetchWaits, clock: Callable[[], float] = time.monotonic) -> None:
        self._fetcher = fetcher
        self._waits = waits
        self._clock = clock
        self._last_records = clock()
        answer = fetcher._proc_fetch_request

        async def answered(assignment: Any, node_id: int, request: Any) -> bool:
            brought = await answer(assignment, node_id, request)
            self.after_fetch(bool(brought))
            return brought

        fetcher._proc_fetch_request = answered

    @property
    def wait_ms(self) -> int:
        return self._fetcher._fetch_max_wait_ms

    def after_fetch(self, brought_records: bool) -> None:
        now = self._clock()
        if brought_records:
            self._last_records = now
        self._fetcher._fetch_max_wait_ms = self._waits.next_wait(brought_records,
                                                                 (now - self._last_records) * 1000)


def govern(consumer: Any, waits: FetchWaits) -> Governor | None:
    """A started aiokafka consumer governed when its wait is the short one; None otherwise (a
    background consumer, or an aiokafka whose fetcher no longer looks as described)."""
    fetcher = getattr(consumer, "_fetcher", None)
    wait = getattr(fetcher, "_fetch_max_wait_ms", None)
    if not isinstance(wait, int) or not callable(getattr(fetcher, "_proc_fetch_request", None)):
        log.warning("fetch waits not governed: this aiokafka's consumer has no Fetcher as expected")
        return None
    return Governor(fetcher, waits) if waits.governs(wait) else None
