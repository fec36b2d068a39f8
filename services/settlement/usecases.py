"""The settlement service's use cases: settle a batch of charges and refunds, keep the balance
cache in step with the bureaus, answer the grantor's consumption query."""

from __future__ import annotations

import logging
from datetime import datetime

from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ValidationError

from shared import envelope, topics
from shared.bureau import (ACCOUNT_CREDITED, ACCOUNT_DEBITED_LOCALLY, BALANCE_SNAPSHOT, BUREAU_EVENT_TYPES,
                           DAILY_POSTINGS_REPORTED, PERSON_REGISTERED, AccountMovement, BalanceSnapshot,
                           DailyPostingsReported, PersonRegistered)
from shared.identity import mask_id_number
from shared.kafka import Outgoing, Received, dead_letter, publish_all
from shared.money import Fen
from services.settlement import contract as c
from services.settlement.domain.consumption import by_beneficiary
from services.settlement.domain.reasons import ChargeRefused, Reason
from services.settlement.domain.reconciliation import Entry, net, reconcile
from services.settlement.domain.waterfall import Line
from services.settlement.storage.accounts import Applied, ChargeToSettle, RefundToApply, SettlementStore

log = logging.getLogger("settlement")
_MOVEMENT_KIND = {ACCOUNT_CREDITED: "credit", ACCOUNT_DEBITED_LOCALLY: "debit", BALANCE_SNAPSHOT: "snapshot"}


