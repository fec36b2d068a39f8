"""The settlement service's use cases: settle a batch of charges and refunds, keep the balance
cache in step with the bureaus, follow the designated institutions, answer the grantor's
consumption query.

Nothing stalls a consumer (contract version 2): every message of a batch ends as an outcome, a
rejection or a dead letter. Transient infrastructure errors are retried in place with back-off
(`Outage`; every Function call is idempotent, so redoing a batch is safe); anything else raised
for a batch is a defect, and the batch is then answered message by message, so that one message
is the most a defect can cost: it is answered PLATFORM_ERROR and dead-lettered for operators.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
import orjson
from pydantic import ValidationError

from shared import envelope, topics
from shared.binding_index import Payer, grantor_payer
from shared.bureau import (ACCOUNT_CREDITED, ACCOUNT_DEBITED_LOCALLY, BALANCE_SNAPSHOT, BUREAU_EVENT_TYPES,
                           DAILY_POSTINGS_REPORTED, PERSON_REGISTERED, PERSON_TRANSFERRED, AccountMovement,
                           BalanceSnapshot, DailyPostingsReported, PersonRegistered, PersonTransferred,
                           movement_refusal, registration_refusal, speaks_for_region, transfer_refusal)
from shared.identity import mask_id_number
from shared.institutions import INSTITUTION_CODE_PATTERN, INSTITUTION_EVENT_TYPES, InstitutionRegistered
from shared.kafka import (Outage, Outgoing, Received, dead_letter, is_transient, publish_all, publish_replies,
                          reply_to)
from shared.logs import shown
from shared.money import Fen
from services.settlement import contract as c
from services.settlement import outcomes
from services.settlement.domain import ids
from services.settlement.domain.consumption import by_beneficiary
from services.settlement.domain.reasons import ChargeRefused, Reason
from services.settlement.domain.reconciliation import Entry, net, reconcile
from services.settlement.metrics import QUOTED, REFUNDED, Noted, QuoteReleased, Refused, Settled, SettlementMetrics
from services.settlement.ledger import drift_detected
from services.settlement.domain.authority import his_refusal, institution_refusal, reply_prefix
from services.settlement.signatures import Signatures, answered_only_on
from shared.signing import REFUSAL_TEXTS, SignatureRefused, Signer, institution_keys
from services.settlement.storage.accounts import (Applied, ChargeToSettle, InstitutionRegistration, Movement,
                                                  PersonState, RefundToApply, Registration, Reversal,
                                                  SettlementStore, Transfer)

log = logging.getLogger("settlement")
_MOVEMENT_KIND = {ACCOUNT_CREDITED: "credit", ACCOUNT_DEBITED_LOCALLY: "debit", BALANCE_SNAPSHOT: "snapshot"}
# contract.md: a charge may be dated at most 10 minutes ahead of the platform's clock.
MAX_AHEAD = timedelta(minutes=10)
_INSTITUTION = re.compile(INSTITUTION_CODE_PATTERN)
_CHARGE_ID = re.compile(c.CHARGE_ID_PATTERN)
# binding.events: an upheld dispute makes settlement give the grantor line back (issue 21)
DISPUTE_RESOLVED = "DisputeResolved"
# A charge's Function call that answers these may have released a quote (queued in the outbox).
_RELEASING = frozenset({Reason.QUOTE_EXPIRED.value, Reason.QUOTE_RELEASED.value})
_EVENT_OF_OP = {"S": c.CHARGE_SUBMITTED, "Q": c.CHARGE_QUOTE_REQUESTED, "C": c.CHARGE_QUOTE_CANCELLED}
# binding.events that release the holds of a binding (I-4), and the reason a release then gives.
_RELEASES_HOLDS = {"BindingPaused": "binding_paused", "BindingRevoked": "binding_revoked"}
SWEEP_MOST = 500  # quotes released in one Function call of the sweep
# Why the Function refused a bureau movement, as its dead letter says (a code first). The person's
# region is the signer's (checked before): a person of another region is not the signer's to move.
_REFUSED_MOVEMENT = {
    "UNREGISTERED": "UNREGISTERED: no PersonRegistered for this person",
    "FOREIGN_REGION": "NOT_SIGNERS: the person is registered in another region than the signer's",
    "WATERMARK_BEHIND": "WATERMARK_BEHIND: postings_applied_through is below an earlier snapshot's "
                        "(would undo platform postings)",
    "WATERMARK_AHEAD": "WATERMARK_AHEAD: postings_applied_through names platform postings that were never made",
}


@dataclass
class Answers:
    """What a batch ends as: outcomes (published and awaited before the offsets are committed),
    replies (best effort), dead letters (with their reason), and what to count once the
    outcomes are published (metrics.py)."""

    outcomes: list[Outgoing] = field(default_factory=list)
    replies: list[Outgoing] = field(default_factory=list)
    dead: list[tuple[Received, str]] = field(default_factory=list)
    noted: list[Noted] = field(default_factory=list)

    def __iadd__(self, other: Answers) -> Answers:
        self.outcomes += other.outcomes
        self.replies += other.replies
        self.dead += other.dead
        self.noted += other.noted
        return self

    def answer(self, msg: Received, topic: str, key: bytes | None, value: bytes) -> None:
        """An outcome on its usual topic, and on the caller's reply_to when it asked for a valid one."""
        self.outcomes.append(Outgoing(topic, key, value))
        self.replies += reply_to(msg, key, value)


