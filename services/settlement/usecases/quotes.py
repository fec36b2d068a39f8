"""Quotes (预结算) after they are quoted: the sweeper that releases those due by the platform's
clock, and the announcements (ChargeQuoteReleased) of every release waiting in the outbox,
whoever released it (the sweeper, a charge, a binding paused or revoked)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from faststream.kafka import KafkaBroker

from shared import envelope
from shared.kafka import publish_all
from services.settlement import outcomes
from services.settlement.metrics import QuoteReleased, SettlementMetrics
from services.settlement.storage.accounts import SettlementStore

log = logging.getLogger("settlement")
SWEEP_MOST = 500  # quotes released in one Function call of the sweep


class Quotes:
    def __init__(self, store: SettlementStore, broker: KafkaBroker, metrics: SettlementMetrics,
                 clock: Callable[[], datetime] = envelope.now) -> None:
        self._store = store
        self._broker = broker
        self._metrics = metrics
        self._clock = clock
        self._announcing = asyncio.Lock()  # one drain of the quote outbox at a time in this process
        self._released = asyncio.Event()  # a charge released a quote: wake the sweeper to announce it

    def released(self) -> None:
        """A quote was released off the sweep (by a charge): announce it at once, not at the next round."""
        self._released.set()

    async def sweep_quotes(self) -> int:
        """Release every quote due by the platform's clock (whole, in one Function call), then
        announce every release waiting in the outbox. Answers how many quotes were due."""
        now, due = self._clock(), 0
        while True:  # at most SWEEP_MOST a call, so that no call holds Redis long
            released = await self._store.release_due(int(now.timestamp() * 1000), now.isoformat(timespec="seconds"),
                                                     SWEEP_MOST)
            due += released
            await self.announce_releases()
            if released < SWEEP_MOST:
                return due

    async def announce_releases(self) -> int:
        """Publish ChargeQuoteReleased for the outbox's releases (awaiting the broker's acks), then
        remove them: a crash in between announces them again, with the same event ids."""
        async with self._announcing:
            total = 0
            while releases := await self._store.outbox():
                await publish_all(self._broker, [
                    outcomes.quote_released(r.quote_id, r.institution_code, r.charge_id, r.reason, r.lines,
                                            r.released_at) for r in releases])
                await self._store.announced(releases)
                self._metrics.record([QuoteReleased(r.reason, r.quote_id) for r in releases])
                total += len(releases)
                log.info("announced %d released quotes", len(releases))
            return total

    async def run_sweeper(self, interval: float) -> None:
        """The settlement process's sweep task: every `interval` seconds, or at once when a charge
        released a quote; an error is logged and the next round tries again."""
        while True:
            try:
                await asyncio.wait_for(self._released.wait(), interval)
            except TimeoutError:
                pass
            self._released.clear()
            try:
                await self.sweep_quotes()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("quote sweep failed; trying again in %.1fs", interval)
