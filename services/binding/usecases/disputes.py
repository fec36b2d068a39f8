"""A bureau's decision of a dispute (bureau.disputes): the dispute closed, and no longer counted
open on its binding, in its beneficiary's compare-and-set commit (the same commit commands make),
then DisputeResolved on binding.events. Opening a dispute is a command (commands.py)."""

from __future__ import annotations

import logging
from dataclasses import replace

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import envelope
from shared.kafka import Received, dead_letter
from shared.logs import shown
from shared.money import Fen
from shared.signing import KeyFinder, SignatureRefused, Signer, verify_received
from shared.topics import BINDING_EVENTS
from services.binding import contract as c
from services.binding.domain import rules
from services.binding.domain.model import Dispute
from services.binding.metrics import BindingMetrics
from services.binding.storage.bindings import BindingStore, Plan, decode_bindings, epoch, moment
from services.binding.usecases.outcomes import apply_changes
from services.binding.usecases.sweeps import PayerIndex

log = logging.getLogger("binding")


class BureauDecisions:
    def __init__(self, store: BindingStore, broker: KafkaBroker, keys: KeyFinder, metrics: BindingMetrics,
                 payers: PayerIndex) -> None:
        self._store = store
        self._broker = broker
        self._keys = keys  # the operator's trust anchor: a decision is believed only from its region's bureau
        self._metrics = metrics
        self._payers = payers  # a commit prunes the beneficiary's ended payers

    async def decide_dispute(self, msg: Received) -> None:
        """A bureau's DisputeDecided, applied and announced. Anything that cannot be applied
        (malformed, unknown dispute, another region than the grantor's, a second different
        decision) is dead-lettered with why; the same decision again republishes the same
        DisputeResolved. Contract version 3: believed only from the bureau of the decision's
        region, for a grantor of that region (else NOT_SIGNERS, the dead letter's reason beginning
        with the code)."""
        signer = verify_received(msg, self._keys, envelope.now())
        readable = envelope.read(msg.value, c.DISPUTE_DECIDED_TYPES)
        if isinstance(readable, envelope.Unreadable):
            why = readable.error if isinstance(signer, Signer) else f"{signer.value}: {readable.error}"
            return await dead_letter(self._broker, msg, why)
        if isinstance(signer, SignatureRefused):
            return await dead_letter(self._broker, msg, f"{signer.value}: DisputeDecided not believed")
        try:
            c.CommandEnvelope.model_validate(readable.body)
            decided = c.DisputeDecided.model_validate(readable.body["payload"])
        except ValidationError as exc:
            return await dead_letter(self._broker, msg, f"invalid DisputeDecided: {c.describe(exc)}")
        if (refusal := rules.decision_refusal(signer, decided.region)) is not None:
            return await dead_letter(self._broker, msg, f"{refusal.value}: DisputeDecided {shown(decided.dispute_id)} "
                                                        f"for region {decided.region} signed by {signer.key_id}")
        try:
            dispute = await self._close_dispute(decided)
        except rules.DecisionRefused as refused:
            code = f"{refused.code.value}: " if refused.code else ""
            return await dead_letter(self._broker, msg, f"{code}DisputeDecided {shown(decided.dispute_id)}: {refused}")
        event = c.DisputeResolved(dispute_id=dispute.dispute_id, decision=dispute.status.value,
                                  binding_id=dispute.binding_id, grantor_id=dispute.grantor_id,
                                  beneficiary_id=dispute.beneficiary_id, charge_id=dispute.charge_id,
                                  institution_code=dispute.institution_code, amount=Fen(dispute.amount),
                                  decided_at=moment(dispute.decided_at))
        await self._broker.publish(
            envelope.seal(c.DISPUTE_RESOLVED, event, event_id=envelope.outcome_id(dispute.dispute_id, c.DISPUTE_RESOLVED),
                          occurred_at=moment(dispute.decided_at)),
            BINDING_EVENTS, key=dispute.beneficiary_id.encode())
        self._metrics.dispute_decided(dispute.status.value)

    async def _close_dispute(self, decided: c.DisputeDecided) -> Dispute:
        """The dispute as decided, committed (again until no command changed its beneficiary's
        bindings in between)."""
        while True:
            _, found = await self._store.payments_and_disputes([], [decided.dispute_id])
            dispute = found.get(decided.dispute_id)
            ben = dispute.beneficiary_id if dispute else ""
            raw = (await self._store.bindings_read([ben]))[ben] if ben else b""
            state = decode_bindings(ben, raw)
            binding = next((s.binding for s in state if dispute and s.binding.binding_id == dispute.binding_id), None)
            result = rules.decide_dispute(dispute, decided.region, decided.decision, epoch(decided.decided_at),
                                          binding)
            if result is None:
                return dispute
            closed, changed = result
            # decided on what is still out of the payment (issue 21): refunds since it opened count
            payments, _ = await self._store.payments_and_disputes([(closed.grantor_id, closed.reference)], [])
            if (payment := payments.get((closed.grantor_id, closed.reference))) is not None:
                closed = replace(closed, amount=min(closed.amount, payment.amount))
            plan = Plan(ben, expect=raw.decode(), disputes=[closed])
            if changed is not None:
                apply_changes(state, [changed])
                plan.bindings = state
            if (await self._store.commit([plan], self._payers.ended_before()))[0]:
                log.info("dispute %s %s", closed.dispute_id, closed.status.value)
                return closed
