"""Charges, refunds and quotes (预结算) from the HIS on his.charges: read, checked, settled in one
pipelined Function call a batch (the settlement Functions decide what state allows), answered on
settlement.results with the postings they make."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from shared import envelope, topics
from shared.identity import mask_id_number
from shared.kafka import Outgoing, Received
from shared.logs import shown
from shared.signing import SignatureRefused, Signer
from services.settlement import contract as c
from services.settlement import outcomes
from services.settlement.domain import ids
from services.settlement.domain.authority import his_refusal, reply_prefix
from services.settlement.domain.reasons import ChargeRefused, Reason
from services.settlement.metrics import QUOTED, REFUNDED, QuoteReleased, Settled, SettlementMetrics
from services.settlement.signatures import Signatures, answered_only_on
from services.settlement.storage.accounts import Applied, ChargeToSettle, RefundToApply, SettlementStore
from services.settlement.usecases.answers import Answers, Delivery, platform_error, rejected

log = logging.getLogger("settlement")
# contract.md: a charge may be dated at most 10 minutes ahead of the platform's clock.
MAX_AHEAD = timedelta(minutes=10)
# A charge's Function call that answers these may have released a quote (queued in the outbox).
_RELEASING = frozenset({Reason.QUOTE_EXPIRED.value, Reason.QUOTE_RELEASED.value})
_EVENT_OF_OP = {"S": c.CHARGE_SUBMITTED, "Q": c.CHARGE_QUOTE_REQUESTED, "C": c.CHARGE_QUOTE_CANCELLED}


class Charges:
    """Settles what the HIS sends on his.charges. `released` is called when a charge's Function
    call may have released a quote, so that the sweeper announces it now (quotes.py)."""

    def __init__(self, store: SettlementStore, broker: KafkaBroker, max_age: timedelta = timedelta(days=7),
                 clock: Callable[[], datetime] = envelope.now, metrics: SettlementMetrics | None = None,
                 signatures: Signatures | None = None, released: Callable[[], None] = lambda: None) -> None:
        self._store = store
        # None only in unit tests of what needs no partner: every partner message is refused then
        self._signatures = signatures
        self._delivery = Delivery(topics.HIS_CHARGES, broker, metrics or SettlementMetrics(CollectorRegistry()),
                                  signatures)
        self._max_age = max_age
        self._clock = clock
        self._released = released

    async def handle_charges(self, batch: list[Received]) -> None:
        """Settle a batch: decode and check each message, apply all in one pipelined round trip,
        then publish every outcome and wait for the broker's acks before returning."""
        # a defect outside the batch's reading answers without a reply: who sent it was not kept
        await self._delivery.each(batch, self._settle_batch,
                         lambda msg, exc: platform_error(answered_only_on(msg, None), exc))

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
                answers += platform_error(msg, exc)
                continue
            if isinstance(todo, ChargeToSettle):
                charges.append((msg, todo))
            elif isinstance(todo, RefundToApply):
                refunds.append((msg, todo))
        settled = await self._store.settle([t for _, t in charges], now_ms=int(now.timestamp() * 1000))
        refunded = await self._store.refund([t for _, t in refunds])
        for (msg, todo), applied in [*zip(charges, settled), *zip(refunds, refunded)]:
            if applied.reason in _RELEASING:
                self._released()
            try:
                if applied.status == "ERROR":
                    raise RuntimeError(f"settlement Function failed: {applied.reason}")
                answers += self._outcome(msg, todo, applied)
            except Exception as exc:
                log.error("defect while settling %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
                answers += platform_error(msg, exc)
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
            answers += rejected(msg, readable, ChargeRefused(Reason(refusal.value)))

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
            answers += rejected(msg, readable, ChargeRefused(Reason(refusal.value)))
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
            answers += rejected(msg, readable, ChargeRefused(c.reason_for(exc), c.describe(exc)))
        except ChargeRefused as refused:
            answers += rejected(msg, readable, refused)
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
            return rejected(msg, envelope.Readable(todo.event_id, event_type, {}), ChargeRefused(reason),
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
