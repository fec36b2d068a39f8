"""The payment projection: settlement.results read into the grantor payments a dispute names (by
grantor and reference), and what refunds returned of them, kept until the dispute window after
the charge closes. Read in its own consumer group, off settlement's hot path."""

from __future__ import annotations

import logging
from datetime import datetime

import orjson

from shared import envelope
from shared.kafka import Received
from shared.money import parse_yuan
from shared.references import may_hold_grantor_line, payment_reference
from services.binding import contract as c
from services.binding.domain.model import Payment
from services.binding.storage.bindings import BindingStore, epoch

log = logging.getLogger("binding")


class PaymentProjection:
    def __init__(self, store: BindingStore, dispute_window_days: int) -> None:
        self._store = store
        self._dispute_window = dispute_window_days * 86_400

    async def project_payments(self, batch: list[Received]) -> None:
        """Keep each grantor line of a ChargeSettled findable by (grantor, reference) until the
        dispute window after its charge closes. Other events, and lines of other sources, are
        not this projection's; a record it cannot read is logged and passed over (settlement's
        own topic: nothing to answer or dead-letter)."""
        now = epoch(envelope.now())
        kept, refunds = [], []
        for msg in batch:
            if not may_hold_grantor_line(msg.value):
                continue  # no grantor line (a charge the patient or cash paid alone): nothing to keep
            try:
                payments = grantor_payments(msg.value)
                returned = grantor_refunds(msg.value)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("reference projection: %s[%d]@%d not read: %s", msg.topic, msg.partition, msg.offset,
                            exc.__class__.__name__)
                continue
            kept += [(p, until) for p, charged in payments if (until := charged + self._dispute_window) > now]
            refunds += [(*r, until) for *r, at in returned if (until := at + self._dispute_window) > now]
        # in this order: a batch holding a charge and its refund keeps both
        await self._store.save_payments(kept)
        await self._store.save_refunds(refunds)


def _grantor_lines(value: bytes, event_type: str) -> tuple[dict, list[tuple[dict, str, str, int]]]:
    """A settlement.results record of `event_type` (else none): its payload, and each grantor line
    with an amount, as (line, grantor, reference, fen). A line without `reference` (written before
    lines carried it) gets it computed."""
    event = orjson.loads(value)
    if not isinstance(event, dict) or event.get("event_type") != event_type:
        return {}, []
    p = event["payload"]
    out = []
    for line in p["lines"]:
        if line.get("source") != "grantor" or not (amount := parse_yuan(line["amount"])):
            continue
        grantor = line["person_id"]
        reference = line.get("reference") or payment_reference(p["institution_code"], p["charge_id"], grantor)
        out.append((line, grantor, reference, amount))
    return p, out


def grantor_payments(value: bytes) -> list[tuple[Payment, int]]:
    """The grantor payments of a settlement.results record (none unless ChargeSettled), each with
    its charge's time (epoch seconds). A line without `binding_id` (written before lines carried
    it) gets its binding found at dispute time."""
    p, lines = _grantor_lines(value, c.CHARGE_SETTLED)
    if not lines:
        return []
    charged = datetime.fromisoformat(p["charged_at"])
    return [(Payment(grantor, reference, p["patient_id"], line.get("binding_id") or "", p["institution_code"],
                     p["charge_id"], amount, charged.astimezone(envelope.CHINA_TZ).date(),
                     line.get("region") or ""), epoch(charged)) for line, grantor, reference, amount in lines]


def grantor_refunds(value: bytes) -> list[tuple[str, str, str, int, int]]:
    """What a RefundSettled returned to grantors (issue 21): (grantor, reference, refund_id, fen,
    refund time in epoch seconds) for each grantor line; none for any other record. A dispute then
    reports and decides what is still out of the payment, not its original amount."""
    p, lines = _grantor_lines(value, c.REFUND_SETTLED)
    if not lines:
        return []
    at = epoch(datetime.fromisoformat(p["settled_at"]))
    return [(grantor, reference, p["refund_id"], amount, at) for _, grantor, reference, amount in lines]
