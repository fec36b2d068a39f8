"""The bureaus' books as settlement keeps them: the designated institutions (bureau.institutions),
and on bureau.accounts the people registered and transferred, their accounts' movements and
snapshots (the balance cache kept in step), and the daily postings reports reconciled (对账)
against the platform's postings."""

from __future__ import annotations

import logging

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from shared import envelope, topics
from shared.bureau import (ACCOUNT_CREDITED, ACCOUNT_DEBITED_LOCALLY, BALANCE_SNAPSHOT, BUREAU_EVENT_TYPES,
                           DAILY_POSTINGS_REPORTED, PERSON_REGISTERED, PERSON_TRANSFERRED, AccountMovement,
                           BalanceSnapshot, DailyPostingsReported, PersonRegistered, PersonTransferred,
                           movement_refusal, speaks_for_region)
from shared.identity import mask_id_number
from shared.institutions import INSTITUTION_EVENT_TYPES, InstitutionRegistered
from shared.kafka import Outgoing, Received, is_transient
from shared.money import Fen
from shared.registrations import People, Standing
from shared.signing import REFUSAL_TEXTS, SignatureRefused, Signer, institution_keys
from services.settlement import contract as c
from services.settlement import his_contract as h
from services.settlement.domain import ids
from services.settlement.domain.authority import institution_refusal
from services.settlement.domain.reconciliation import Entry, net, reconcile
from services.settlement.metrics import SettlementMetrics
from services.settlement.signatures import Signatures
from services.settlement.storage.accounts import (InstitutionRegistration, Movement, MovementApplied, Registration,
                                                  SettlementStore, Transfer)
from services.settlement.usecases.answers import Answers, Delivery, dead

log = logging.getLogger("settlement")
_MOVEMENT_KIND = {ACCOUNT_CREDITED: "credit", ACCOUNT_DEBITED_LOCALLY: "debit", BALANCE_SNAPSHOT: "snapshot"}
# Why the Function refused a bureau movement, as its dead letter says (a code first). The person's
# region is the signer's (checked before): a person of another region is not the signer's to move.
_REFUSED_MOVEMENT = {
    "UNREGISTERED": "UNREGISTERED: no PersonRegistered for this person",
    "FOREIGN_REGION": "NOT_SIGNERS: the person is registered in another region than the signer's",
    "WATERMARK_BEHIND": "WATERMARK_BEHIND: postings_applied_through is below an earlier snapshot's "
                        "(would undo platform postings)",
    "WATERMARK_AHEAD": "WATERMARK_AHEAD: postings_applied_through names platform postings that were never made",
}


class BureauBooks:
    def __init__(self, store: SettlementStore, broker: KafkaBroker, metrics: SettlementMetrics | None = None,
                 signatures: Signatures | None = None) -> None:
        self._store = store
        self._metrics = metrics or SettlementMetrics(CollectorRegistry())
        # None only in unit tests of what needs no partner: every partner message is refused then
        self._signatures = signatures
        self._institutions_delivery = Delivery(topics.BUREAU_INSTITUTIONS, broker, self._metrics, signatures)
        self._accounts_delivery = Delivery(topics.BUREAU_ACCOUNTS, broker, self._metrics, signatures)

    # -- bureau.institutions ------------------------------------------------------------------
    async def follow_institutions(self, batch: list[Received]) -> None:
        """The designated institutions (定点医药机构) every charge is checked against."""
        await self._institutions_delivery.each(batch, self._institutions, dead)

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
        await self._accounts_delivery.each(batch, self._bureau_batch, dead)

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
        """Registrations and transfers judged by who may register or move whom, against the person
        as the projection has him and as the batch's earlier events leave him (one read for the
        batch), by the same judge as binding's and notify's projections (shared/registrations.py);
        movements pass as they are (their region was judged already). The dead letters' reasons
        are settlement's own words."""
        states = await self._store.people(sorted({e.person_id for _, _, e in events if not isinstance(e, Movement)}))
        people = People({pid: Standing(s.region, s.moving_to) for pid, s in states.items()})
        believed: list[tuple[Received, Registration | Transfer | Movement]] = []
        for msg, signer, event in events:
            if isinstance(event, Movement):
                believed.append((msg, event))
                continue
            verdict = people.judge(signer, event)
            if verdict.refused is None:
                believed.append((msg, _change(event)))
                continue
            refusal, now = verdict.refused, verdict.before
            if isinstance(event, PersonRegistered):
                why = (f"{signer.key_id} may not register a person of region {now.region}"
                       + (f" (transferred to {now.transferred_to})" if now.transferred_to else " (not transferred)")
                       if speaks_for_region(signer, event.region) else
                       f"{signer.key_id} may not register a person in region {event.region}")
            else:
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


def _change(event: PersonRegistered | PersonTransferred) -> Registration | Transfer:
    """A believed person event as the settlement Function applies it."""
    if isinstance(event, PersonRegistered):
        return Registration(event.person_id, event.region, "e" if event.scheme == "employee" else "r", event.balance)
    return Transfer(event.person_id, event.to_region)


def drift_detected(move: Movement, applied: MovementApplied) -> tuple[Outgoing, int] | None:
    """对账 per account: AccountDriftDetected for a snapshot that found the cache off by more than the
    platform's postings after its watermark explain, with the drift in fen; None when they agree (or
    for anything but a snapshot). A redelivered snapshot gets the same event (same id) again."""
    if move.kind != "snapshot" or applied.platform_balance is None or applied.in_flight is None:
        return None
    drift = applied.platform_balance - (move.amount + applied.in_flight)
    if drift == 0:
        return None
    event = h.AccountDriftDetected(person_id=move.person_id, region=move.region, bureau_seq=move.bureau_seq,
                                   snapshot_balance=Fen(move.amount), in_flight=Fen(applied.in_flight),
                                   platform_balance=Fen(applied.platform_balance), drift=Fen(drift))
    value = envelope.seal(h.ACCOUNT_DRIFT_DETECTED, event,
                          event_id=ids.event_id(h.ACCOUNT_DRIFT_DETECTED, move.person_id, move.bureau_seq))
    return Outgoing(topics.bureau_postings(move.region), move.region.encode(), value), drift
