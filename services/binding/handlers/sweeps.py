"""The binding service's periodic work: ended bindings leave the payer index (contract.md,
version 2), besides being pruned at every write for the beneficiary concerned."""

from __future__ import annotations

import asyncio
import logging

from shared.kafka import Outage
from services.binding.usecases import BindingService

log = logging.getLogger("binding")


async def sweep_payers_every(service: BindingService, period_seconds: float) -> None:
    """Run until cancelled: one sweep at start, then one every `period_seconds`. Redis being
    away is retried with back-off (logged once per outage); any other failure is logged and the
    next period tries again, so the loop never dies."""
    outage = Outage("payer index sweep")
    while True:
        try:
            await outage.retrying(service.sweep_payers)
        except Exception:  # noqa: BLE001 - a defect in one sweep must not end the sweeps
            log.exception("payer index sweep failed; trying again in %.0f s", period_seconds)
        await asyncio.sleep(period_seconds)  # the sweep's period, not synchronisation
