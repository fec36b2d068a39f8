"""Sending, recording and releasing notify's messages: each claimed (pending, with a lease) before
the SMS gateway sees it, held (deferred) through quiet hours or while its person is not known yet,
recorded (sent, failed, skipped) once, and its one outcome event published on notify.deliveries.

Messages go through in batches, a step at a time for all of them: claims in one Redis round trip,
contacts and institution names in one each, the SMS to the provider at once (at most
NOTIFY_SEND_CONCURRENCY a wave, each wave claimed just before it is sent, so a claim's lease still
covers one send), outcomes recorded in one round trip and published with one wait for the acks.
The consumers never wait on a held message: the periodic `release_due` looks at it again."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from faststream.kafka import KafkaBroker

from shared import envelope, topics
from shared.identity import mask_phone
from shared.kafka import Outage, publish_all
from shared.kafka import Outgoing as Publication
from services.notify import contract as c
from services.notify.domain import notices as n
from services.notify.domain.quiet import QuietHours
from services.notify.domain.templates import (institution_shown, is_urgent, placeholders, render, segments,
                                              template_params)
from services.notify.metrics import NotifyMetrics
from services.notify.providers.base import Outgoing, ProviderError, Receipt, SmsProvider
from services.notify.storage.deliveries import ClaimAsk, DeliveryStore, decode_outcome, encode_outcome

log = logging.getLogger("notify")
MESSAGE_NAMESPACE = uuid.UUID("5d1b7f0e-93a4-5c1e-a2f0-6100a0005000")


def message_id_for(notice: n.Notice) -> str:
    """One message per source event, recipient and template: the dedupe key, across restarts."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{notice.source_event_id}/{notice.role}/{notice.person_id}/"
                                              f"{notice.template}"))


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def outcome_event(message_id: str, notice: n.Notice, outcome: dict[str, Any]) -> bytes:
    """SmsSent or SmsFailed from the message's notice and its recorded outcome: the same bytes
    each time (the event id derived from the message, the time the one recorded)."""
    common = dict(message_id=message_id, source_event_id=notice.source_event_id,
                  source_event_type=notice.source_event_type, charge_id=notice.charge_id,
                  binding_id=notice.binding_id, recipient_role=notice.role, phone=outcome["phone"],
                  template=notice.template, segments=outcome["segments"], provider=outcome["provider"],
                  sent_at=outcome["at"])
    if outcome["type"] == c.SMS_SENT:
        event = c.SmsSent(**common, provider_message_id=outcome["receipt"])
    else:
        event = c.SmsFailed(**common, reason=outcome["reason"], attempts=outcome["attempts"], detail=outcome["detail"])
    return envelope.seal(outcome["type"], event, event_id=envelope.outcome_id(message_id, outcome["type"]),
                         occurred_at=datetime.fromisoformat(outcome["at"]))


def delivery(message_id: str, notice: n.Notice, recorded: bytes) -> Publication:
    """The outcome event on notify.deliveries, keyed by the masked phone (contract.md), rebuilt
    from the recorded outcome: the first publication and every republication are the same bytes."""
    outcome = decode_outcome(recorded)
    return Publication(topics.NOTIFY_DELIVERIES, outcome["phone"].encode(),
                       outcome_event(message_id, notice, outcome))


@dataclass(eq=False)
class Message:
    """One message on its way through a batch: what it is, who asked, and where it stands."""

    message_id: str
    notice: n.Notice
    source: int                 # which input (record, due entry, binding) it came from: its defect boundary
    republish: bool = True      # publish the recorded outcome again when it has one
    from_state: str = ""        # '' new, 'deferred' released after a wait
    wait_until_ms: int = 0      # how long an unknown person is still waited for (0: not waiting yet)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    sms: Outgoing | None = None   # what goes to the provider, once it is known


@dataclass(frozen=True)
class _Hold:
    """Put the message back to wait until `release_ms`; an unknown person is waited for until
    `wait_until_ms`."""

    release_ms: int
    wait_until_ms: int


_Decided = tuple[Message, dict[str, Any] | None]  # a message and its outcome (None: skipped, nothing to tell)


