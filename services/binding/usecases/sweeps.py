"""The payer index's end of life: which ended bindings leave it (contract.md, version 2), pruned
at every commit for the beneficiary concerned and swept periodically for the others."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta

from services.binding.storage.bindings import BindingStore

log = logging.getLogger("binding")


class PayerIndex:
    def __init__(self, store: BindingStore, today: Callable[[], date], payer_grace_days: int) -> None:
        self._store = store
        self._today = today  # China time
        self._grace = timedelta(days=payer_grace_days)

    def ended_before(self) -> date:
        """Bindings that ended before this day leave the payer index; one that ended within the
        grace period still pays for a charge dated while it was in force."""
        return self._today() - self._grace

    async def sweep(self) -> int:
        """Remove the bindings that have ended from the payer index (periodic)."""
        removed = await self._store.sweep_ended_payers(self.ended_before())
        if removed:
            log.info("payer index: %d ended bindings removed", removed)
        return removed
