"""对账 with the HIS, per institution and day (issue 15): the settlement service's ledger of what it
settled, and its answers to the HIS's totals (对总账) and detail (对明细账).

- The ledger itself, `stl:ild:{institution}:{day}`, is written by the Functions that settle, refund
  and reverse, in the same atomic step (storage/ledger.lua): every outcome is in it before it is
  published, so every answer read off it is final, recorded, and answered again on redelivery.
- `reconcile`: his.reconciliation.
- `project`: the upgrade from the release that projected the ledger from settlement.results
  (services/settlement/ledger_drain.py): what an outcome adds to the ledger, read back from it.

Invalid messages: an envelope that cannot be read goes to his.reconciliation.dlq with its original
bytes; one that can be read is always answered, with InstitutionReconciliationRejected and a reason
(contract.md, "Rejection or dead letter").
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from functools import lru_cache

import orjson
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import envelope, topics
from shared.envelope import CHINA_TZ
from shared.institutions import INSTITUTION_CODE_PATTERN
from shared.kafka import (Outage, Outgoing, Received, answer_or_dead_letter, dead_letter, publish_all, publish_replies,
                          reply_to)
from shared.logs import shown
from shared.money import Fen, parse_yuan
from services.settlement import his_contract as h
from services.settlement.contract import CHARGE_ID_PATTERN, CHARGE_SETTLED, PAYMENT_REVERSED, REFUND_SETTLED, describe
from services.settlement.domain import his_reconciliation as rec
from services.settlement.domain.ids import event_id
from services.settlement.metrics import ReconciliationMetrics
from services.settlement.storage.ledger import LedgerItem, LedgerStore, PartsInconsistent
from services.settlement.domain.authority import his_refusal, reply_prefix
from services.settlement.signatures import Signatures, answered_only_on
from shared.signing import SignatureRefused, Signer

log = logging.getLogger("settlement")
_INSTITUTION = re.compile(INSTITUTION_CODE_PATTERN)
_ID = re.compile(CHARGE_ID_PATTERN)


@lru_cache(maxsize=256)
def _china_day(settled_at: str) -> str:
    return datetime.fromisoformat(settled_at).astimezone(CHINA_TZ).strftime("%Y%m%d")


def ledger_item(value: bytes) -> LedgerItem | None:
    """What one settlement.results message adds to the ledger (None: nothing)."""
    body = orjson.loads(value)
    event_type = body.get("event_type")
    if event_type not in (CHARGE_SETTLED, REFUND_SETTLED, PAYMENT_REVERSED):
        return None
    p = body["payload"]
    if event_type == PAYMENT_REVERSED:
        if not (_INSTITUTION.fullmatch(p["institution_code"]) and _ID.fullmatch(p["charge_id"])
                and _ID.fullmatch(p["dispute_id"])):
            raise ValueError("an id outside the contract's alphabet")
        return LedgerItem(p["institution_code"], _china_day(p["reversed_at"]), p["charge_id"],
                          dispute_id=p["dispute_id"], refunded=parse_yuan(p["amount"]))
    # Only the settlement service writes these, but the ledger's keys and fields are built of them:
    # an id outside the contract's alphabet is never let in.
    if not (_INSTITUTION.fullmatch(p["institution_code"]) and _ID.fullmatch(p["charge_id"])
            and (event_type == CHARGE_SETTLED or _ID.fullmatch(p["refund_id"]))):
        raise ValueError("an id outside the contract's alphabet")
    day = _china_day(p["settled_at"])
    if event_type == REFUND_SETTLED:
        return LedgerItem(p["institution_code"], day, p["charge_id"], p["refund_id"], refunded=parse_yuan(p["amount"]))
    amounts = rec.charge_amounts(parse_yuan(p["individual_borne"]),
                                 ((x["source"], parse_yuan(x["amount"])) for x in p["lines"]))
    return LedgerItem(p["institution_code"], day, p["charge_id"], amounts=amounts)


def _totals_out(t: rec.Totals) -> h.LedgerTotals:
    return h.LedgerTotals(charge_count=t.charge_count, individual_borne_total=Fen(t.borne), own_total=Fen(t.own),
                          family_total=Fen(t.family), cash_total=Fen(t.cash), refund_count=t.refund_count,
                          refund_total=Fen(t.refunded))


def _amounts_out(x: rec.ChargeAmounts | int | None) -> h.ChargeAmounts | h.RefundAmount | None:
    if x is None:
        return None
    if isinstance(x, int):
        return h.RefundAmount(amount=Fen(x))
    return h.ChargeAmounts(individual_borne=Fen(x.borne), own=Fen(x.own), family=Fen(x.family), cash=Fen(x.cash))


class Refused(Exception):
    def __init__(self, reason: h.ReconciliationReason, detail: str = "") -> None:
        super().__init__(reason.value)
        self.reason, self.detail = reason, detail


class Ledger:
    def __init__(self, store: LedgerStore, broker: KafkaBroker, keep_days: int, metrics: ReconciliationMetrics,
                 clock: Callable[[], datetime] = envelope.now, signatures: Signatures | None = None) -> None:
        self._store, self._broker = store, broker
        self._signatures = signatures  # None only in unit tests: every report is then refused
        self._keep_days, self._metrics, self._clock = keep_days, metrics, clock
        self._outage = Outage("settlement ledger")
        self._reports = Outage(topics.HIS_RECONCILIATION)

    # -- settlement.results -> stl:ild (the upgrade's drain only) -----------------------------
    async def project(self, batch: list[Received]) -> None:
        items = []
        for msg in batch:
            try:
                if item := ledger_item(msg.value):
                    items.append(item)
            except Exception as exc:  # noqa: BLE001 - our own output; a defect upstream, not a reason to stall
                log.error("ledger: unreadable outcome %s[%d]@%d skipped: %s", msg.topic, msg.partition, msg.offset,
                          exc.__class__.__name__)
        _, conflicts = await self._outage.retrying(lambda: self._store.record(items))
        if conflicts:
            log.error("ledger: %d outcomes named a charge or refund already in the ledger with other amounts "
                      "(the first kept)", conflicts)

    # -- his.reconciliation -------------------------------------------------------------------
    async def reconcile(self, batch: list[Received]) -> None:
        """Answer a batch of reports, each on its own (a defect costs one message: dead-lettered, and
        answered PLATFORM_ERROR)."""
        # contract version 3: who signed each report, the keys of the batch's institutions in one read
        verdicts = await self._reports.retrying(lambda: self._signatures.his(batch)) if self._signatures else \
            [SignatureRefused.UNKNOWN_SIGNER] * len(batch)
        for msg, signer in zip(batch, verdicts):
            await answer_or_dead_letter(self._broker, answered_only_on(msg, reply_prefix(signer)),
                                        lambda m: self._reconcile(m, signer), self._reports,
                                        on_defect=self.reconcile_defect)

    async def _reconcile(self, msg: Received, signer: Signer | SignatureRefused) -> None:
        readable = envelope.read(msg.value, h.RECONCILIATION_TYPES)
        if isinstance(readable, envelope.Unreadable):
            refused = f"{signer.value}: " if isinstance(signer, SignatureRefused) else ""
            await dead_letter(self._broker, msg, refused + readable.error)
            return
        payload = readable.body.get("payload")
        try:
            # a refusal of the signature is answered, never recorded: a resend signed by a key
            # registered since is reconciled
            if refusal := signer if isinstance(signer, SignatureRefused) else his_refusal(
                    signer, payload.get("institution_code") if isinstance(payload, dict) else None):
                raise Refused(h.ReconciliationReason(refusal.value))
            try:
                envelope.Envelope.model_validate(readable.body)
                model: h.InstitutionDailyTotals | h.InstitutionDailyDetail = (
                    h.InstitutionDailyTotals if readable.event_type == h.INSTITUTION_DAILY_TOTALS
                    else h.InstitutionDailyDetail).model_validate(payload)
            except ValidationError as exc:
                raise Refused(h.ReconciliationReason.INVALID_RECONCILIATION, describe(exc)) from None
            await self._check(model)
            if not await self._store.same_report(readable.event_id, _digest(payload)):
                raise Refused(h.ReconciliationReason.DUPLICATE_REPORT_CONFLICT)
            if isinstance(model, h.InstitutionDailyTotals):
                values = await self._on_totals(readable.event_id, model)
            else:
                values = await self._on_detail(readable.event_id, model)
        except Refused as refused:
            values = [self._rejected(readable.event_id, payload, refused)]
        if values:
            await self._answer(msg, payload, values)

    async def reconcile_defect(self, msg: Received) -> None:
        """A defect while answering (the message is dead-lettered too): the HIS is told PLATFORM_ERROR."""
        readable = envelope.read(msg.value, h.RECONCILIATION_TYPES)
        if isinstance(readable, envelope.Readable):
            payload = readable.body.get("payload")
            value = self._rejected(readable.event_id, payload, Refused(h.ReconciliationReason.PLATFORM_ERROR))
            await self._answer(msg, payload, [value])

    async def _answer(self, msg: Received, payload: object, values: list[bytes]) -> None:
        key = _institution(payload) or msg.key
        key = key.encode() if isinstance(key, str) else key
        await publish_all(self._broker, [Outgoing(topics.SETTLEMENT_RESULTS, key, v) for v in values])
        replies = [r for v in values for r in reply_to(msg, key, v)]
        await publish_replies(self._broker, self._signatures.signed(replies) if self._signatures else replies)

    async def _check(self, model: h.InstitutionDailyTotals | h.InstitutionDailyDetail) -> None:
        if not await self._store.is_designated(model.institution_code):
            raise Refused(h.ReconciliationReason.UNKNOWN_INSTITUTION)
        today = self._clock().astimezone(CHINA_TZ).date()
        if model.day > today or model.day < today - timedelta(days=self._keep_days):
            raise Refused(h.ReconciliationReason.DAY_NOT_KEPT, f"days kept: {self._keep_days}")

    async def _on_totals(self, source_id: str, t: h.InstitutionDailyTotals) -> list[bytes]:
        answer_id = event_id(h.INSTITUTION_RECONCILED, t.institution_code, t.day.isoformat(), "totals", source_id)
        if recorded := await self._store.recorded(answer_id):
            return recorded
        ours = await self._store.totals(t.institution_code, t.day.strftime("%Y%m%d"))
        theirs = rec.Totals(t.charge_count, t.individual_borne_total, t.own_total, t.family_total, t.cash_total,
                            t.refund_count, t.refund_total)
        owed = await self._owed(t.institution_code, t.day, detail=False)
        return await self._reconciled(answer_id, [], dict(owed_to_fund=owed,
            institution_code=t.institution_code, day=t.day, level="totals",
            result="balanced" if ours == theirs else "differs", report_for=source_id,
            platform_totals=_totals_out(ours), institution_totals=_totals_out(theirs), detail_requested=ours != theirs,
            **self._when(t.day)))

    async def _on_detail(self, source_id: str, d: h.InstitutionDailyDetail) -> list[bytes] | None:
        day = d.day.strftime("%Y%m%d")
        try:
            parts = await self._store.detail_part(d.institution_code, day, d.report_id, d.part, d.parts, {
                "event_id": source_id,
                "charges": [[x.charge_id, x.individual_borne, x.own, x.family, x.cash] for x in d.charges],
                "refunds": [[x.charge_id, x.refund_id, x.amount] for x in d.refunds]})
        except PartsInconsistent as exc:
            raise Refused(h.ReconciliationReason.PARTS_INCONSISTENT, f"parts named: {exc}") from None
        if parts is None:
            log.info("detail of %s %s part %d of %d kept", d.institution_code, d.day, d.part, d.parts)
            return None
        answer_id = event_id(h.INSTITUTION_RECONCILED, d.institution_code, d.day.isoformat(), "detail", d.report_id,
                             *(p["event_id"] for p in parts))
        if recorded := await self._store.recorded(answer_id):
            return recorded
        try:
            theirs = rec.book_of(
                ((c[0], rec.ChargeAmounts(*c[1:])) for p in parts for c in p["charges"]),
                ((r[0], r[1], r[2]) for p in parts for r in p["refunds"]))
        except rec.DuplicateRow as dup:
            raise Refused(h.ReconciliationReason.DUPLICATE_ROW, str(dup)) from None
        ours = await self._store.book(d.institution_code, day)
        differences = rec.compare(ours, theirs)
        listed = [h.InstitutionDifference(kind=x.kind, charge_id=x.charge_id, refund_id=x.refund_id,
                                          platform=_amounts_out(x.platform), institution=_amounts_out(x.institution))
                  for x in differences]
        owed = await self._owed(d.institution_code, d.day, detail=True)
        return await self._reconciled(answer_id, listed, dict(owed_to_fund=owed,
            institution_code=d.institution_code, day=d.day, level="detail",
            result="differs" if differences else "balanced", report_for=parts[0]["event_id"], report_id=d.report_id,
            parts=d.parts, platform_totals=_totals_out(rec.totals(ours)),
            institution_totals=_totals_out(rec.totals(theirs)), detail_requested=False, **self._when(d.day)))

    async def _owed(self, institution_code: str, day: date, detail: bool) -> h.LedgerReversals:
        """Upheld disputes reversed that day: what the institution owes the fund (issue 21)."""
        count, total, rows = await self._store.reversals(institution_code, day.strftime("%Y%m%d"))
        return h.LedgerReversals(reversal_count=count, reversal_total=Fen(total), reversals=[
            h.ReversalRow(charge_id=c, dispute_id=d, amount=Fen(a)) for c, d, a in rows] if detail else [])

    def _when(self, day: date) -> dict:
        now = self._clock()
        # final: the ledger is written as the platform settles (storage/ledger.lua), never behind
        return {"compared_at": now.isoformat(timespec="seconds"),
                "day_closed": day < now.astimezone(CHINA_TZ).date(), "final": True}

    async def _reconciled(self, answer_id: str, differences: list[h.InstitutionDifference],
                          fields: dict) -> list[bytes]:
        """The answer, in as many messages as its differences need (MAX_DIFFERENCES_PER_MESSAGE each,
        so no answer outgrows a Kafka message), recorded: a redelivered report is answered the same."""
        chunks = [differences[i:i + h.MAX_DIFFERENCES_PER_MESSAGE]
                  for i in range(0, len(differences), h.MAX_DIFFERENCES_PER_MESSAGE)] or [[]]
        values = [envelope.seal(h.INSTITUTION_RECONCILED, h.InstitutionReconciled(
            **fields, differences=chunk, differences_total=len(differences), answer_part=n,
            answer_parts=len(chunks)), event_id=answer_id if n == 1 else event_id(answer_id, n))
            for n, chunk in enumerate(chunks, 1)]
        log.info("reconciled %s %s (%s): %s, %d differences in %d messages", fields["institution_code"],
                 fields["day"], fields["level"], fields["result"], len(differences), len(values))
        recorded = await self._store.answered(answer_id, values)
        if recorded == values:
            self._metrics.reconciled(fields["level"], fields["result"])
        return recorded

    def _rejected(self, source_id: str, payload: object, refused: Refused) -> bytes:
        zh, en = h.MESSAGES[refused.reason]
        if refused.detail:
            en = f"{en}: {refused.detail}"[:300]
        p = payload if isinstance(payload, dict) else {}
        event = h.InstitutionReconciliationRejected(
            institution_code=_institution(p), day=_day(p.get("day")), source_event_id=source_id,
            reason_code=refused.reason, message_zh=zh, message_en=en)
        log.info("reconciliation message %s refused: %s", shown(source_id), refused.reason.value)
        self._metrics.refused(refused.reason.value)
        return envelope.seal(h.INSTITUTION_RECONCILIATION_REJECTED, event,
                             event_id=event_id(h.INSTITUTION_RECONCILIATION_REJECTED, source_id, refused.reason.value))


def _digest(payload: object) -> str:
    """A report's body as compared for a reused event_id: its payload, canonical JSON."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


def _institution(payload: object) -> str | None:
    """The institution a message names, when it names a valid one (the answer's key)."""
    code = payload.get("institution_code") if isinstance(payload, dict) else None
    return code if isinstance(code, str) and _INSTITUTION.fullmatch(code) else None


def _day(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        return None