class SettlementService:
    def __init__(self, store: SettlementStore, broker: KafkaBroker) -> None:
        self._store = store
        self._broker = broker

    # -- his.charges --------------------------------------------------------------------------
    async def handle_charges(self, batch: list[Received]) -> None:
        """Settle a batch: decode and check each message, apply all in one pipelined round trip,
        then publish every outcome and wait for the broker's acks before returning."""
        out: list[Outgoing] = []
        charges: list[tuple[Received, c.ChargeSubmitted, ChargeToSettle]] = []
        refunds: list[tuple[Received, c.ChargeRefunded, RefundToApply]] = []
        for msg in batch:
            readable = envelope.read(msg.value, c.CHARGE_TYPES)
            if isinstance(readable, envelope.Unreadable):
                await dead_letter(self._broker, msg, readable.error)
                continue
            try:
                envelope.Envelope.model_validate(readable.body)
                model = (c.ChargeSubmitted if readable.event_type == c.CHARGE_SUBMITTED else c.ChargeRefunded)
                payload = model.model_validate(readable.body["payload"])
                if isinstance(payload, c.ChargeSubmitted):
                    charges.append((msg, payload, self._admit(readable.event_id, payload)))
                else:
                    refunds.append((msg, payload, RefundToApply(
                        readable.event_id, payload.charge_id, payload.refund_id, payload.digest(), payload.amount,
                        payload.refunded_at.isoformat(timespec="seconds"))))
            except ValidationError as exc:
                out += self._rejected(msg, readable, ChargeRefused(c.reason_for(exc), c.describe(exc)))
            except ChargeRefused as refused:
                out += self._rejected(msg, readable, refused)
                if refused.reason is Reason.IDENTITY_MISMATCH:
                    out.append(self._fraud(msg, readable))
        for (msg, charge, todo), applied in zip(charges, await self._store.settle([x[2] for x in charges])):
            if applied.status == "ERROR":
                await self._defect(msg, applied)
            else:
                out += self._charge_outcome(msg, charge, todo.event_id, applied)
        for (msg, refund, todo), applied in zip(refunds, await self._store.refund([x[2] for x in refunds])):
            if applied.status == "ERROR":
                await self._defect(msg, applied)
            else:
                out += self._refund_outcome(msg, refund, todo.event_id, applied)
        await publish_all(self._broker, out)

    async def _defect(self, msg: Received, applied: Applied) -> None:
        """A message whose Function call failed goes to the DLQ with the error; the batch goes on."""
        log.error("settlement Function failed for %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset,
                  applied.reason)
        await dead_letter(self._broker, msg, f"settlement failed: {applied.reason}")

    @staticmethod
    def _admit(event_id: str, charge: c.ChargeSubmitted) -> ChargeToSettle:
        """The checks that need no state: amounts add up, and the code scanned is the patient's."""
        if charge.fund_paid + charge.individual_borne != charge.total:
            raise ChargeRefused(Reason.AMOUNTS_INCONSISTENT)
        if charge.code_holder_id != charge.patient_id:
            # 实名就医: a family account (亲情账号) shows the patient's own code; another
            # person's code means someone else's identity is being used.
            raise ChargeRefused(Reason.IDENTITY_MISMATCH)
        day = charge.charged_at.astimezone(envelope.CHINA_TZ).date()
        return ChargeToSettle(event_id, charge.charge_id, charge.digest(), charge.individual_borne,
                              charge.patient_id, int(day.strftime("%Y%m%d")),
                              envelope.now().isoformat(timespec="seconds"))

    def _charge_outcome(self, msg: Received, charge: c.ChargeSubmitted, event_id: str,
                        applied: Applied) -> list[Outgoing]:
        if applied.status != "SETTLED":
            reason = _refusal_reason(applied)
            readable = envelope.Readable(event_id, c.CHARGE_SUBMITTED, {})
            return self._rejected(msg, readable, ChargeRefused(reason), charge_id=charge.charge_id)
        event = c.ChargeSettled(charge_id=charge.charge_id, patient_id=charge.patient_id,
                                individual_borne=Fen(charge.individual_borne),
                                lines=[_line(x) for x in applied.lines], settled_at=applied.at,
                                institution_code=charge.institution_code,
                                charged_at=charge.charged_at.isoformat(timespec="seconds"))
        if not applied.replay:
            log.debug("charge %s settled for %s: %s", charge.charge_id, mask_id_number(charge.patient_id),
                     ", ".join(f"{x.source}{x.payment_order or ''}={x.amount}" for x in applied.lines))
        return (self._result(msg, c.CHARGE_SETTLED, event, charge.charge_id, applied.at)
                + self._postings(applied.lines, "debit", charge.charge_id, None, charge.patient_id, applied.at))

    def _refund_outcome(self, msg: Received, refund: c.ChargeRefunded, event_id: str,
                        applied: Applied) -> list[Outgoing]:
        if applied.status != "REFUNDED":
            reason = _refusal_reason(applied)
            readable = envelope.Readable(event_id, c.CHARGE_REFUNDED, {})
            return self._rejected(msg, readable, ChargeRefused(reason), charge_id=refund.charge_id,
                                  refund_id=refund.refund_id)
        event = c.RefundSettled(charge_id=refund.charge_id, refund_id=refund.refund_id, patient_id=applied.patient_id,
                                amount=Fen(refund.amount),
                                lines=[_line(x) for x in applied.lines], settled_at=applied.at)
        cause = f"{refund.charge_id}/{refund.refund_id}"
        return (self._result(msg, c.REFUND_SETTLED, event, cause, applied.at)
                + self._postings(applied.lines, "credit", refund.charge_id, refund.refund_id, applied.patient_id,
                                 applied.at))

    def _result(self, msg: Received, event_type: str, event: BaseModel, cause: str, at: str) -> list[Outgoing]:
        """A settled charge or refund, its event id and time taken from the recorded result."""
        value = envelope.seal(event_type, event, event_id=envelope.outcome_id(cause, event_type),
                              occurred_at=datetime.fromisoformat(at))
        return _answer(msg, getattr(event, "charge_id").encode(), value)

    @staticmethod
    def _postings(lines: list[Line], direction: str, charge_id: str, refund_id: str | None,
                  beneficiary_id: str | None, at: str) -> list[Outgoing]:
        """One posting per account touched, keyed by the account's region, for its bureau's book."""
        out = []
        for i, line in enumerate(lines):
            if line.source == "cash":
                continue
            posting_id = f"P-{charge_id}-{refund_id + '-' if refund_id else ''}{i}"
            posting = c.Posting(posting_id=posting_id, region=line.region, person_id=line.person_id,
                                direction=direction, amount=Fen(line.amount), charge_id=charge_id,
                                refund_id=refund_id, posted_at=at,
                                beneficiary_id=beneficiary_id if line.source == "grantor" else None)
            value = envelope.seal(c.POSTING, posting, event_id=envelope.outcome_id(posting_id, c.POSTING),
                                  occurred_at=datetime.fromisoformat(at))
            out.append(Outgoing(topics.BUREAU_POSTINGS, line.region.encode(), value))
        return out

    def _rejected(self, msg: Received, readable: envelope.Readable, refused: ChargeRefused,
                  charge_id: str | None = None, refund_id: str | None = None) -> list[Outgoing]:
        payload = readable.body.get("payload") if isinstance(readable.body.get("payload"), dict) else {}
        charge_id = charge_id or str(payload.get("charge_id") or "")[:64]
        refund_id = refund_id or (str(payload["refund_id"])[:64] if payload.get("refund_id") else None)
        event = c.ChargeRejected(charge_id=charge_id, refund_id=refund_id, reason_code=refused.reason,
                                 message_zh=refused.message_zh, message_en=refused.message_en)
        log.info("charge %s refused: %s", charge_id, refused.reason)
        value = envelope.seal(c.CHARGE_REJECTED, event,
                              event_id=envelope.outcome_id(readable.event_id, c.CHARGE_REJECTED))
        return _answer(msg, charge_id.encode() if charge_id else msg.key, value)

    def _fraud(self, msg: Received, readable: envelope.Readable) -> Outgoing:
        p = readable.body["payload"]
        log.warning("suspected fraud (疑似欺诈骗保) on charge %s: code of %s used for %s",
                    p["charge_id"], mask_id_number(p["code_holder_id"]), mask_id_number(p["patient_id"]))
        event = c.FraudSuspected(charge_id=p["charge_id"], patient_id=p["patient_id"],
                                 code_holder_id=p["code_holder_id"], institution_code=p["institution_code"],
                                 institution_region=p["institution_region"], presented_via=p["presented_via"])
        value = envelope.seal(c.FRAUD_SUSPECTED, event,
                              event_id=envelope.outcome_id(readable.event_id, c.FRAUD_SUSPECTED))
        return Outgoing(topics.SETTLEMENT_RESULTS, p["charge_id"].encode(), value)

    # -- bureau.accounts ----------------------------------------------------------------------
    async def follow_bureaus(self, batch: list[Received]) -> None:
        """Keep the balance cache in step with the bureaus' books: registrations, contributions,
        local spending and snapshots, each applied once and in bureau_seq order per person."""
        people, moves, reports = [], [], []
        for msg in batch:
            readable = envelope.read(msg.value, BUREAU_EVENT_TYPES)
            if isinstance(readable, envelope.Unreadable):
                await dead_letter(self._broker, msg, readable.error)
                continue
            try:
                payload = readable.body.get("payload")
                if readable.event_type == PERSON_REGISTERED:
                    p = PersonRegistered.model_validate(payload)
                    people.append((p.person_id, p.region, "e" if p.scheme == "employee" else "r", p.balance))
                elif readable.event_type == DAILY_POSTINGS_REPORTED:
                    reports.append((readable.event_id, DailyPostingsReported.model_validate(payload)))
                elif readable.event_type == BALANCE_SNAPSHOT:
                    s = BalanceSnapshot.model_validate(payload)
                    moves.append((s.person_id, "snapshot", s.balance, s.bureau_seq, s.region))
                else:
                    m = AccountMovement.model_validate(payload)
                    moves.append((m.person_id, _MOVEMENT_KIND[readable.event_type], m.amount, m.bureau_seq, m.region))
            except ValidationError as exc:
                await dead_letter(self._broker, msg, f"invalid {readable.event_type}: {c.describe(exc)}")
        if people:
            await self._store.register(people)
        if moves:
            for (person, kind, *_), (outcome, _) in zip(moves, await self._store.bureau_movements(moves)):
                if outcome == "CLAMPED":
                    log.warning("bureau debit for %s exceeded the cached balance; clamped to 0",
                                mask_id_number(person))
        if reports:
            await publish_all(self._broker, [await self._reconcile(event_id, r) for event_id, r in reports])

    async def _reconcile(self, event_id: str, report: DailyPostingsReported) -> Outgoing:
        """对账 of one region and day: every posting that the two books do not agree on."""
        posted = await self._store.postings_of(report.region, report.day.strftime("%Y%m%d"))
        ours = {pid: Entry(direction, amount) for pid, (direction, amount, _) in posted.items()}
        theirs = {p.posting_id: Entry(p.direction, p.amount) for p in report.postings}
        differences = reconcile(ours, theirs)
        event = c.ReconciliationReport(
            report_for=event_id, region=report.region, day=report.day, platform_count=len(ours),
            bureau_count=len(theirs), matched=sum(1 for pid in ours.keys() & theirs.keys() if ours[pid] == theirs[pid]),
            platform_net=Fen(net(ours)), bureau_net=Fen(net(theirs)),
            differences=[c.ReconciliationDifference(
                posting_id=d.posting_id, kind=d.kind,
                platform_direction=d.platform.direction if d.platform else None,
                platform_amount=Fen(d.platform.amount) if d.platform else None,
                bureau_direction=d.bureau.direction if d.bureau else None,
                bureau_amount=Fen(d.bureau.amount) if d.bureau else None) for d in differences])
        log.info("reconciled %s %s: %d differences", report.region, report.day, len(differences))
        value = envelope.seal(c.RECONCILIATION_REPORT, event,
                              event_id=envelope.outcome_id(event_id, c.RECONCILIATION_REPORT))
        return Outgoing(topics.BUREAU_POSTINGS, report.region.encode(), value)

    # -- settlement.queries -------------------------------------------------------------------
    async def consumption(self, msg: Received) -> bytes | None:
        """家庭共济消费查询: every payment from a grantor's account, per beneficiary, with totals."""
        readable = envelope.read(msg.value, c.QUERY_TYPES)
        if isinstance(readable, envelope.Unreadable):
            await dead_letter(self._broker, msg, readable.error)
            return None
        try:
            q = c.QueryConsumption.model_validate(readable.body.get("payload"))
        except ValidationError as exc:
            refused = ChargeRefused(Reason.INVALID_CHARGE, c.describe(exc))
            return self._rejected(msg, readable, refused)[0].value
        groups = [c.BeneficiarySpending(
            beneficiary_id=mask_id_number(beneficiary),
            payments=[c.Payment(charge_id=r.charge_id, settled_at=r.settled_at, paid=Fen(r.paid),
                                refunded=Fen(r.refunded)) for r in rows],
            total_paid=Fen(sum(r.paid for r in rows)), total_refunded=Fen(sum(r.refunded for r in rows)))
            for beneficiary, rows in by_beneficiary(await self._store.spending(q.grantor_id),
                                                    q.date_from, q.date_to).items()]
        event = c.ConsumptionListed(command_id=readable.event_id, grantor_id=mask_id_number(q.grantor_id),
                                    date_from=q.date_from, date_to=q.date_to, beneficiaries=groups,
                                    total_paid=Fen(sum(g.total_paid for g in groups)),
                                    total_refunded=Fen(sum(g.total_refunded for g in groups)))
        return envelope.seal(c.CONSUMPTION_LISTED, event,
                             event_id=envelope.outcome_id(readable.event_id, c.CONSUMPTION_LISTED))


def _answer(msg: Received, key: bytes | None, value: bytes) -> list[Outgoing]:
    """An outcome on settlement.results, and on the caller's reply_to when it asked for one."""
    out = [Outgoing(topics.SETTLEMENT_RESULTS, key, value)]
    if msg.reply_to:
        out.append(Outgoing(msg.reply_to, key, value,
                            {"correlation_id": msg.correlation_id} if msg.correlation_id else None))
    return out


def _refusal_reason(applied: Applied) -> Reason:
    """A Function's refusal: CONFLICT (same id, another body) or the reason code it recorded."""
    return Reason.DUPLICATE_CHARGE_CONFLICT if applied.status == "CONFLICT" else Reason(applied.reason)


def _line(line: Line) -> c.SettledLine:
    return c.SettledLine(source=line.source, person_id=line.person_id, region=line.region,
                         payment_order=line.payment_order, amount=Fen(line.amount),
                         balance_after=None if line.balance_after is None else Fen(line.balance_after))
