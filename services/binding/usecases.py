"""The binding service's use cases: decide each command once, record it, publish its outcome.

Commands come in batches (one Kafka fetch) and are decided with three Redis round trips
whatever the batch's size: one read of recorded outcomes, registrations and binding owners; one
read of every beneficiary's bindings; one pipelined commit of each beneficiary's changes with
its commands' outcomes, applied only if its bindings are unchanged since they were read
(compare-and-set). The few beneficiaries that lost a race are read and decided again. Every
rule stays in domain/rules.py; commands for one beneficiary are decided in order, each on the
bindings the ones before it left.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from shared import envelope
from shared.identity import mask_id_number
from shared.kafka import Outgoing, Received, dead_letter, is_transient, publish_all, publish_replies, reply, reply_to
from shared.logs import shown
from shared.registrations import registrations
from shared.topics import BINDING_EVENTS
from services.binding import contract as c
from services.binding.domain import rules
from services.binding.domain.model import Binding, Insured, Scheme
from services.binding.domain.reasons import BindingRefused, Reason
from services.binding.metrics import BindingMetrics
from services.binding.storage.bindings import BindingStore, Plan, Recorded, Stored, decode_bindings, epoch, moment

log = logging.getLogger("binding")
_BINDING_NAMESPACE = uuid.UUID("0c5e3a4e-7f61-5d0a-8b53-6100b1d1a9c7")
# Outcomes rebuilt from their record's payload (everything but command_id).
_RECORDED_MODELS: dict[str, type[BaseModel]] = {c.BINDING_REVOKED: c.BindingRevoked,
                                                 c.PAYMENT_ORDER_CHANGED: c.PaymentOrderChanged}


def binding_id_for(command_id: str) -> str:
    """Derived from the command, so a redelivered CreateBinding can never make a second binding."""
    return f"BND-{uuid.uuid5(_BINDING_NAMESPACE, command_id).hex[:24]}"


@dataclass
class _Command:
    """One command of a batch on its way to an outcome."""

    msg: Received
    cmd: envelope.Readable
    form: c.CreateBinding | c.RevokeBinding | c.ChangePaymentOrder | None
    refused: BindingRefused | None = None  # refused as read: not a well-formed command
    beneficiary_id: str | None = None
    outcome: bytes | None = None
    key: bytes | None = None
    planned: bool = False  # its outcome waits on its beneficiary's commit
    defect: Exception | None = None

    @property
    def command_id(self) -> str:
        return self.cmd.event_id


class BindingService:
    def __init__(self, store: BindingStore, broker: KafkaBroker, today: Callable[[], date], *,
                 name_key: bytes, payer_grace_days: int, metrics: BindingMetrics | None = None) -> None:
        self._store = store
        self._metrics = metrics or BindingMetrics(CollectorRegistry())
        self._broker = broker
        self._today = today  # China time
        self._name_key = name_key
        self._payer_grace = timedelta(days=payer_grace_days)

    # -- binding.commands -------------------------------------------------------------------
    async def handle_command(self, msg: Received) -> None:
        await self.handle_commands([msg])

    async def handle_commands(self, batch: list[Received]) -> None:
        """Answer a batch of commands: each outcome on binding.events (and on reply_to when
        asked), or a dead letter when it cannot be answered. Returns only once every outcome is
        published and acknowledged. A defect met while deciding one command answers it
        PLATFORM_ERROR and dead-letters it; the others are answered as usual."""
        commands: list[_Command] = []
        queries: list[tuple[Received, envelope.Readable]] = []
        for msg in batch:
            readable = envelope.read(msg.value, c.COMMAND_TYPES)
            if isinstance(readable, envelope.Unreadable):
                await dead_letter(self._broker, msg, readable.error)
            elif readable.event_type in c.QUERY_TYPES:
                queries.append((msg, readable))
            else:
                commands.append(_read(msg, readable))
        if commands:
            await self._decide(commands)
            for command in commands:
                if command.defect is not None:
                    log.error("defect while answering %s[%d]@%d: %r", command.msg.topic, command.msg.partition,
                              command.msg.offset, command.defect)
                    await dead_letter(self._broker, command.msg, f"unhandled {command.defect.__class__.__name__}")
            await publish_all(self._broker, [Outgoing(BINDING_EVENTS, x.key, x.outcome) for x in commands])
            self._metrics.answered(x.outcome for x in commands)
            await publish_replies(self._broker, [r for x in commands for r in reply_to(x.msg, x.key, x.outcome)])
            log.info("%d commands answered", len(commands))
        for msg, readable in queries:
            await reply(self._broker, msg, await self._query(readable), msg.key)

    async def answer_defect(self, msg: Received) -> None:
        """A command that met a platform defect still gets an answer: PLATFORM_ERROR (the message
        itself is dead-lettered for the operators)."""
        readable = envelope.read(msg.value, c.COMMAND_TYPES)
        if isinstance(readable, envelope.Unreadable):
            return
        event = self._rejection(readable.event_id, BindingRefused(Reason.PLATFORM_ERROR), epoch(envelope.now()))
        await self._broker.publish(event, BINDING_EVENTS, key=msg.key)
        await reply(self._broker, msg, event, msg.key)

    async def _decide(self, commands: list[_Command]) -> None:
        first: dict[str, _Command] = {}
        for command in commands:
            first.setdefault(command.command_id, command)
        undecided = list(first.values())
        while undecided:
            undecided = await self._decide_round(undecided)
        for command in commands:  # the same command twice in one batch: the same answer twice
            original = first[command.command_id]
            command.outcome, command.key = original.outcome, original.key

    async def _decide_round(self, commands: list[_Command]) -> list[_Command]:
        """Decide `commands` on what Redis holds now and commit; returns those whose beneficiary
        changed meanwhile (to be decided again)."""
        today, at = self._today(), epoch(envelope.now())
        creates = [x for x in commands if isinstance(x.form, c.CreateBinding)]
        amends = [x for x in commands if isinstance(x.form, (c.RevokeBinding, c.ChangePaymentOrder))]
        made_here = {binding_id_for(x.command_id): x.form.beneficiary.id_number for x in creates}
        outs, people, owners = await self._store.lookup(
            [x.command_id for x in commands],
            list({p: None for x in creates for p in (x.form.grantor.id_number, x.form.beneficiary.id_number)}),
            list({**made_here, **{x.form.binding_id: None for x in amends}}))
        for x in creates:
            x.beneficiary_id = x.form.beneficiary.id_number
        for x in amends:
            x.beneficiary_id = owners.get(x.form.binding_id) or made_here.get(x.form.binding_id)
        records = await self._store.bindings_read(list({x.beneficiary_id: None for x in commands
                                                          if x.beneficiary_id and x.command_id not in outs}))
        states = {ben: decode_bindings(ben, raw) for ben, raw in records.items()}
        plans = {ben: Plan(ben, expect=raw.decode()) for ben, raw in records.items()} | {None: Plan(None)}
        for x in commands:
            x.planned, x.defect = False, None
            if x.command_id in outs:
                x.outcome, x.key = self._recorded(x.command_id, outs[x.command_id]), outs[x.command_id].key
                continue
            try:
                self._decide_one(x, states, plans, people, owners, today, at)
            except Exception as exc:
                if is_transient(exc):
                    raise
                x.defect = exc
                x.outcome, x.key = self._rejection(x.command_id, BindingRefused(Reason.PLATFORM_ERROR), at), x.msg.key
        to_commit = [p for p in plans.values() if p.outcomes or p.bindings is not None]
        applied = await self._store.commit(to_commit, self._payers_ended_before())
        lost = {p.beneficiary_id for p, ok in zip(to_commit, applied) if not ok}
        return [x for x in commands if x.planned and x.beneficiary_id in lost]

    def _decide_one(self, x: _Command, states: dict[str, list[Stored]], plans: dict[str | None, Plan],
                    people: dict[str, Insured], owners: dict[str, str], today: date, at: int) -> None:
        """Decide one command on its beneficiary's bindings as the batch has left them so far;
        the state and the plan change only once the command is decided."""
        ben = x.beneficiary_id
        plan = plans[ben]
        state = states.get(ben, []) if ben else []
        x.key = ben.encode() if ben else x.msg.key
        x.planned = ben is not None
        if x.refused is not None:
            return self._refuse(x, plan, x.refused, at)
        if isinstance(x.form, c.CreateBinding):
            return self._create(x, x.form, state, plan, people, owners, today, at)
        binding = next((s for s in state if s.binding.binding_id == x.form.binding_id), None)
        try:
            if isinstance(x.form, c.RevokeBinding):
                changed = [rules.revoke_binding(binding and binding.binding, x.form.requested_by, today)]
            else:
                changed = rules.change_payment_order(binding and binding.binding, x.form.payment_order,
                                                     [s.binding for s in state], today, x.form.requested_by)
        except BindingRefused as refused:
            return self._refuse(x, plan, refused, at)
        before = {s.binding.binding_id: s.binding for s in state}
        if isinstance(x.form, c.RevokeBinding):
            b = changed[0]
            event_type, event = c.BINDING_REVOKED, c.BindingRevoked(
                command_id=x.command_id, binding_id=b.binding_id, grantor_id=b.grantor_id,
                beneficiary_id=b.beneficiary_id, start_date=b.start_date, end_date=b.end_date)
        else:
            event_type, event = c.PAYMENT_ORDER_CHANGED, c.PaymentOrderChanged(
                command_id=x.command_id, binding_id=x.form.binding_id, beneficiary_id=ben,
                payment_order=changed[0].payment_order, previous_order=binding.binding.payment_order,
                changes=[c.OrderChange(binding_id=b.binding_id, grantor_id=b.grantor_id, payment_order=b.payment_order,
                                       previous_order=before[b.binding_id].payment_order) for b in changed])
        by_id = {b.binding_id: b for b in changed}
        state[:] = [replace(s, binding=by_id.get(s.binding.binding_id, s.binding)) for s in state]
        plan.bindings = state
        data = event.model_dump_json(exclude={"command_id"}, exclude_none=True)
        plan.outcomes.append((x.command_id, Recorded(event_type, at, x.key, data)))
        x.outcome = _seal(x.command_id, event_type, event, at)

    def _create(self, x: _Command, form: c.CreateBinding, state: list[Stored], plan: Plan,
                people: dict[str, Insured], owners: dict[str, str], today: date, at: int) -> None:
        binding_id = binding_id_for(x.command_id)
        made = _made_by(x.command_id, state)
        if made is not None:
            # This very command made it already (a redelivery, or a resend however late): the
            # binding is never made again, whatever became of it, and the answer is the one the
            # command had, rebuilt from the binding as made.
            x.planned = False
            x.outcome = self._created(x.command_id, made)
            return
        if owners.get(binding_id) not in (None, form.beneficiary.id_number):
            # Another beneficiary's binding under this id: derived ids collided. Never overwrite
            # it; a defect (PLATFORM_ERROR and a dead letter for the operators), recorded nowhere.
            raise RuntimeError(f"binding id {binding_id} is already used for another beneficiary")
        request = rules.BindingRequest(
            binding_id=binding_id,
            grantor=rules.Party(form.grantor.id_number, form.grantor.name, form.grantor.region),
            beneficiary=rules.Party(form.beneficiary.id_number, form.beneficiary.name, form.beneficiary.region),
            relation=form.relation, payment_order=form.payment_order,
            start_date=form.start_date, end_date=form.end_date,
            notice_accepted=form.notice_accepted, signature_digest=form.signature_digest, channel=form.channel,
        )
        try:
            b = rules.create_binding(request, people.get(form.grantor.id_number),
                                     people.get(form.beneficiary.id_number), [s.binding for s in state], today,
                                     name_key=self._name_key)
        except BindingRefused as refused:
            return self._refuse(x, plan, refused, at)
        made = Stored(b, b.payment_order, at)
        state.append(made)
        plan.bindings = state
        plan.new_grantors.append(b.grantor_id)
        plan.new_ids.append(b.binding_id)
        log.debug("binding %s created: grantor %s (%s) -> beneficiary %s (%s), order %d", b.binding_id,
                  mask_id_number(b.grantor_id), b.grantor_region, mask_id_number(b.beneficiary_id),
                  b.beneficiary_region, b.payment_order)
        x.outcome = self._created(x.command_id, made)

    def _refuse(self, x: _Command, plan: Plan, refused: BindingRefused, at: int) -> None:
        log.debug("command %s refused: %s", shown(x.command_id), refused.reason)
        plan.outcomes.append((x.command_id, Recorded(c.BINDING_REJECTED, at, x.key,
                                                     f"{refused.reason.value}|{refused.detail}")))
        x.outcome = self._rejection(x.command_id, refused, at)

    @staticmethod
    def _created(command_id: str, made: Stored) -> bytes:
        """BindingCreated as first published: the order the binding was created with, its time."""
        event = c.BindingCreated(command_id=command_id,
                                 **_binding_fields(made.binding.with_order(made.created_order)))
        return _seal(command_id, c.BINDING_CREATED, event, made.created_at)

    @staticmethod
    def _rejection(command_id: str, refused: BindingRefused, at: int) -> bytes:
        event = c.BindingRejected(command_id=command_id, reason_code=refused.reason,
                                  message_zh=refused.message_zh, message_en=refused.message_en)
        return _seal(command_id, c.BINDING_REJECTED, event, at)

    def _recorded(self, command_id: str, r: Recorded) -> bytes:
        """The recorded outcome, rebuilt to the same bytes."""
        if r.event_type == c.BINDING_REJECTED:
            reason, _, detail = r.data.partition("|")
            return self._rejection(command_id, BindingRefused(Reason(reason), detail), r.at)
        event = _RECORDED_MODELS[r.event_type].model_validate({**json.loads(r.data), "command_id": command_id})
        return _seal(command_id, r.event_type, event, r.at)

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

    async def _query(self, cmd: envelope.Readable) -> bytes:
        """The answer to a query (c.QUERY_TYPES), or its refusal when it is not well-formed."""
        try:
            c.CommandEnvelope.model_validate(cmd.body)
            query = c.COMMAND_MODELS[cmd.event_type].model_validate(cmd.body["payload"])
        except ValidationError as exc:
            return self._rejection(cmd.event_id, BindingRefused(c.reason_for(exc), c.describe(exc)),
                                   epoch(envelope.now()))
        if isinstance(query, c.QueryCommandOutcome):
            return await self._outcome_of(cmd.event_id, query.command_id)
        if isinstance(query, c.QueryPerson):
            return await self._person_found(cmd.event_id, query)
        return await self._bindings_listed(cmd.event_id, query)

    async def _outcome_of(self, query_id: str, command_id: str) -> bytes:
        """An earlier command's outcome, found and rebuilt exactly as a redelivery of that command
        finds and rebuilds it (`_decide_round`, `_create`): a recorded outcome first, else the
        binding the command made; so the answer is byte for byte what binding.events carried."""
        binding_id = binding_id_for(command_id)
        outs, _, owners = await self._store.lookup([command_id], [], [binding_id])
        if command_id in outs:
            return self._recorded(command_id, outs[command_id])
        if (ben := owners.get(binding_id)) is not None:
            records = await self._store.bindings_read([ben])
            if (made := _made_by(command_id, decode_bindings(ben, records[ben]))) is not None:
                return self._created(command_id, made)
        event = c.CommandOutcomeUnknown(command_id=command_id)
        return envelope.seal(c.COMMAND_OUTCOME_UNKNOWN, event,
                             event_id=envelope.outcome_id(query_id, c.COMMAND_OUTCOME_UNKNOWN))

    async def _person_found(self, query_id: str, query: c.QueryPerson) -> bytes:
        """A person's registration as the rules see it; a name sent is compared by its keyed
        digest (rules.name_matches, the comparison behind NAME_MISMATCH), never kept or logged."""
        _, people, _ = await self._store.lookup([], [query.person_id], [])
        insured = people.get(query.person_id)
        matches = None
        if insured is not None and query.name is not None:
            matches = rules.name_matches(insured, query.name, self._name_key)
        event = c.PersonFound(command_id=query_id, person_id=mask_id_number(query.person_id),
                              registered=insured is not None, region=insured and insured.region,
                              scheme=insured and insured.scheme.value, name_matches=matches)
        return envelope.seal(c.PERSON_FOUND, event, event_id=envelope.outcome_id(query_id, c.PERSON_FOUND))

    async def _bindings_listed(self, query_id: str, query: c.QueryBindings) -> bytes:
        """我的共济关系: both roles of a person, the counterpart's ID masked."""
        listed: list[c.ListedBinding] = []
        if query.role in (None, "grantor"):
            listed += [_listed(b, "grantor") for b in await self._store.bindings_of_grantor(query.person_id)]
        if query.role in (None, "beneficiary"):
            listed += [_listed(b, "beneficiary") for b in await self._store.bindings_of_beneficiary(query.person_id)]
        event = c.BindingsListed(command_id=query_id, person_id=mask_id_number(query.person_id), bindings=listed)
        return envelope.seal(c.BINDINGS_LISTED, event, event_id=envelope.outcome_id(query_id, c.BINDINGS_LISTED))

    # -- bureau.accounts ----------------------------------------------------------------------
    async def register_people(self, batch: list[Received]) -> None:
        """Project PersonRegistered into the registry the rules check; other bureau events are
        the settlement service's business."""
        people = [Insured(p.person_id, p.region, Scheme(p.scheme), rules.name_digest(p.name, self._name_key))
                  for p in await registrations(self._broker, batch)]
        if people:
            await self._store.save_insured(people)


def _read(msg: Received, cmd: envelope.Readable) -> _Command:
    """A readable command, typed; a missing or ill-typed field makes it a refusal."""
    try:
        c.CommandEnvelope.model_validate(cmd.body)
        form = c.COMMAND_MODELS[cmd.event_type].model_validate(cmd.body["payload"])
    except ValidationError as exc:
        return _Command(msg, cmd, None, refused=BindingRefused(c.reason_for(exc), c.describe(exc)))
    return _Command(msg, cmd, form)


def _made_by(command_id: str, state: list[Stored]) -> Stored | None:
    """The binding a CreateBinding made, among its beneficiary's bindings (its id is derived from
    the command's)."""
    binding_id = binding_id_for(command_id)
    return next((s for s in state if s.binding.binding_id == binding_id), None)


def _seal(command_id: str, event_type: str, event: BaseModel, at: int) -> bytes:
    return envelope.seal(event_type, event, event_id=envelope.outcome_id(command_id, event_type),
                         occurred_at=moment(at))


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
