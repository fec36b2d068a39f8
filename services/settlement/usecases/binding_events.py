"""What settlement does with binding.events: a binding paused or revoked releases every quote it
holds for (I-7); an upheld dispute gives the disputed grantor line back (issue 21).

The reversal lives here, not with the bureau books: it is decided and answered inside the
binding.events batch (its outcomes published before that batch's offsets are committed, so a
redelivery republishes the recorded reversal), and it moves the grantor's account as a refund
does; the bureau only receives its credit Posting."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime

import orjson
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from shared import envelope, topics
from shared.identity import mask_id_number
from shared.institutions import INSTITUTION_CODE_PATTERN
from shared.kafka import Outgoing, Received
from shared.logs import shown
from shared.money import Fen
from services.settlement import contract as c
from services.settlement import outcomes
from services.settlement.metrics import SettlementMetrics
from services.settlement.signatures import Signatures
from services.settlement.storage.accounts import Reversal, SettlementStore
from services.settlement.usecases.answers import Answers, Delivery, dead
from services.settlement.usecases.quotes import Quotes

log = logging.getLogger("settlement")
# binding.events: an upheld dispute makes settlement give the grantor line back (issue 21)
DISPUTE_RESOLVED = "DisputeResolved"
# binding.events that release the holds of a binding (I-4), and the reason a release then gives.
_RELEASES_HOLDS = {"BindingPaused": "binding_paused", "BindingRevoked": "binding_revoked"}
_INSTITUTION = re.compile(INSTITUTION_CODE_PATTERN)
_CHARGE_ID = re.compile(c.CHARGE_ID_PATTERN)


class BindingEvents:
    def __init__(self, store: SettlementStore, broker: KafkaBroker, quotes: Quotes,
                 clock: Callable[[], datetime] = envelope.now, metrics: SettlementMetrics | None = None,
                 signatures: Signatures | None = None) -> None:
        self._store = store
        self._quotes = quotes
        self._clock = clock
        self._delivery = Delivery(topics.BINDING_EVENTS, broker, metrics or SettlementMetrics(CollectorRegistry()),
                                  signatures)

    async def follow_bindings(self, batch: list[Received]) -> None:
        """A binding paused or revoked releases every quote it holds for (I-7); an upheld dispute
        gives the disputed grantor line back (issue 21), its outcomes published before the offsets
        are committed, so a redelivery republishes the recorded reversal."""
        await self._delivery.each(batch, self._binding_batch, dead)
        await self._quotes.announce_releases()

    async def _binding_batch(self, batch: list[Received]) -> Answers:
        now = self._clock()
        at = now.isoformat(timespec="seconds")
        answers = Answers()
        for msg in batch:
            try:
                body = orjson.loads(msg.value)
                kind = body.get("event_type") if isinstance(body, dict) else None
                payload = body.get("payload") if isinstance(kind, str) else None
            except orjson.JSONDecodeError:
                continue  # not ours to judge: the binding service's own readers dead-letter it
            if not isinstance(payload, dict):
                continue
            if kind == DISPUTE_RESOLVED:
                if payload.get("decision") == "upheld" and (reversal := _reversal(payload, at)):
                    answers += await self._reverse(reversal)
                continue
            reason = _RELEASES_HOLDS.get(kind)
            binding_id, beneficiary = payload.get("binding_id"), payload.get("beneficiary_id")
            if not (reason and isinstance(binding_id, str) and isinstance(beneficiary, str)
                    and 0 < len(binding_id) <= 64 and 0 < len(beneficiary) <= 32):
                continue
            if released := await self._store.release_binding(binding_id, beneficiary, reason, at):
                log.info("binding %s %s: %d held quotes released", shown(binding_id), reason, released)
        return answers

    async def _reverse(self, r: Reversal) -> Answers:
        """An upheld dispute: the grantor line given back (the Function reverse_payment), told as
        PaymentReversed on settlement.results and a credit Posting for the grantor's bureau."""
        [done] = await self._store.reverse([r])
        answers = Answers()
        if done.status != "REVERSED":
            log.error("upheld dispute %s of charge %s: %s, nothing reversed", r.dispute_id, shown(r.charge_id),
                      done.status)
            return answers
        if not done.replay:
            log.info("upheld dispute %s: %s given back to grantor %s of charge %s", r.dispute_id,
                     Fen(done.paid - done.refunded_before), mask_id_number(r.grantor_id), shown(r.charge_id))
        value = outcomes.payment_reversed(r.institution_code, r.charge_id, r.dispute_id, done.patient_id,
                                          r.grantor_id, r.binding_id, done.paid, done.refunded_before, done.lines,
                                          done.at)
        answers.outcomes.append(Outgoing(topics.SETTLEMENT_RESULTS, r.charge_id.encode(), value))
        answers.outcomes += outcomes.postings(done.lines, "credit", r.institution_code, r.charge_id, None,
                                              done.patient_id, done.at, dispute_id=r.dispute_id)
        return answers


def _reversal(p: dict, at: str) -> Reversal | None:
    """The Reversal an upheld DisputeResolved asks for, when its ids are the contract's (they go into
    Redis keys and posting ids)."""
    ids_ = [p.get(k) for k in ("dispute_id", "institution_code", "charge_id", "grantor_id", "binding_id")]
    if not all(isinstance(x, str) and 0 < len(x) <= 64 and ":" not in x for x in ids_):
        log.error("upheld DisputeResolved without usable ids: %s", shown(str(p.get("dispute_id"))))
        return None
    if not (_INSTITUTION.fullmatch(ids_[1]) and _CHARGE_ID.fullmatch(ids_[2])):
        return None
    return Reversal(*ids_, at=at)
