"""binding.commands: decide each command once, record it, publish its outcome (create, revoke,
change of payment order, limit, pause, resume, and a grantor's dispute of a payment).

Commands come in batches (one Kafka fetch) and are decided with three Redis round trips
whatever the batch's size: one read of recorded outcomes, registrations and binding owners; one
read of every beneficiary's bindings; one pipelined commit of each beneficiary's changes with
its commands' outcomes, applied only if its bindings are unchanged since they were read
(compare-and-set). The few beneficiaries that lost a race are read and decided again. Every
rule stays in domain/rules.py; commands for one beneficiary are decided in order, each on the
bindings the ones before it left.

Disputes (非本人授权) take part in the same compare-and-set: opening one pauses the binding that
paid and records the dispute in its beneficiary's commit (a bureau's decision closes it the same
way, disputes.py). The payment a dispute names is found in the payment projection (payments.py),
and an unknown reference is answered only once that projection has caught up.

Contract version 3: every message read here is verified first (shared/signing.py, the operator's
keys). A command or query is believed only from the gateway's key (notify's for DisputePayment);
one that is not is answered BindingRejected with the refusal's code on binding.events, never
recorded. Queries read on this topic are answered by queries.py. Replies are signed with this
service's key.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ValidationError

from shared import envelope
from shared.identity import mask_id_number
from shared.kafka import Outgoing, Received, dead_letter, is_transient, publish_all, publish_replies, reply_to
from shared.logs import shown
from shared.money import Fen
from shared.signing import KEY_ID_PATTERN, SIGNER, KeyFinder, SignatureRefused, Signer, SigningKey, verify_received
from shared.topics import BINDING_EVENTS, SETTLEMENT_RESULTS
from services.binding import contract as c
from services.binding.domain import rules
from services.binding.domain.model import Binding, Dispute, Insured, Payment
from services.binding.domain.reasons import BindingRefused, Reason
from services.binding.metrics import BindingMetrics
from services.binding.storage.bindings import BindingStore, Plan, Recorded, Stored, decode_bindings, epoch, moment
from services.binding.usecases.outcomes import (apply_changes, binding_id_for, created, fen, made_by, recorded,
                                                rejection, seal)
from services.binding.usecases.queries import Queries
from services.binding.usecases.sweeps import PayerIndex

log = logging.getLogger("binding")
# Commands that name the binding they change (its beneficiary is found by bnd:id).
_BY_BINDING_ID = (c.RevokeBinding, c.ChangePaymentOrder, c.SetGrantorLimit, c.PauseBinding, c.ResumeBinding)


@dataclass
class _Command:
    """One command of a batch on its way to an outcome."""

    msg: Received
    cmd: envelope.Readable
    form: BaseModel | None
    refused: BindingRefused | None = None  # refused as read: not a well-formed command
    beneficiary_id: str | None = None
    outcome: bytes | None = None
    key: bytes | None = None
    # published with the outcome, not replied (a dispute's BindingPaused and FraudSuspected)
    extra: list[Outgoing] = field(default_factory=list)
    planned: bool = False  # its outcome waits on its beneficiary's commit
    defect: Exception | None = None

    @property
    def command_id(self) -> str:
        return self.cmd.event_id


class Commands:
    def __init__(self, store: BindingStore, broker: KafkaBroker, today: Callable[[], date], *,
                 name_key: bytes, keys: KeyFinder, signing_key: SigningKey, metrics: BindingMetrics,
                 payers: PayerIndex, queries: Queries,
                 references_caught_up: Callable[[], Awaitable[None]] | None = None) -> None:
        self._store = store
        # Contract version 3: whose signatures are believed (the operator's trust anchor), and the
        # key this service signs its replies with.
        self._keys = keys
        self._signing_key = signing_key
        self._metrics = metrics
        self._broker = broker
        self._today = today  # China time
        self._name_key = name_key
        self._payers = payers  # a commit prunes the beneficiary's ended payers
        self._queries = queries  # queries come on binding.commands too
        # Waits until the payment projection has read what settlement.results holds now: an
        # unknown reference is answered only then (a projection behind is never a final answer).
        self._references_caught_up = references_caught_up

    async def handle_command(self, msg: Received) -> None:
        await self.handle_commands([msg])

    async def handle_commands(self, batch: list[Received]) -> None:
        """Answer a batch of commands: each outcome on binding.events (and on reply_to when
        asked), or a dead letter when it cannot be answered. Returns only once every outcome is
        published and acknowledged. A defect met while deciding one command answers it
        PLATFORM_ERROR and dead-letters it; the others are answered as usual."""
        commands: list[_Command] = []
        queries: list[tuple[Received, envelope.Readable]] = []
        refused: list[tuple[Received, bytes, bool]] = []
        now = envelope.now()
        for msg in batch:
            # Verified before anything reads the payload: believed only from the platform's keys.
            signer = verify_received(msg, self._keys, now)
            readable = envelope.read(msg.value, c.COMMAND_TYPES)
            if isinstance(readable, envelope.Unreadable):
                why = readable.error if isinstance(signer, Signer) else f"{signer.value}: {readable.error}"
                await dead_letter(self._broker, msg, why)
            elif (refusal := rules.sender_refusal(signer, readable.event_type, _named_signer(msg))) is not None:
                refused.append(self._not_believed(msg, readable, signer, refusal, now))
            elif readable.event_type in c.QUERY_TYPES:
                queries.append((msg, readable))
            else:
                commands.append(_read(msg, readable))
        if refused:
            # Never recorded: a resend signed as it should be is decided afresh.
            await publish_all(self._broker, [Outgoing(BINDING_EVENTS, msg.key, outcome) for msg, outcome, _ in refused])
            self._metrics.answered(outcome for _, outcome, _ in refused)
            await self._reply([r for msg, outcome, replied in refused if replied for r in reply_to(msg, msg.key, outcome)])
        if commands:
            await self._decide(commands)
            for command in commands:
                if command.defect is not None:
                    log.error("defect while answering %s[%d]@%d: %r", command.msg.topic, command.msg.partition,
                              command.msg.offset, command.defect)
                    await dead_letter(self._broker, command.msg, f"unhandled {command.defect.__class__.__name__}")
            await publish_all(self._broker, [m for x in commands
                                             for m in [Outgoing(BINDING_EVENTS, x.key, x.outcome), *x.extra]])
            self._metrics.answered(x.outcome for x in commands)
            await self._reply([r for x in commands for r in reply_to(x.msg, x.key, x.outcome)])
            log.info("%d commands answered", len(commands))
        for msg, readable in queries:
            await self._reply(reply_to(msg, msg.key, await self._queries.answer(readable)))

    def _not_believed(self, msg: Received, readable: envelope.Readable, signer: Signer | SignatureRefused,
                      refusal: SignatureRefused, now: datetime) -> tuple[Received, bytes, bool]:
        """BindingRejected with the refusal's code, under an event id of its own (an authentic
        command of the same id is answered under another), and whether to reply: never to a
        message not proven to come from anyone, a NOT_SIGNERS only where its signer may read."""
        reason = Reason(refusal.value)
        named = signer.key_id if isinstance(signer, Signer) else _named_signer(msg)
        detail = f"{named} may not send {readable.event_type}" if reason is Reason.NOT_SIGNERS else ""
        refused = BindingRefused(reason, detail)
        event = c.BindingRejected(command_id=readable.event_id, reason_code=reason, message_zh=refused.message_zh,
                                  message_en=refused.message_en)
        outcome = envelope.seal(c.BINDING_REJECTED, event, occurred_at=now,
                                event_id=envelope.outcome_id(readable.event_id, f"{c.BINDING_REJECTED}/{reason.value}"))
        log.info("%s %s from %s[%d]@%d not believed: %s", readable.event_type, shown(readable.event_id), msg.topic,
                 msg.partition, msg.offset, refusal.value)
        return msg, outcome, isinstance(signer, Signer) and rules.may_read_reply(signer, msg.reply_to)

    async def _reply(self, replies: list[Outgoing]) -> None:
        """Replies are what a caller reads as the platform's word: each signed with this service's key."""
        await publish_replies(self._broker, [
            replace(r, headers=(r.headers or {}) | self._signing_key.headers(r.topic, r.key, r.value))
            for r in replies])

    async def answer_defect(self, msg: Received) -> None:
        """A command that met a platform defect still gets an answer: PLATFORM_ERROR (the message
        itself is dead-lettered for the operators); replied only to a sender that is believed."""
        readable = envelope.read(msg.value, c.COMMAND_TYPES)
        if isinstance(readable, envelope.Unreadable):
            return
        event = rejection(readable.event_id, BindingRefused(Reason.PLATFORM_ERROR), epoch(envelope.now()))
        await self._broker.publish(event, BINDING_EVENTS, key=msg.key)
        signer = verify_received(msg, self._keys, envelope.now())
        if rules.sender_refusal(signer, readable.event_type, _named_signer(msg)) is None:
            await self._reply(reply_to(msg, msg.key, event))

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
        amends = [x for x in commands if isinstance(x.form, _BY_BINDING_ID)]
        disputes = [x for x in commands if isinstance(x.form, c.DisputePayment)]
        made_here = {binding_id_for(x.command_id): x.form.beneficiary.id_number for x in creates}
        outs, people, owners = await self._store.lookup(
            [x.command_id for x in commands],
            list({p: None for x in creates for p in (x.form.grantor.id_number, x.form.beneficiary.id_number)}),
            list({**made_here, **{x.form.binding_id: None for x in amends}}), now=at)
        for x in creates:
            x.beneficiary_id = x.form.beneficiary.id_number
        for x in amends:
            x.beneficiary_id = owners.get(x.form.binding_id) or made_here.get(x.form.binding_id)
        payments, opened = await self._payments([x.form for x in disputes if x.command_id not in outs])
        for x in disputes:
            payment = payments.get((x.form.requested_by, x.form.reference))
            x.beneficiary_id = payment and payment.beneficiary_id
        records = await self._store.bindings_read(list({x.beneficiary_id: None for x in commands
                                                          if x.beneficiary_id and x.command_id not in outs}))
        states = {ben: decode_bindings(ben, raw) for ben, raw in records.items()}
        plans = {ben: Plan(ben, expect=raw.decode()) for ben, raw in records.items()} | {None: Plan(None)}
        for x in commands:
            x.planned, x.defect = False, None
            if x.command_id in outs:
                x.outcome, x.key = recorded(x.command_id, outs[x.command_id]), outs[x.command_id].key
                x.extra = self._published_with(x.command_id, outs[x.command_id])
                continue
            try:
                self._decide_one(x, states, plans, people, owners, today, at, payments, opened)
            except Exception as exc:
                if is_transient(exc):
                    raise
                x.defect = exc
                x.outcome, x.key = rejection(x.command_id, BindingRefused(Reason.PLATFORM_ERROR), at), x.msg.key
        to_commit = [p for p in plans.values() if p.outcomes or p.bindings is not None]
        applied = await self._store.commit(to_commit, self._payers.ended_before())
        lost = {p.beneficiary_id for p, ok in zip(to_commit, applied) if not ok}
        return [x for x in commands if x.planned and x.beneficiary_id in lost]

    async def _payments(self, forms: list[c.DisputePayment],
                        ) -> tuple[dict[tuple[str, str], Payment], dict[str, Dispute]]:
        """The payments the disputes name, and the disputes already opened of them. A reference
        not found is looked for again once the reference projection has caught up with
        settlement.results: a payment settled a moment ago may not be projected yet."""
        if not forms:
            return {}, {}
        refs = list({(f.requested_by, f.reference): None for f in forms})
        ids = [rules.dispute_id_for(g, r) for g, r in refs]
        payments, opened = await self._store.payments_and_disputes(refs, ids)
        if len(payments) < len(refs) and self._references_caught_up is not None:
            await self._references_caught_up()
            payments, opened = await self._store.payments_and_disputes(refs, ids)
        return payments, opened

    def _decide_one(self, x: _Command, states: dict[str, list[Stored]], plans: dict[str | None, Plan],
                    people: dict[str, Insured], owners: dict[str, str], today: date, at: int,
                    payments: dict[tuple[str, str], Payment], opened: dict[str, Dispute]) -> None:
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
        if isinstance(x.form, c.DisputePayment):
            return self._dispute(x, x.form, state, plan, payments, opened, at)
        form = x.form
        stored = next((s for s in state if s.binding.binding_id == form.binding_id), None)
        binding = stored and stored.binding
        try:
            if isinstance(form, c.RevokeBinding):
                changed = [rules.revoke_binding(binding, form.requested_by, today)]
            elif isinstance(form, c.ChangePaymentOrder):
                changed = rules.change_payment_order(binding, form.payment_order, [s.binding for s in state], today,
                                                     form.requested_by)
            elif isinstance(form, c.SetGrantorLimit):
                changed = [rules.set_grantor_limit(binding, form.requested_by, form.monthly_limit, today)]
            elif isinstance(form, c.PauseBinding):
                changed = [rules.pause_binding(binding, form.requested_by, today)]
            else:
                changed = [rules.resume_binding(binding, form.requested_by, today)]
        except BindingRefused as refused:
            return self._refuse(x, plan, refused, at)
        event_type, event = _amended(x.command_id, form, binding, changed, state)
        apply_changes(state, changed)
        plan.bindings = state
        self._record(x, plan, event_type, event, at)

    def _record(self, x: _Command, plan: Plan, event_type: str, event: BaseModel, at: int, **kept) -> None:
        """Record the outcome with the plan (its payload but command_id, and `kept`) and seal it."""
        data = event.model_dump_json(exclude={"command_id"}, exclude_none=True)
        if kept:
            data = json.dumps({**json.loads(data), **kept}, ensure_ascii=False, separators=(",", ":"))
        plan.outcomes.append((x.command_id, Recorded(event_type, at, x.key, data)))
        x.outcome = seal(x.command_id, event_type, event, at)
        x.extra = self._published_with(x.command_id, plan.outcomes[-1][1])

    def _dispute(self, x: _Command, form: c.DisputePayment, state: list[Stored], plan: Plan,
                 payments: dict[tuple[str, str], Payment], opened: dict[str, Dispute], at: int) -> None:
        """非本人授权: open the dispute, and pause the binding that paid in the same commit."""
        payment = payments.get((form.requested_by, form.reference))
        dispute_id = rules.dispute_id_for(form.requested_by, form.reference)
        binding = payment and rules.paying_binding(payment, [s.binding for s in state])
        try:
            dispute, changed = rules.open_dispute(payment, opened.get(dispute_id), binding, form.requested_by,
                                                  form.channel, at)
        except BindingRefused as refused:
            return self._refuse(x, plan, refused, at)
        opened[dispute_id] = dispute
        if changed is not None:
            apply_changes(state, [changed])
            plan.bindings = state
        plan.disputes.append(dispute)
        log.info("dispute %s opened by grantor %s (%s) of charge %s, binding %s%s", dispute_id,
                 mask_id_number(dispute.grantor_id), form.channel, shown(dispute.charge_id), dispute.binding_id,
                 " paused" if dispute.paused_binding else "")
        event = c.DisputeOpened(
            command_id=x.command_id, dispute_id=dispute_id, reference=dispute.reference,
            binding_id=dispute.binding_id, grantor_id=dispute.grantor_id, beneficiary_id=dispute.beneficiary_id,
            charge_id=dispute.charge_id, institution_code=dispute.institution_code, amount=Fen(dispute.amount),
            channel=dispute.channel, opened_at=moment(at), grantor_region=dispute.grantor_region)
        self._record(x, plan, c.DISPUTE_OPENED, event, at, paused_binding=dispute.paused_binding)

    def _published_with(self, command_id: str, r: Recorded) -> list[Outgoing]:
        """What an outcome is published with (never replied): a DisputeOpened with the binding's
        BindingPaused (when it paused it) on binding.events and FraudSuspected of kind
        grantor_dispute on settlement.results (key charge_id), rebuilt to the same bytes."""
        if r.event_type != c.DISPUTE_OPENED:
            return []
        recorded = json.loads(r.data)
        o = c.DisputeOpened.model_validate({**recorded, "command_id": command_id})
        out = []
        if recorded.get("paused_binding"):
            paused = c.BindingPaused(command_id=command_id, binding_id=o.binding_id, grantor_id=o.grantor_id,
                                     beneficiary_id=o.beneficiary_id, cause="dispute", dispute_id=o.dispute_id)
            out.append(Outgoing(BINDING_EVENTS, r.key, seal(command_id, c.BINDING_PAUSED, paused, r.at)))
        fraud = c.DisputeFraudSuspected(charge_id=o.charge_id, patient_id=o.beneficiary_id,
                                        institution_code=o.institution_code, dispute_id=o.dispute_id,
                                        grantor_id=o.grantor_id, binding_id=o.binding_id, amount=Fen(o.amount))
        out.append(Outgoing(SETTLEMENT_RESULTS, o.charge_id.encode(), seal(command_id, c.FRAUD_SUSPECTED, fraud, r.at)))
        return out

    def _create(self, x: _Command, form: c.CreateBinding, state: list[Stored], plan: Plan,
                people: dict[str, Insured], owners: dict[str, str], today: date, at: int) -> None:
        binding_id = binding_id_for(x.command_id)
        made = made_by(x.command_id, state)
        if made is not None:
            # This very command made it already (a redelivery, or a resend however late): the
            # binding is never made again, whatever became of it, and the answer is the one the
            # command had, rebuilt from the binding as made.
            x.planned = False
            x.outcome = created(x.command_id, made)
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
        x.outcome = created(x.command_id, made)

    def _refuse(self, x: _Command, plan: Plan, refused: BindingRefused, at: int) -> None:
        log.debug("command %s refused: %s", shown(x.command_id), refused.reason)
        plan.outcomes.append((x.command_id, Recorded(c.BINDING_REJECTED, at, x.key,
                                                     f"{refused.reason.value}|{refused.detail}")))
        x.outcome = rejection(x.command_id, refused, at)


def _amended(command_id: str, form: BaseModel, before: Binding, changed: list[Binding],
             state: list[Stored]) -> tuple[str, BaseModel]:
    """The outcome of a command that changed bindings named by id."""
    b = changed[0]
    parties = dict(command_id=command_id, binding_id=b.binding_id, grantor_id=b.grantor_id,
                   beneficiary_id=b.beneficiary_id)
    if isinstance(form, c.RevokeBinding):
        return c.BINDING_REVOKED, c.BindingRevoked(**parties, start_date=b.start_date, end_date=b.end_date)
    if isinstance(form, c.SetGrantorLimit):
        return c.GRANTOR_LIMIT_SET, c.GrantorLimitSet(**parties, monthly_limit=fen(b.monthly_limit),
                                                      previous_limit=fen(before.monthly_limit))
    if isinstance(form, c.PauseBinding):
        return c.BINDING_PAUSED, c.BindingPaused(**parties, cause="grantor")
    if isinstance(form, c.ResumeBinding):
        return c.BINDING_RESUMED, c.BindingResumed(**parties)
    previous = {s.binding.binding_id: s.binding.payment_order for s in state}
    return c.PAYMENT_ORDER_CHANGED, c.PaymentOrderChanged(
        command_id=command_id, binding_id=b.binding_id, beneficiary_id=b.beneficiary_id,
        payment_order=b.payment_order, previous_order=before.payment_order,
        changes=[c.OrderChange(binding_id=x.binding_id, grantor_id=x.grantor_id, payment_order=x.payment_order,
                               previous_order=previous[x.binding_id]) for x in changed])


def _read(msg: Received, cmd: envelope.Readable) -> _Command:
    """A readable command, typed; a missing or ill-typed field makes it a refusal."""
    try:
        c.CommandEnvelope.model_validate(cmd.body)
        form = c.COMMAND_MODELS[cmd.event_type].model_validate(cmd.body["payload"])
    except ValidationError as exc:
        return _Command(msg, cmd, None, refused=BindingRefused(c.reason_for(exc), c.describe(exc)))
    return _Command(msg, cmd, form)


def _named_signer(msg: Received) -> str:
    """The key id a message says signed it, when it is one (never raw header bytes in a reply)."""
    named = msg.headers.get(SIGNER, "")
    return named if re.fullmatch(KEY_ID_PATTERN, named) else ""