class SettlementService:
    def __init__(self, store: SettlementStore, broker: KafkaBroker, max_age: timedelta = timedelta(days=7),
                 clock: Callable[[], datetime] = envelope.now, metrics: SettlementMetrics | None = None,
                 signatures: Signatures | None = None) -> None:
        self._store = store
        # None only in unit tests of what needs no partner: every partner message is refused then
        self._signatures = signatures
        self._metrics = metrics or SettlementMetrics(CollectorRegistry())
        self._broker = broker
        self._max_age = max_age
        self._clock = clock
        self._outages = {t: Outage(f"settlement {t}") for t in (
            topics.HIS_CHARGES, topics.BUREAU_ACCOUNTS, topics.BUREAU_INSTITUTIONS, topics.BINDING_EVENTS)}
        self._announcing = asyncio.Lock()  # one drain of the quote outbox at a time in this process
        self._released = asyncio.Event()  # a charge released a quote: wake the sweeper to announce it

    async def _each(self, topic: str, batch: list[Received], work: Callable[[list[Received]], Awaitable[Answers]],
                    on_defect: Callable[[Received, Exception], Answers]) -> None:
        """Answer a batch with `work`; on a defect, each message alone, so that only the message
        that holds it ends in `on_defect`. Then deliver: outcomes and dead letters awaited,
        replies best effort."""
        outage = self._outages[topic]
        try:
            answers = await outage.retrying(lambda: work(batch))
        except Exception:
            log.exception("defect in a batch of %d from %s; answering its messages one by one", len(batch), topic)
            answers = Answers()
            for msg in batch:
                try:
                    answers += await outage.retrying(lambda: work([msg]))
                except Exception as exc:
                    log.exception("defect while answering %s[%d]@%d", msg.topic, msg.partition, msg.offset)
                    answers += on_defect(msg, exc)
        # signed once, before a delivery that may be retried
        answers.outcomes, answers.replies = self._signed(answers.outcomes), self._signed(answers.replies)
        await outage.retrying(lambda: self._deliver(answers))
        self._metrics.record(answers.noted)
        await publish_replies(self._broker, answers.replies)

    async def _deliver(self, answers: Answers) -> None:
        await publish_all(self._broker, answers.outcomes)
        for msg, reason in answers.dead:
            await dead_letter(self._broker, msg, reason)

    # -- his.charges --------------------------------------------------------------------------
    async def handle_charges(self, batch: list[Received]) -> None:
        """Settle a batch: decode and check each message, apply all in one pipelined round trip,
        then publish every outcome and wait for the broker's acks before returning."""
        # a defect outside the batch's reading answers without a reply: who sent it was not kept
        await self._each(topics.HIS_CHARGES, batch, self._settle_batch,
                         lambda msg, exc: self._platform_error(answered_only_on(msg, None), exc))

    async def _settle_batch(self, batch: list[Received]) -> Answers:
        answers = Answers()
        charges: list[tuple[Received, ChargeToSettle]] = []
        refunds: list[tuple[Received, RefundToApply]] = []
        now = self._clock()
        # contract version 3: who signed each message, before anything reads its payload
        verdicts = await self._his_signers(batch)
        for msg, signer in zip(batch, verdicts):
            msg = answered_only_on(msg, reply_prefix(signer))
            try:
                if isinstance(signer, SignatureRefused):
                    self._unbelieved(msg, signer, answers)
                    continue
                todo = self._admit(msg, now, answers, signer)
            except Exception as exc:  # a defect while reading this one message
                log.exception("defect while reading %s[%d]@%d", msg.topic, msg.partition, msg.offset)
                answers += self._platform_error(msg, exc)
                continue
            if isinstance(todo, ChargeToSettle):
                charges.append((msg, todo))
            elif isinstance(todo, RefundToApply):
                refunds.append((msg, todo))
        settled = await self._store.settle([t for _, t in charges], now_ms=int(now.timestamp() * 1000))
        refunded = await self._store.refund([t for _, t in refunds])
        for (msg, todo), applied in [*zip(charges, settled), *zip(refunds, refunded)]:
            if applied.reason in _RELEASING:
                self._released.set()
            try:
                if applied.status == "ERROR":
                    raise RuntimeError(f"settlement Function failed: {applied.reason}")
                answers += self._outcome(msg, todo, applied)
            except Exception as exc:
                log.error("defect while settling %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
                answers += self._platform_error(msg, exc)
        return answers

    async def _his_signers(self, batch: list[Received]) -> list[Signer | SignatureRefused]:
        if self._signatures is None:
            return [SignatureRefused.UNKNOWN_SIGNER] * len(batch)
        return await self._signatures.his(batch)

    def _unbelieved(self, msg: Received, refusal: SignatureRefused, answers: Answers) -> None:
        """A message that proves no sender: ChargeRejected with the refusal on settlement.results
        (never recorded: a resend signed by a key registered since is settled), or a dead letter
        naming it when not even its envelope can be read. No reply: anyone could name any topic."""
        readable = envelope.read(msg.value, c.CHARGE_TYPES)
        if isinstance(readable, envelope.Unreadable):
            answers.dead.append((msg, f"{refusal.value}: {readable.error}"))
        else:
            answers += self._rejected(msg, readable, ChargeRefused(Reason(refusal.value)))

    def _admit(self, msg: Received, now: datetime, answers: Answers,
               signer: Signer | None = None) -> ChargeToSettle | RefundToApply | None:
        """The checks that need no state. A refusal is added to `answers` (None returned).
        `signer`: who signed it (a HIS speaks only for its own institution); None in unit tests
        of the contract's other checks.

        A valid message is read in one pass from its bytes (`contract.CHARGE_MESSAGE`); one that
        is refused there, or by a rule, is read again step by step (`_admit_slowly`), which
        decides how it is answered: the fast path never answers a refusal itself."""
        try:
            message = c.CHARGE_MESSAGE.validate_json(msg.value)
            if signer is not None and his_refusal(signer, message.payload.institution_code):
                return self._admit_slowly(msg, now, answers, signer)
            if message.event_type == c.CHARGE_SUBMITTED:
                return self._admit_charge(message.event_id, message.payload, now)
            if message.event_type != c.CHARGE_REFUNDED:
                return self._admit_quote(message.event_id, message.event_type, message.payload, now)
            refund = message.payload
            self._check_time(refund.refunded_at, now, "refunded_at")
        except (ValidationError, ChargeRefused):
            return self._admit_slowly(msg, now, answers, signer)
        return RefundToApply(message.event_id, refund.institution_code, refund.charge_id, refund.refund_id,
                             refund.digest(), refund.amount, now.isoformat(timespec="seconds"),
                             refund.named_lines())

    def _admit_slowly(self, msg: Received, now: datetime, answers: Answers,
                      signer: Signer | None = None) -> ChargeToSettle | RefundToApply | None:
        readable = envelope.read(msg.value, c.CHARGE_TYPES)
        if isinstance(readable, envelope.Unreadable):
            answers.dead.append((msg, readable.error))
            return None
        payload = readable.body.get("payload")
        if signer is not None and (refusal := his_refusal(
                signer, payload.get("institution_code") if isinstance(payload, dict) else None)):
            log.warning("%s on %s[%d]@%d: signed by %s", refusal.value, msg.topic, msg.partition, msg.offset,
                        signer.key_id)
            answers += self._rejected(msg, readable, ChargeRefused(Reason(refusal.value)))
            return None
        try:
            envelope.Envelope.model_validate(readable.body)
            if readable.event_type == c.CHARGE_SUBMITTED:
                charge = c.ChargeSubmitted.model_validate(readable.body["payload"])
                return self._admit_charge(readable.event_id, charge, now)
            if readable.event_type in (c.CHARGE_QUOTE_REQUESTED, c.CHARGE_QUOTE_CANCELLED):
                model = c.ChargeQuoteRequested if readable.event_type == c.CHARGE_QUOTE_REQUESTED \
                    else c.ChargeQuoteCancelled
                return self._admit_quote(readable.event_id, readable.event_type,
                                         model.model_validate(readable.body["payload"]), now)
            refund = c.ChargeRefunded.model_validate(readable.body["payload"])
            self._check_time(refund.refunded_at, now, "refunded_at")
            return RefundToApply(readable.event_id, refund.institution_code, refund.charge_id, refund.refund_id,
                                 refund.digest(), refund.amount, now.isoformat(timespec="seconds"),
                             refund.named_lines())
        except ValidationError as exc:
            answers += self._rejected(msg, readable, ChargeRefused(c.reason_for(exc), c.describe(exc)))
        except ChargeRefused as refused:
            answers += self._rejected(msg, readable, refused)
            if refused.reason is Reason.IDENTITY_MISMATCH:
                answers.outcomes.append(self._fraud(readable))
        return None

    def _admit_quote(self, event_id: str, event_type: str, body: c.ChargeQuoteRequested | c.ChargeQuoteCancelled,
                     now: datetime) -> ChargeToSettle:
        """A quote request is admitted as a charge is (and quoted in the same Function call as the
        batch's charges, in order); a cancellation needs only the quote's charge."""
        if event_type == c.CHARGE_QUOTE_REQUESTED:
            return self._admit_charge(event_id, body, now, op="Q")
        return ChargeToSettle(event_id, body.institution_code, "", body.charge_id, "", 0, "", 0,
                              now.isoformat(timespec="seconds"), quote_id=body.quote_id, op="C")

    def _admit_charge(self, event_id: str, charge: c.ChargeSubmitted | c.ChargeQuoteRequested, now: datetime,
                      op: str = "S") -> ChargeToSettle:
        if charge.fund_paid + charge.individual_borne != charge.total:
            raise ChargeRefused(Reason.AMOUNTS_INCONSISTENT)
        if charge.code_holder_id != charge.patient_id:
            # 实名就医: a family account (亲情账号) shows the patient's own code; another
            # person's code means someone else's identity is being used.
            raise ChargeRefused(Reason.IDENTITY_MISMATCH)
        self._check_time(charge.charged_at, now, "charged_at")
        day = charge.charged_at.astimezone(envelope.CHINA_TZ).date()
        quote_id = ids.quote_id(charge.institution_code, charge.charge_id) if op == "Q" else \
            getattr(charge, "quote_id", None) or ""
        return ChargeToSettle(event_id, charge.institution_code, charge.institution_region, charge.charge_id,
                              charge.digest(), charge.individual_borne, charge.patient_id,
                              day.year * 10_000 + day.month * 100 + day.day, now.isoformat(timespec="seconds"),
                              charge.charged_at.isoformat(timespec="seconds"), quote_id, op)

    def _check_time(self, at: datetime, now: datetime, name: str) -> None:
        if at > now + MAX_AHEAD:
            raise ChargeRefused(Reason.INVALID_CHARGE, f"{name} is more than 10 minutes ahead of the platform")
        if at < now - self._max_age:
            raise ChargeRefused(Reason.INVALID_CHARGE, f"{name} is older than {self._max_age.days} days")

    def _outcome(self, msg: Received, todo: ChargeToSettle | RefundToApply, applied: Applied) -> Answers:
        refund_id = todo.refund_id if isinstance(todo, RefundToApply) else None
        if applied.status in ("QUOTED", "RELEASED"):
            return self._quote_outcome(msg, todo, applied)
        if applied.status not in ("SETTLED", "REFUNDED"):
            reason = Reason.DUPLICATE_CHARGE_CONFLICT if applied.status == "CONFLICT" else Reason(applied.reason)
            event_type = c.CHARGE_REFUNDED if refund_id else _EVENT_OF_OP[todo.op]
            return self._rejected(msg, envelope.Readable(todo.event_id, event_type, {}), ChargeRefused(reason),
                                  charge_id=todo.charge_id, refund_id=refund_id,
                                  institution_code=todo.institution_code)
        inst, at = todo.institution_code, applied.at
        if refund_id is None:
            value = outcomes.charge_settled(inst, todo.charge_id, todo.patient_id, todo.borne, todo.charged_at,
                                            applied.lines, at)
            patient, direction = todo.patient_id, "debit"
            if not applied.replay and log.isEnabledFor(logging.DEBUG):
                log.debug("charge %s settled for %s: %s", shown(todo.charge_id), mask_id_number(patient),
                          ", ".join(f"{x.source}{x.payment_order or ''}={x.amount}" for x in applied.lines))
        else:
            value = outcomes.refund_settled(inst, todo.charge_id, refund_id, applied.patient_id, todo.amount,
                                            applied.lines, at)
            patient, direction = applied.patient_id, "credit"
        answers = Answers()
        if not applied.replay:  # a replay was counted when it was first decided
            answers.noted.append(REFUNDED if refund_id else Settled(todo.institution_region, applied.lines))
        answers.answer(msg, topics.SETTLEMENT_RESULTS, todo.charge_id.encode(), value)
        answers.outcomes += outcomes.postings(applied.lines, direction, inst, todo.charge_id, refund_id, patient, at)
        return answers

    def _quote_outcome(self, msg: Received, todo: ChargeToSettle, applied: Applied) -> Answers:
        """ChargeQuoted (the split, held) or ChargeQuoteReleased (a cancellation) on settlement.results."""
        answers = Answers()
        if applied.status == "QUOTED":
            until = datetime.fromtimestamp(applied.until_ms / 1000, envelope.CHINA_TZ).isoformat(timespec="seconds")
            value = outcomes.charge_quoted(applied.quote_id or todo.quote_id, todo.institution_code, todo.charge_id, todo.patient_id,
                                           todo.borne, applied.lines, applied.at, until)
            if not applied.replay:
                log.info("charge %s quoted, held until %s", shown(todo.charge_id), until)
                answers.noted.append(QUOTED)
        else:
            value = outcomes.quote_released(todo.quote_id, todo.institution_code, todo.charge_id, applied.reason,
                                            applied.lines, applied.at).value
            answers.noted.append(QuoteReleased(applied.reason, todo.quote_id))
        answers.answer(msg, topics.SETTLEMENT_RESULTS, todo.charge_id.encode(), value)
        return answers

    def _rejected(self, msg: Received, readable: envelope.Readable, refused: ChargeRefused,
                  charge_id: str | None = None, refund_id: str | None = None,
                  institution_code: str | None = None) -> Answers:
        payload = readable.body.get("payload") if isinstance(readable.body.get("payload"), dict) else {}
        charge_id = charge_id or _text(payload.get("charge_id"))
        refund_id = refund_id or _text(payload.get("refund_id")) or None
        institution_code = institution_code or _institution(payload.get("institution_code"))
        event = c.ChargeRejected(charge_id=charge_id, refund_id=refund_id, institution_code=institution_code,
                                 reason_code=refused.reason, message_zh=refused.message_zh,
                                 message_en=refused.message_en, source_event_id=readable.event_id)
        log.info("charge %s refused: %s", shown(charge_id), refused.reason)
        event_id = ids.event_id(c.CHARGE_REJECTED, institution_code, readable.event_id, refused.reason.value)
        value = envelope.seal(c.CHARGE_REJECTED, event, event_id=event_id)
        answers = Answers()
        answers.noted.append(Refused("refund" if readable.event_type == c.CHARGE_REFUNDED else "charge",
                                     refused.reason.value, event_id))
        answers.answer(msg, topics.SETTLEMENT_RESULTS, charge_id.encode() if charge_id else msg.key, value)
        return answers

    def _platform_error(self, msg: Received, exc: Exception) -> Answers:
        """A defect: the caller is answered PLATFORM_ERROR when its message can be read, and the
        message is dead-lettered for the operators either way."""
        answers = Answers(dead=[(msg, f"platform error: {exc.__class__.__name__}: {str(exc)[:300]}")])
        readable = envelope.read(msg.value, c.CHARGE_TYPES)
        if isinstance(readable, envelope.Readable):
            answers += self._rejected(msg, readable, ChargeRefused(Reason.PLATFORM_ERROR))
        return answers

    def _fraud(self, readable: envelope.Readable) -> Outgoing:
        p = c.ChargeSubmitted.model_validate(readable.body["payload"])
        log.warning("suspected fraud (疑似欺诈骗保) on charge %s: code of %s used for %s",
                    shown(p.charge_id), mask_id_number(p.code_holder_id), mask_id_number(p.patient_id))
        event = c.FraudSuspected(charge_id=p.charge_id, patient_id=p.patient_id, code_holder_id=p.code_holder_id,
                                 institution_code=p.institution_code, institution_region=p.institution_region,
                                 presented_via=p.presented_via)
        value = envelope.seal(c.FRAUD_SUSPECTED, event, event_id=ids.event_id(
            c.FRAUD_SUSPECTED, p.institution_code, readable.event_id))
        return Outgoing(topics.SETTLEMENT_RESULTS, p.charge_id.encode(), value)

    # -- bureau.institutions ------------------------------------------------------------------
    async def follow_institutions(self, batch: list[Received]) -> None:
        """The designated institutions (定点医药机构) every charge is checked against."""
        await self._each(topics.BUREAU_INSTITUTIONS, batch, self._institutions, _dead)

    async def _institutions(self, batch: list[Received]) -> Answers:
        """Each registration believed only from the bureau of the institution's region (and of the
        region it is registered in already: the Function refuses a move), with its public keys."""
        answers, found = Answers(), []
        for msg, signer, readable in self._from_bureaus(batch, INSTITUTION_EVENT_TYPES, answers):
            try:
                i = InstitutionRegistered.model_validate(readable.body.get("payload"))
                public_keys = institution_keys(i.institution_code, i.region, i.public_keys)
            except ValidationError as exc:
                answers.dead.append((msg, f"invalid {readable.event_type}: {c.describe(exc)}"))
                continue
            except ValueError as exc:  # a key named for another institution
                answers.dead.append((msg, f"invalid {readable.event_type}: public_keys: {exc}"))
                continue
            if refusal := institution_refusal(signer, i.region):
                answers.dead.append((msg, f"{refusal.value}: {signer.key_id} may not register an institution "
                                          f"of region {i.region}"))
                continue
            found.append((msg, InstitutionRegistration(
                i.institution_code, i.region, i.kind, [k.model_dump(mode="json") for k in i.public_keys],
                signer.region or "", i.name)))
            log.info("institution %s registered by %s with keys %s", i.institution_code, signer.key_id,
                     ", ".join(k.key_id for k in public_keys))
        if found:
            for (msg, registration), done in zip(found, await self._store.institutions_registered(
                    [r for _, r in found])):
                if done != "OK":
                    answers.dead.append((msg, f"{done}: institution {registration.code} is registered in another "
                                              f"region; only that region's bureau may change it"))
        return answers

    def _from_bureaus(self, batch: list[Received], types: frozenset[str],
                      answers: Answers) -> list[tuple[Received, Signer, envelope.Readable]]:
        """The messages of a bureau topic whose signature proves their sender and whose envelope
        can be read, with their signer; the others are dead letters naming why (bureau topics
        have no outcome topic to answer on)."""
        out = []
        for msg in batch:
            signer = self._signatures.partner(msg) if self._signatures else SignatureRefused.UNKNOWN_SIGNER
            if isinstance(signer, SignatureRefused):
                answers.dead.append((msg, f"{signer.value}: {REFUSAL_TEXTS[signer][1]}"))
                continue
            readable = envelope.read(msg.value, types)
            if isinstance(readable, envelope.Unreadable):
                answers.dead.append((msg, readable.error))
            else:
                out.append((msg, signer, readable))
        return out

    # -- bureau.accounts ----------------------------------------------------------------------
    async def follow_bureaus(self, batch: list[Received]) -> None:
        """Keep the balance cache in step with the bureaus' books: registrations, transfers,
        contributions, local spending and snapshots, each applied once and in bureau_seq order per
        person, and only from the bureau of the person's own region (contract version 3: the
        region its signature proves, shared/bureau.py)."""
        await self._each(topics.BUREAU_ACCOUNTS, batch, self._bureau_batch, _dead)

    async def _bureau_batch(self, batch: list[Received]) -> Answers:
        answers = Answers()
        events: list[tuple[Received, Signer, PersonRegistered | PersonTransferred | Movement]] = []
        reports = []
        for msg, signer, readable in self._from_bureaus(batch, BUREAU_EVENT_TYPES, answers):
            try:
                payload = readable.body.get("payload")
                if readable.event_type == PERSON_REGISTERED:
                    events.append((msg, signer, PersonRegistered.model_validate(payload)))
                    continue
                if readable.event_type == PERSON_TRANSFERRED:
                    events.append((msg, signer, PersonTransferred.model_validate(payload)))
                    continue
                if readable.event_type == DAILY_POSTINGS_REPORTED:
                    report = DailyPostingsReported.model_validate(payload)
                    region, event = report.region, (msg, readable.event_id, report)
                elif readable.event_type == BALANCE_SNAPSHOT:
                    s = BalanceSnapshot.model_validate(payload)
                    region, event = s.region, (msg, signer, Movement(
                        s.person_id, "snapshot", s.balance, s.bureau_seq, s.region, s.postings_applied_through))
                else:
                    m = AccountMovement.model_validate(payload)
                    region, event = m.region, (msg, signer, Movement(
                        m.person_id, _MOVEMENT_KIND[readable.event_type], m.amount, m.bureau_seq, m.region))
            except ValidationError as exc:
                answers.dead.append((msg, f"invalid {readable.event_type}: {c.describe(exc)}"))
                continue
            if refusal := movement_refusal(signer, region):
                answers.dead.append((msg, f"{refusal.value}: {signer.key_id} may not speak for region {region}"))
            elif readable.event_type == DAILY_POSTINGS_REPORTED:
                reports.append(event)
            else:
                events.append(event)
        believed = await self._believed_about_people(events, answers)
        # in the batch's order, one pipeline: a person registered (or moved) before his movement
        applied = await self._store.bureau_events([e for _, e in believed])
        for (msg, event), done in zip(believed, applied):
            if done is None:
                continue
            if done.outcome in _REFUSED_MOVEMENT:
                answers.dead.append((msg, f"{_REFUSED_MOVEMENT[done.outcome]} ({event.kind})"))
            elif done.outcome == "NEGATIVE":
                log.warning("account of %s is below zero (%s) after a bureau %s: it pays nothing until "
                            "it is positive again", mask_id_number(event.person_id), Fen(done.balance), event.kind)
            if drifted := drift_detected(event, done):
                answers.outcomes.append(drifted[0])
                if done.outcome != "STALE":  # a redelivery announces it again; it was counted once
                    self._metrics.drifted(drifted[1])
                    log.warning("account of %s drifted by %s (snapshot bureau_seq %d)",
                                mask_id_number(event.person_id), Fen(drifted[1]), event.bureau_seq)
        for msg, event_id, report in reports:
            try:
                if out := await self._reconcile(event_id, report):
                    answers.outcomes.append(out)
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.exception("defect while reconciling %s[%d]@%d", msg.topic, msg.partition, msg.offset)
                answers.dead.append((msg, f"platform error: {exc.__class__.__name__}"))
        return answers

    async def _believed_about_people(
            self, events: list[tuple[Received, Signer, PersonRegistered | PersonTransferred | Movement]],
            answers: Answers) -> list[tuple[Received, Registration | Transfer | Movement]]:
        """Registrations and transfers judged by who may register or move whom (shared/bureau.py),
        against the person as the projection has him and as the batch's earlier events leave him
        (one read for the batch); movements pass as they are (their region was judged already)."""
        people = await self._store.people(sorted({e.person_id for _, _, e in events if not isinstance(e, Movement)}))
        believed: list[tuple[Received, Registration | Transfer | Movement]] = []
        for msg, signer, event in events:
            if isinstance(event, Movement):
                believed.append((msg, event))
                continue
            now = people[event.person_id]
            if isinstance(event, PersonRegistered):
                refusal = registration_refusal(signer, event.region, now.region, now.moving_to)
                if refusal is None:
                    people[event.person_id] = PersonState(
                        event.region, None if now.moving_to == event.region else now.moving_to)
                    believed.append((msg, Registration(event.person_id, event.region,
                                                       "e" if event.scheme == "employee" else "r", event.balance)))
                    continue
                why = (f"{signer.key_id} may not register a person of region {now.region}"
                       + (f" (transferred to {now.moving_to})" if now.moving_to else " (not transferred)")
                       if speaks_for_region(signer, event.region) else
                       f"{signer.key_id} may not register a person in region {event.region}")
            else:
                refusal = transfer_refusal(signer, now.region)
                if refusal is None:
                    people[event.person_id] = PersonState(now.region, event.to_region)
                    believed.append((msg, Transfer(event.person_id, event.to_region)))
                    continue
                why = f"{signer.key_id} may not transfer a person " + (
                    f"of region {now.region}" if now.region else "settlement has not registered")
            log.warning("%s: %s (%s)", refusal.value, why, mask_id_number(event.person_id))
            answers.dead.append((msg, f"{refusal.value}: {why}"))
        return believed

    async def _reconcile(self, event_id: str, report: DailyPostingsReported) -> Outgoing | None:
        """对账 of one region and day, once every part of the bureau's report is in: every posting
        that the two books do not agree on."""
        day = report.day.strftime("%Y%m%d")
        parts = await self._store.report_part(report.region, day, report.report_id, report.part, report.parts, {
            "event_id": event_id, "postings": [
                {"posting_id": p.posting_id, "direction": p.direction, "amount": p.amount} for p in report.postings]})
        if parts is None:
            log.info("report %s %s part %d of %d kept", report.region, report.day, report.part, report.parts)
            return None
        posted = await self._store.postings_of(report.region, day)
        ours = {pid: Entry(direction, amount) for pid, (direction, amount, _) in posted.items()}
        theirs = {p["posting_id"]: Entry(p["direction"], p["amount"]) for part in parts for p in part["postings"]}
        differences = reconcile(ours, theirs)
        first = parts[0]["event_id"]
        event = c.ReconciliationReport(
            report_for=first, report_id=report.report_id, parts=report.parts, region=report.region, day=report.day,
            platform_count=len(ours), bureau_count=len(theirs),
            matched=sum(1 for pid in ours.keys() & theirs.keys() if ours[pid] == theirs[pid]),
            platform_net=Fen(net(ours)), bureau_net=Fen(net(theirs)),
            differences=[c.ReconciliationDifference(
                posting_id=d.posting_id, kind=d.kind,
                platform_direction=d.platform.direction if d.platform else None,
                platform_amount=Fen(d.platform.amount) if d.platform else None,
                bureau_direction=d.bureau.direction if d.bureau else None,
                bureau_amount=Fen(d.bureau.amount) if d.bureau else None) for d in differences])
        log.info("reconciled %s %s: %d differences", report.region, report.day, len(differences))
        value = envelope.seal(c.RECONCILIATION_REPORT, event, event_id=ids.event_id(
            c.RECONCILIATION_REPORT, report.region, day, report.report_id, *(p["event_id"] for p in parts)))
        return Outgoing(topics.bureau_postings(report.region), report.region.encode(), value)

    # -- quotes (预结算): expiry and announcements --------------------------------------------
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

    # -- binding.events -----------------------------------------------------------------------
    async def follow_bindings(self, batch: list[Received]) -> None:
        """A binding paused or revoked releases every quote it holds for (I-7); an upheld dispute
        gives the disputed grantor line back (issue 21), its outcomes published before the offsets
        are committed, so a redelivery republishes the recorded reversal."""
        await self._each(topics.BINDING_EVENTS, batch, self._binding_batch, _dead)
        await self.announce_releases()

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
        """An upheld dispute: the grantor line given back (settlement.lua, reverse_payment), told as
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

    # -- settlement.queries -------------------------------------------------------------------
    async def answer_query(self, msg: Received) -> None:
        """家庭共济消费查询 (every payment from a grantor's account, per beneficiary, with totals)
        or an account's balance (QueryAccount); answered only on the caller's reply topic."""
        readable = envelope.read(msg.value, c.QUERY_TYPES)
        if isinstance(readable, envelope.Unreadable):
            await dead_letter(self._broker, msg, readable.error)
            return
        await publish_replies(self._broker, self._signed(reply_to(msg, msg.key, await self._answer(msg, readable))))

    async def answer_query_defect(self, msg: Received) -> None:
        readable = envelope.read(msg.value, c.QUERY_TYPES)
        if isinstance(readable, envelope.Readable):
            refused = ChargeRefused(Reason.PLATFORM_ERROR)
            await publish_replies(self._broker, self._signed(self._rejected(msg, readable, refused).replies))

    def _signed(self, replies: list[Outgoing]) -> list[Outgoing]:
        return self._signatures.signed(replies) if self._signatures is not None else replies

    async def _answer(self, msg: Received, readable: envelope.Readable) -> bytes:
        """A query's answer, or ChargeRejected INVALID_CHARGE when it is not well-formed."""
        account = readable.event_type == c.QUERY_ACCOUNT
        try:
            q = (c.QueryAccount if account else c.QueryConsumption).model_validate(readable.body.get("payload"))
        except ValidationError as exc:
            refused = ChargeRefused(Reason.INVALID_CHARGE, c.describe(exc))
            return self._rejected(msg, readable, refused).outcomes[0].value
        return await (self._account(readable.event_id, q) if account else self._consumption(readable, q))

    async def _consumption(self, readable: envelope.Readable, q: c.QueryConsumption) -> bytes:
        rows_by = by_beneficiary(await self._store.spending(q.grantor_id), q.date_from, q.date_to)
        limits = await self._limits(q.grantor_id, list(rows_by))
        names = await self._store.institution_names(sorted({r.institution_code for rows in rows_by.values()
                                                            for r in rows}))
        groups = [c.BeneficiarySpending(
            beneficiary_id=mask_id_number(beneficiary),
            payments=[c.Payment(charge_id=r.charge_id, institution_code=r.institution_code,
                                institution_name=names.get(r.institution_code),
                                settled_at=r.settled_at, paid=Fen(r.paid), refunded=Fen(r.refunded)) for r in rows],
            total_paid=Fen(sum(r.paid for r in rows)), total_refunded=Fen(sum(r.refunded for r in rows)),
            **limits.get(beneficiary, {}))
            for beneficiary, rows in rows_by.items()]
        event = c.ConsumptionListed(command_id=readable.event_id, grantor_id=mask_id_number(q.grantor_id),
                                    date_from=q.date_from, date_to=q.date_to, beneficiaries=groups,
                                    total_paid=Fen(sum(g.total_paid for g in groups)),
                                    total_refunded=Fen(sum(g.total_refunded for g in groups)))
        return envelope.seal(c.CONSUMPTION_LISTED, event,
                             event_id=ids.event_id(c.CONSUMPTION_LISTED, readable.event_id))

    async def _limits(self, grantor_id: str, beneficiaries: list[str]) -> dict[str, dict]:
        """Per beneficiary, the grantor's binding in force today (China time) as the payer index
        holds it (I-1, read by shared/binding_index.py): its monthly limit, what is used (paid or
        held) this calendar month and left, paused. A renewal queued to start later is not it."""
        today = envelope.china_today(self._clock())
        found: dict[str, Payer] = {}
        for beneficiary in beneficiaries:
            payer = grantor_payer(await self._store.payers(beneficiary), grantor_id, today)
            if payer is not None:
                found[beneficiary] = payer
        month = today.strftime("%Y%m")
        used = await self._store.used_many([p.binding_id for p in found.values()], month)
        return {beneficiary: {
            "binding_id": p.binding_id, "paused": p.paused, "used_this_month": Fen(used[p.binding_id]),
            "monthly_limit": None if p.monthly_limit_fen is None else Fen(p.monthly_limit_fen),
            "left_this_month": None if p.monthly_limit_fen is None
            else Fen(max(p.monthly_limit_fen - used[p.binding_id], 0))}
            for beneficiary, p in found.items()}

    async def _account(self, query_id: str, q: c.QueryAccount) -> bytes:
        """The account as the next charge would find it: the balance the settle Function pays from."""
        account = await self._store.account(q.person_id)
        event = c.AccountFound(
            command_id=query_id, person_id=mask_id_number(q.person_id), registered=account is not None,
            region=account and account.region, scheme=account and account.scheme,
            balance=Fen(account.balance) if account and account.scheme == "employee" else None,
            held=Fen(account.held) if account and account.scheme == "employee" else None)
        return envelope.seal(c.ACCOUNT_FOUND, event, event_id=ids.event_id(c.ACCOUNT_FOUND, query_id))


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


def _dead(msg: Received, exc: Exception) -> Answers:
    """A bureau event has no outcome topic: a defect dead-letters it."""
    return Answers(dead=[(msg, f"platform error: {exc.__class__.__name__}: {str(exc)[:300]}")])


def _text(value: object) -> str:
    """An id a partner sent, echoed in a refusal: a string, bounded."""
    return value[:64] if isinstance(value, str) else ""


def _institution(value: object) -> str | None:
    return value if isinstance(value, str) and _INSTITUTION.fullmatch(value) else None