class Deliveries:
    def __init__(self, store: DeliveryStore, broker: KafkaBroker, provider: SmsProvider, quiet: QuietHours,
                 attempts: int, backoff_ms: int, *, template_codes: dict[str, str], lease_seconds: float,
                 unknown_wait_seconds: float, unknown_retry_seconds: float, send_concurrency: int,
                 clock: Callable[[], datetime], metrics: NotifyMetrics, outage: Outage) -> None:
        self._store, self._broker, self._provider = store, broker, provider
        self._metrics = metrics
        self._quiet, self._attempts, self._backoff = quiet, attempts, backoff_ms / 1000
        self._codes = template_codes
        self._lease_ms = int(lease_seconds * 1000)
        self._wait_ms, self._retry_ms = int(unknown_wait_seconds * 1000), int(unknown_retry_seconds * 1000)
        self._wave = send_concurrency
        self._clock = clock
        # A step of claimed messages is retried in place when Redis or Kafka is away: starting
        # them over would find their own claims and leave them to the lease.
        self._outage = outage

    async def release_due(self) -> int:
        """Look again at messages whose time has come: held ones (quiet hours over, a person
        looked for again) are sent; a claim past its lease was left by a crashed sender and is
        recorded `outcome_unknown`. Returns how many were looked at."""
        due = await self._store.due(_ms(self._clock()))
        messages = [Message(item.message_id, item.notice, i, from_state="deferred", wait_until_ms=item.wait_until_ms)
                    for i, item in enumerate(due)]
        for i, exc in (await self.deliver(messages, keep_notice=True)).items():
            log.error("releasing message %s failed", due[i].message_id, exc_info=exc)
        return len(due)

    async def deliver(self, messages: list[Message], keep_notice: bool = False) -> dict[int, Exception]:
        """Claim, send, record and publish, a wave of messages at a time; the outcomes of every
        wave are published together at the end. Returns each defective input's defect."""
        defects: dict[int, Exception] = {}
        published: list[Publication] = []
        while messages:
            # The same message twice in one batch (a redelivery beside the original): the second
            # goes after the first has its outcome, and republishes it, as a later batch would.
            seen: set[str] = set()
            once = [m for m in messages if not (m.message_id in seen or seen.add(m.message_id))]
            taken = set(map(id, once))
            messages = [m for m in messages if id(m) not in taken]
            for first in range(0, len(once), self._wave):
                published += await self._wave_of(once[first:first + self._wave], keep_notice, defects)
        if published:
            await self._outage.retrying(lambda: publish_all(self._broker, published))
        return defects

    async def _wave_of(self, wave: list[Message], keep_notice: bool,
                       defects: dict[int, Exception]) -> list[Publication]:
        now = self._clock()
        claims = await self._outage.retrying(lambda: self._store.claim(
            [ClaimAsk(m.message_id, None if keep_notice else m.notice, m.token, m.from_state, m.notice.day)
             for m in wave],
            _ms(now), _ms(now) + self._lease_ms))
        claimed, orphaned, published = [], [], []
        for m, claim in zip(wave, claims):
            if isinstance(claim, Exception):
                defects.setdefault(m.source, claim)
            elif claim.status == "CLAIMED":
                claimed.append(m)
            elif claim.status == "TAKEN_OVER":
                orphaned.append(m)
            elif claim.recorded and m.republish:
                # Already sent or failed: the same outcome again (same bytes, same event_id), never
                # a second SMS.
                published.append(delivery(m.message_id, m.notice, claim.recorded))
            # Else it is held (quiet hours, a person not known yet) or being sent by a live
            # instance; a sender that died is found past its lease by `release_due`.
        outcomes = await self._prepare(claimed, orphaned, now, defects)
        outcomes += await self._send([m for m in claimed if m.sms is not None], defects)
        return published + await self._record(outcomes, defects)

    async def _prepare(self, claimed: list[Message], orphaned: list[Message], now: datetime,
                       defects: dict[int, Exception]) -> list[_Decided]:
        """Decide each claimed message: held (quiet hours, a person not known yet), nothing to
        send, failed, or its SMS made ready (`m.sms`). Returns the outcomes already decided."""
        people = {pid for m in claimed for pid in (m.notice.person_id, *m.notice.name_of.values())}
        people |= {m.notice.person_id for m in orphaned}
        contacts = await self._outage.retrying(lambda: self._store.contacts(sorted(people))) if people else {}
        codes = sorted({m.notice.institution_code for m in claimed if m.notice.institution_code})
        registered = await self._outage.retrying(lambda: self._store.institution_names(codes)) if codes else {}
        outcomes: list[_Decided] = []
        holds: list[tuple[Message, _Hold]] = []
        for m in orphaned:
            # A claim found pending past its lease: its sender died, perhaps after the gateway
            # took the message. Recorded as unknown, never sent again.
            phone = contacts.get(m.notice.person_id, ("",))[0]
            outcomes.append((m, self._failure(c.OUTCOME_UNKNOWN, 0, phone, detail="claim left pending past its lease")))
        for m in claimed:
            try:
                decided = self._decide(m, contacts, registered, now)
            except Exception as exc:  # noqa: BLE001 - one message's defect must not hold up the others
                defects.setdefault(m.source, exc)
                continue
            if isinstance(decided, _Hold):
                holds.append((m, decided))
            elif decided is not None:
                outcomes.append(decided)
        if holds:
            answers = await self._outage.retrying(lambda: self._store.hold(
                [(m.message_id, m.token, m.notice, h.release_ms, h.wait_until_ms) for m, h in holds]))
            for (m, _), answer in zip(holds, answers):
                if isinstance(answer, Exception):
                    defects.setdefault(m.source, answer)
        return outcomes

    def _decide(self, m: Message, contacts: dict[str, tuple[str, str]], registered: dict[str, str],
                now: datetime) -> _Hold | _Decided | None:
        """How a claimed message goes on: held, its outcome decided without sending, or (None)
        its SMS made ready in `m.sms`."""
        notice = m.notice
        if not is_urgent(notice.template) and self._quiet.contains(now):
            log.debug("message %s (%s) held until quiet hours end", m.message_id, notice.template)
            return _Hold(_ms(self._quiet.ends_after(now)), m.wait_until_ms)
        people = [notice.person_id, *notice.name_of.values()]
        if any(p not in contacts for p in people):
            deadline = m.wait_until_ms or _ms(now) + self._wait_ms
            if _ms(now) < deadline:
                # Notify may be behind on bureau.accounts (a restart reads topics in any order):
                # wait for the registration instead of losing the message for good.
                log.debug("message %s (%s) waits for a registration", m.message_id, notice.template)
                return _Hold(min(_ms(now) + self._retry_ms, deadline), deadline)
        values = {**notice.values, **{slot: contacts.get(pid, ("", "*"))[1] for slot, pid in notice.name_of.items()}}
        if "institution" in placeholders(notice.template):
            values["institution"] = institution_shown(registered.get(notice.institution_code or ""))
        sms = render(notice.template, values)
        known, phone = notice.person_id in contacts, contacts.get(notice.person_id, ("", ""))[0]
        if not phone and known and notice.role == "beneficiary":
            # A child or an elderly parent may have no phone: nothing to send, nothing failed.
            return m, None
        if not phone:
            return m, self._failure(c.NO_PHONE, 0, segments=sms.segments,
                                              detail=None if known else "not registered in time")
        m.sms = Outgoing(m.message_id, phone, notice.template, self._codes.get(notice.template, notice.template),
                         template_params(notice.template, values), sms.text)
        return None

    async def _send(self, sending: list[Message], defects: dict[int, Exception]) -> list[_Decided]:
        """Every SMS of the wave to the provider at once; those it surely did not take (and may
        take later) are tried again, together, after a back-off."""
        outcomes = []
        for attempt in range(1, self._attempts + 1):
            if not sending:
                break
            if attempt > 1:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 2))  # back-off between gateway attempts
            answers = await self._provider.send_many([m.sms for m in sending])
            again = []
            for m, answer in zip(sending, answers):
                parts = segments(m.sms.text)
                if isinstance(answer, Receipt):
                    log.debug("SMS %s sent to %s (%s, %d segment(s))", m.message_id, mask_phone(m.sms.phone),
                              m.notice.template, parts)
                    outcomes.append((m, {
                        "type": c.SMS_SENT, "phone": mask_phone(m.sms.phone), "segments": parts,
                        "provider": answer.provider, "receipt": answer.provider_message_id, "at": self._at()}))
                elif not isinstance(answer, ProviderError):
                    defects.setdefault(m.source, answer)
                else:
                    log.warning("SMS %s to %s, attempt %d: %s", m.message_id, mask_phone(m.sms.phone), attempt,
                                answer.reason)
                    if answer.ambiguous:
                        # It may have been delivered: at most once, so never again, and say so.
                        outcomes.append((m, self._failure(c.OUTCOME_UNKNOWN, attempt, m.sms.phone, parts,
                                                          answer.reason)))
                    elif not answer.retryable or attempt == self._attempts:
                        reason = c.GATEWAY_UNAVAILABLE if answer.retryable else c.GATEWAY_REFUSED
                        outcomes.append((m, self._failure(reason, attempt, m.sms.phone, parts, answer.reason)))
                    else:
                        again.append(m)
            sending = again
        return outcomes

    def _at(self) -> str:
        return self._clock().isoformat(timespec="seconds")

    def _failure(self, reason: str, attempts: int, phone: str = "", segments: int = 0,
                 detail: str | None = None) -> dict[str, Any]:
        return {"type": c.SMS_FAILED, "phone": mask_phone(phone) if phone else "", "segments": segments,
                "provider": self._provider.name, "reason": reason, "attempts": attempts, "detail": detail,
                "at": self._at()}

    async def _record(self, outcomes: Iterable[_Decided],
                      defects: dict[int, Exception]) -> list[Publication]:
        """Record each one outcome, and return what to publish: a sender whose claim was taken
        over meanwhile publishes nothing (the instance that took it over recorded and published
        the outcome)."""
        outcomes = list(outcomes)
        if not outcomes:
            return []
        records = [encode_outcome(outcome) if outcome else b"" for _, outcome in outcomes]
        answers = await self._outage.retrying(lambda: self._store.record(
            [(m.message_id, m.notice.day, m.token, record) for (m, _), record in zip(outcomes, records)]))
        published = []
        for (m, outcome), record, answer in zip(outcomes, records, answers):
            if isinstance(answer, Exception):
                defects.setdefault(m.source, answer)
            elif not answer:
                log.warning("message %s: claim taken over by another instance; its outcome stands", m.message_id)
            elif outcome:
                if outcome["type"] == c.SMS_FAILED:
                    log.warning("SMS %s failed after %d attempt(s): %s", m.message_id, outcome["attempts"],
                                outcome["reason"])
                published.append(delivery(m.message_id, m.notice, record))
        self._metrics.recorded(outcome for (_, outcome), answer in zip(outcomes, answers)
                               if outcome and answer and not isinstance(answer, Exception))
        return published
