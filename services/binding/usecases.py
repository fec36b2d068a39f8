"""The binding service's use cases: decide each command once, record it, publish its outcome."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import date, timedelta

from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ValidationError

from shared import envelope
from shared.identity import mask_id_number
from shared.kafka import Received, dead_letter, reply
from shared.logs import shown
from shared.registrations import registrations
from shared.topics import BINDING_EVENTS
from services.binding import contract as c
from services.binding.domain import rules
from services.binding.domain.model import Binding, Insured, Scheme
from services.binding.domain.reasons import BindingRefused, Reason
from services.binding.storage.bindings import BindingStore, Decision, Outcome, UsedId

log = logging.getLogger("binding")
_BINDING_NAMESPACE = uuid.UUID("0c5e3a4e-7f61-5d0a-8b53-6100b1d1a9c7")


def binding_id_for(command_id: str) -> str:
    """Derived from the command, so a redelivered CreateBinding can never make a second binding."""
    return f"BND-{uuid.uuid5(_BINDING_NAMESPACE, command_id).hex[:24]}"


class BindingService:
    def __init__(self, store: BindingStore, broker: KafkaBroker, today: Callable[[], date], *,
                 name_key: bytes, payer_grace_days: int) -> None:
        self._store = store
        self._broker = broker
        self._today = today  # China time
        self._name_key = name_key
        self._payer_grace = timedelta(days=payer_grace_days)

    # -- binding.commands -------------------------------------------------------------------
    async def handle_command(self, msg: Received) -> None:
        """Answer one command: outcome on binding.events (and on reply_to when asked), or a dead
        letter when it cannot be answered. Returns only once the outcome is published."""
        readable = envelope.read(msg.value, c.COMMAND_TYPES)
        if isinstance(readable, envelope.Unreadable):
            await dead_letter(self._broker, msg, readable.error)
            return
        if readable.event_type == c.QUERY_BINDINGS:
            await reply(self._broker, msg, await self._query(readable), msg.key)
            return
        outcome = await self._decide(readable, msg.key)
        await self._broker.publish(outcome.event, BINDING_EVENTS, key=outcome.key)
        await reply(self._broker, msg, outcome.event, outcome.key)

    async def answer_defect(self, msg: Received) -> None:
        """A command that met a platform defect still gets an answer: PLATFORM_ERROR (the message
        itself is dead-lettered for the operators)."""
        readable = envelope.read(msg.value, c.COMMAND_TYPES)
        if isinstance(readable, envelope.Unreadable):
            return
        outcome = self._refusal(readable, BindingRefused(Reason.PLATFORM_ERROR), msg.key).outcome
        await self._broker.publish(outcome.event, BINDING_EVENTS, key=outcome.key)
        await reply(self._broker, msg, outcome.event, outcome.key)

    async def _decide(self, cmd: envelope.Readable, key: bytes | None) -> Outcome:
        recorded = await self._store.recorded_outcome(cmd.event_id)
        if recorded:
            return recorded
        try:
            c.CommandEnvelope.model_validate(cmd.body)
            payload = c.COMMAND_MODELS[cmd.event_type].model_validate(cmd.body["payload"])
        except ValidationError as exc:
            refused = BindingRefused(c.reason_for(exc), c.describe(exc))
            return await self._store.decide_once(cmd.event_id, None, lambda _, __: self._refusal(cmd, refused, key),
                                                 payers_ended_before=self._payers_ended_before())
        if isinstance(payload, c.CreateBinding):
            return await self._create(cmd, payload)
        return await self._amend(cmd, payload, key)

    async def _create(self, cmd: envelope.Readable, form: c.CreateBinding) -> Outcome:
        request = rules.BindingRequest(
            binding_id=binding_id_for(cmd.event_id),
            grantor=rules.Party(form.grantor.id_number, form.grantor.name, form.grantor.region),
            beneficiary=rules.Party(form.beneficiary.id_number, form.beneficiary.name, form.beneficiary.region),
            relation=form.relation, payment_order=form.payment_order,
            start_date=form.start_date, end_date=form.end_date,
            notice_accepted=form.notice_accepted, signature_digest=form.signature_digest, channel=form.channel,
        )
        grantor, beneficiary = await self._store.insured(form.grantor.id_number, form.beneficiary.id_number)
        key = form.beneficiary.id_number.encode()

        def decide(existing: list[Binding], used: UsedId | None) -> Decision:
            if used is not None:
                return self._created_before(cmd, request.binding_id, existing, used, key)
            try:
                b = rules.create_binding(request, grantor, beneficiary, existing, self._today(),
                                         name_key=self._name_key)
            except BindingRefused as refused:
                return self._refusal(cmd, refused, key)
            log.info("binding %s created: grantor %s (%s) -> beneficiary %s (%s), order %d", b.binding_id,
                     mask_id_number(b.grantor_id), b.grantor_region, mask_id_number(b.beneficiary_id),
                     b.beneficiary_region, b.payment_order)
            event = c.BindingCreated(command_id=cmd.event_id, **_binding_fields(b))
            return Decision(self._seal(cmd, c.BINDING_CREATED, event, key), [b])

        return await self._store.decide_once(cmd.event_id, form.beneficiary.id_number, decide,
                                             payers_ended_before=self._payers_ended_before(),
                                             new_binding_id=request.binding_id)

    def _created_before(self, cmd: envelope.Readable, binding_id: str, existing: list[Binding], used: UsedId,
                        key: bytes | None) -> Decision:
        """A CreateBinding whose binding exists already: this very command made it, and its outcome
        record has expired (a very late redelivery or resend). The binding is never made again,
        whatever became of it (revoked, reordered, ended). The answer is the outcome the command
        had: BindingCreated, with the same event id, rebuilt from the stored binding and the order
        it was created with, so it is the same payload as the first time. A refusal instead would
        tell the caller the opposite of what it was told before, for the same command."""
        made = next((b for b in existing if b.binding_id == binding_id), None)
        if made is None or used.command_id not in (None, cmd.event_id):
            # Another command's binding under this id: derived ids collided. Never overwrite it;
            # a defect (PLATFORM_ERROR and a dead letter for the operators), recorded nowhere.
            raise RuntimeError(f"binding id {binding_id} is already used by another command")
        if used.payment_order is not None:
            made = made.with_order(used.payment_order)
        log.info("command %s: binding %s was made by it already; answered again", shown(cmd.event_id),
                 binding_id)
        event = c.BindingCreated(command_id=cmd.event_id, **_binding_fields(made))
        return Decision(self._seal(cmd, c.BINDING_CREATED, event, key), [])

    def _payers_ended_before(self) -> date:
        """Bindings that ended before this day leave the payer index; one that ended within the
        grace period still pays for a charge dated while it was in force."""
        return self._today() - self._payer_grace

    async def sweep_payers(self) -> int:
        """Remove the bindings that have ended from the payer index (periodic)."""
        removed = await self._store.sweep_ended_payers(self._payers_ended_before())
        if removed:
            log.info("payer index: %d ended bindings removed", removed)
        return removed

    async def _amend(self, cmd: envelope.Readable, form: c.RevokeBinding | c.ChangePaymentOrder,
                     key: bytes | None) -> Outcome:
        beneficiary_id = await self._store.beneficiary_of(form.binding_id)
        key = beneficiary_id.encode() if beneficiary_id else key

        def decide(existing: list[Binding], _: UsedId | None) -> Decision:
            binding = next((b for b in existing if b.binding_id == form.binding_id), None)
            today = self._today()
            try:
                if isinstance(form, c.RevokeBinding):
                    revoked = rules.revoke_binding(binding, form.requested_by, today)
                    event = c.BindingRevoked(command_id=cmd.event_id, binding_id=revoked.binding_id,
                                             grantor_id=revoked.grantor_id, beneficiary_id=revoked.beneficiary_id,
                                             start_date=revoked.start_date, end_date=revoked.end_date)
                    return Decision(self._seal(cmd, c.BINDING_REVOKED, event, key), [revoked])
                changed = rules.change_payment_order(binding, form.payment_order, existing, today)
            except BindingRefused as refused:
                return self._refusal(cmd, refused, key)
            event = c.PaymentOrderChanged(
                command_id=cmd.event_id, binding_id=form.binding_id, beneficiary_id=changed[0].beneficiary_id,
                payment_order=changed[0].payment_order, previous_order=binding.payment_order,
                changes=[c.OrderChange(binding_id=b.binding_id, grantor_id=b.grantor_id, payment_order=b.payment_order,
                                       previous_order=old.payment_order)
                         for b in changed for old in existing if old.binding_id == b.binding_id])
            return Decision(self._seal(cmd, c.PAYMENT_ORDER_CHANGED, event, key), changed)

        return await self._store.decide_once(cmd.event_id, beneficiary_id, decide,
                                             payers_ended_before=self._payers_ended_before())

    async def _query(self, cmd: envelope.Readable) -> bytes:
        """我的共济关系: both roles of a person, the counterpart's ID masked."""
        try:
            c.CommandEnvelope.model_validate(cmd.body)
            query = c.QueryBindings.model_validate(cmd.body["payload"])
        except ValidationError as exc:
            return self._refusal(cmd, BindingRefused(c.reason_for(exc), c.describe(exc)), None).outcome.event
        listed: list[c.ListedBinding] = []
        if query.role in (None, "grantor"):
            listed += [_listed(b, "grantor") for b in await self._store.bindings_of_grantor(query.person_id)]
        if query.role in (None, "beneficiary"):
            listed += [_listed(b, "beneficiary") for b in await self._store.bindings_of_beneficiary(query.person_id)]
        event = c.BindingsListed(command_id=cmd.event_id, person_id=mask_id_number(query.person_id), bindings=listed)
        return envelope.seal(c.BINDINGS_LISTED, event, event_id=envelope.outcome_id(cmd.event_id, c.BINDINGS_LISTED))

    def _refusal(self, cmd: envelope.Readable, refused: BindingRefused, key: bytes | None) -> Decision:
        log.info("command %s refused: %s", shown(cmd.event_id), refused.reason)
        event = c.BindingRejected(command_id=cmd.event_id, reason_code=refused.reason,
                                  message_zh=refused.message_zh, message_en=refused.message_en)
        return Decision(self._seal(cmd, c.BINDING_REJECTED, event, key), [])

    @staticmethod
    def _seal(cmd: envelope.Readable, event_type: str, event: BaseModel, key: bytes | None) -> Outcome:
        return Outcome(envelope.seal(event_type, event, event_id=envelope.outcome_id(cmd.event_id, event_type)), key)

    # -- bureau.accounts ----------------------------------------------------------------------
    async def register_people(self, batch: list[Received]) -> None:
        """Project PersonRegistered into the registry the rules check; other bureau events are
        the settlement service's business."""
        people = [Insured(p.person_id, p.region, Scheme(p.scheme), rules.name_digest(p.name, self._name_key))
                  for p in await registrations(self._broker, batch)]
        if people:
            await self._store.save_insured(people)


def _binding_fields(b: Binding) -> dict:
    return dict(binding_id=b.binding_id, grantor_id=b.grantor_id, beneficiary_id=b.beneficiary_id,
                relation=b.relation.value, payment_order=b.payment_order, start_date=b.start_date,
                end_date=b.end_date, grantor_region=b.grantor_region, beneficiary_region=b.beneficiary_region,
                channel=b.channel)


def _listed(b: Binding, role: str) -> c.ListedBinding:
    counterpart = b.beneficiary_id if role == "grantor" else b.grantor_id
    return c.ListedBinding(binding_id=b.binding_id, role=role, counterpart_id=mask_id_number(counterpart),
                           relation=b.relation.value, payment_order=b.payment_order, start_date=b.start_date,
                           end_date=b.end_date, status=b.status.value, grantor_region=b.grantor_region,
                           beneficiary_region=b.beneficiary_region)
