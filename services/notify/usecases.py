"""The notify service's use cases: turn settlement and binding events into SMS to the family,
send each at most once with exactly one outcome event, hold non-urgent ones through quiet hours,
wait (bounded) for people notify has not read yet, publish every outcome.

A message's life is kept in Redis (storage/notify.lua): claimed (pending, with a lease) before
the gateway sees it, held (deferred) while it waits, recorded (sent, failed, skipped) once. The
consumers never wait on a held message: the periodic `release_due` looks at it again."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import envelope, topics
from shared.identity import mask_name, mask_phone
from shared.institutions import INSTITUTION_EVENT_TYPES, InstitutionRegistered
from shared.kafka import Outage, Received, answer_or_dead_letter, dead_letter
from shared.registrations import registrations
from services.notify import contract as c
from services.notify.domain import notices as n
from services.notify.domain.quiet import QuietHours
from services.notify.domain.templates import institution_shown, is_urgent, render, template_params
from services.notify.providers.base import Outgoing, ProviderError, SmsProvider
from services.notify.storage.deliveries import DeliveryStore

log = logging.getLogger("notify")
_MESSAGE_NAMESPACE = uuid.UUID("5d1b7f0e-93a4-5c1e-a2f0-6100a0005000")
ENDING_WITHIN_DAYS = 7


def message_id_for(notice: n.Notice) -> str:
    """One message per source event, recipient and template: the dedupe key, across restarts."""
    return str(uuid.uuid5(_MESSAGE_NAMESPACE, f"{notice.source_event_id}/{notice.role}/{notice.person_id}/"
                                              f"{notice.template}"))


def short_masked_name(name: str) -> str:
    """张*明 style, at most four characters, so every template fits its segments."""
    masked = mask_name(name)
    return masked if len(masked) <= 4 else masked[0] + "**" + masked[-1]


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _where(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['type']}" for e in exc.errors()[:5])


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


class NotifyService:
    def __init__(self, store: DeliveryStore, broker: KafkaBroker, provider: SmsProvider, quiet: QuietHours,
                 attempts: int, backoff_ms: int, *, template_codes: dict[str, str] | None = None,
                 lease_seconds: float = 60, unknown_wait_seconds: float = 600,
                 unknown_retry_seconds: float = 10, clock: Callable[[], datetime] = envelope.now) -> None:
        self._store, self._broker, self._provider = store, broker, provider
        self._quiet, self._attempts, self._backoff = quiet, attempts, backoff_ms / 1000
        self._codes = template_codes or {}
        self._lease_ms = int(lease_seconds * 1000)
        self._wait_ms, self._retry_ms = int(unknown_wait_seconds * 1000), int(unknown_retry_seconds * 1000)
        self._clock = clock
        self._outage = Outage("notify")

    async def _retry(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """A step of a claimed message is retried in place when Redis or Kafka is away: starting
        the message over would find its own claim and leave it to the lease."""
        return await self._outage.retrying(work)

    # -- inputs: one boundary per message ----------------------------------------------------------
    async def on_settlement_results(self, batch: list[Received]) -> None:
        for msg in batch:
            await answer_or_dead_letter(self._broker, msg, self._answer_settlement, self._outage)

    async def on_binding_events(self, batch: list[Received]) -> None:
        for msg in batch:
            await answer_or_dead_letter(self._broker, msg, self._answer_binding, self._outage)

    async def _answer_settlement(self, msg: Received) -> None:
        await self._answer(msg, c.SETTLEMENT_TYPES, n.for_settlement)

    async def _answer_binding(self, msg: Received) -> None:
        await self._answer(msg, c.BINDING_TYPES, n.for_binding)

    async def _answer(self, msg: Received, known: frozenset[str], notices_of) -> None:
        readable = envelope.read(msg.value, known)
        if isinstance(readable, envelope.Unreadable):
            await dead_letter(self._broker, msg, readable.error)
            return
        model = c.READ.get(readable.event_type)
        if model is None:
            return  # rejections and fraud reports call for no SMS
        try:
            payload = model.model_validate(readable.body.get("payload")).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            await dead_letter(self._broker, msg, f"invalid {readable.event_type}: {_where(exc)}")
            return
        for notice in notices_of(readable.event_id, readable.event_type, payload):
            await self.deliver(notice)

    # -- projections -------------------------------------------------------------------------------
    async def on_bureau_accounts(self, batch: list[Received]) -> None:
        """Project PersonRegistered into the contacts the SMS go to; the name only masked."""
        people = [(p.person_id, p.phone, short_masked_name(p.name)) for p in await registrations(self._broker, batch)]
        if people:
            await self._store.save_contacts(people)

    async def on_institutions(self, batch: list[Received]) -> None:
        """Project InstitutionRegistered: the names payment SMS give (never what a HIS sent)."""
        names: dict[str, str] = {}
        for msg in batch:
            readable = envelope.read(msg.value, INSTITUTION_EVENT_TYPES)
            if isinstance(readable, envelope.Unreadable):
                await dead_letter(self._broker, msg, readable.error)
                continue
            try:
                registered = InstitutionRegistered.model_validate(readable.body.get("payload"))
            except ValidationError as exc:
                await dead_letter(self._broker, msg, f"invalid InstitutionRegistered: {_where(exc)}")
                continue
            names[registered.institution_code] = registered.name
        if names:
            await self._store.save_institutions(names)

    async def on_binding_projection(self, batch: list[Received]) -> None:
        """Project binding.events into the bindings in force, for the ending-soon check. What
        cannot be read is skipped here: the answering consumer of the same topic dead-letters it."""
        for msg in batch:
            readable = envelope.read(msg.value, c.BINDING_TYPES)
            if isinstance(readable, envelope.Unreadable):
                continue
            model = {"BindingCreated": c.BindingCreatedIn, "BindingRevoked": c.BindingRevokedIn}.get(
                readable.event_type)
            if model is None:
                continue
            try:
                event = model.model_validate(readable.body.get("payload"))
            except ValidationError:
                continue
            if isinstance(event, c.BindingCreatedIn):
                await self._store.follow_binding(event.binding_id, event.grantor_id, event.beneficiary_id,
                                                 event.end_date.isoformat())
            else:
                await self._store.follow_binding(event.binding_id, "", "", None)

    # -- periodic ----------------------------------------------------------------------------------
    async def check_endings(self) -> int:
        """The daily check: every binding ending within 7 days, told once per end date."""
        today = self._clock().date()
        last = today + timedelta(days=ENDING_WITHIN_DAYS)
        ending = await self._store.ending_between(int(today.strftime("%Y%m%d")), int(last.strftime("%Y%m%d")))
        for binding_id, grantor, beneficiary, end in ending:
            # Every run sees the same bindings again: announce each once, republish nothing.
            await self.deliver(n.ending_soon(binding_id, grantor, beneficiary, end), republish=False)
        return len(ending)

    async def release_due(self) -> int:
        """Look again at messages whose time has come: held ones (quiet hours over, a person
        looked for again) are sent; a claim past its lease was left by a crashed sender and is
        recorded `outcome_unknown`. Returns how many were looked at."""
        now = self._clock()
        due = await self._store.due(_ms(now))
        for item in due:
            token = uuid.uuid4().hex
            try:
                claim = await self._retry(lambda: self._store.claim(
                    item.message_id, None, token, _ms(now), _ms(now) + self._lease_ms, from_state="deferred"))
                if claim.status == "CLAIMED":
                    await self._send(item.message_id, item.notice, token, item.wait_until_ms)
                elif claim.status == "TAKEN_OVER":
                    await self._unknown(item.message_id, item.notice, token)
            except Exception:  # noqa: BLE001 - one message's defect must not hold up the others
                log.exception("releasing message %s failed", item.message_id)
        return len(due)

    # -- delivery ----------------------------------------------------------------------------------
    async def deliver(self, notice: n.Notice, republish: bool = True) -> None:
        message_id, token, now = message_id_for(notice), uuid.uuid4().hex, self._clock()
        claim = await self._retry(lambda: self._store.claim(message_id, notice, token, _ms(now),
                                                            _ms(now) + self._lease_ms))
        if claim.status == "TAKEN_OVER":
            await self._unknown(message_id, notice, token)
        elif claim.status == "CLAIMED":
            await self._send(message_id, notice, token, 0)
        elif claim.recorded and republish:
            # Already sent or failed: the same outcome again (same bytes, same event_id), never a
            # second SMS. The record keeps only what the redelivered event cannot tell again.
            await self._retry(lambda: self._publish(outcome_event(message_id, notice, json.loads(claim.recorded))))
        # Else it is held (quiet hours, a person not known yet) or being sent by a live instance;
        # a sender that died is found past its lease by `release_due`.

    async def _send(self, message_id: str, notice: n.Notice, token: str, wait_until_ms: int) -> None:
        now = self._clock()
        if not is_urgent(notice.template) and self._quiet.contains(now):
            await self._retry(lambda: self._store.hold(message_id, token, notice,
                                                       _ms(self._quiet.ends_after(now)), wait_until_ms))
            log.info("message %s (%s) held until quiet hours end", message_id, notice.template)
            return
        people = [notice.person_id, *notice.name_of.values()]
        contacts = await self._retry(lambda: self._store.contacts(people))
        if any(p not in contacts for p in people):
            deadline = wait_until_ms or _ms(now) + self._wait_ms
            if _ms(now) < deadline:
                # Notify may be behind on bureau.accounts (a restart reads topics in any order):
                # wait for the registration instead of losing the message for good.
                await self._retry(lambda: self._store.hold(message_id, token, notice,
                                                           min(_ms(now) + self._retry_ms, deadline), deadline))
                log.info("message %s (%s) waits for a registration", message_id, notice.template)
                return
        names = {slot: contacts.get(pid, ("", "*"))[1] for slot, pid in notice.name_of.items()}
        values = {**notice.values, **names}
        if notice.template == "payment":
            registered = (await self._retry(lambda: self._store.institution_name(notice.institution_code))
                          if notice.institution_code else None)
            values["institution"] = institution_shown(registered)
        sms = render(notice.template, values)
        known, phone = notice.person_id in contacts, contacts.get(notice.person_id, ("", ""))[0]
        if not phone and known and notice.role == "beneficiary":
            # A child or an elderly parent may have no phone: nothing to send, nothing failed.
            await self._finish(message_id, notice, token, "skipped", None)
            return
        if not phone:
            await self._fail(message_id, notice, token, c.NO_PHONE, 0, segments=sms.segments,
                             detail=None if known else "not registered in time")
            return
        outgoing = Outgoing(message_id, phone, notice.template, self._codes.get(notice.template, notice.template),
                            template_params(notice.template, values), sms.text)
        for attempt in range(1, self._attempts + 1):
            try:
                receipt = await self._provider.send(outgoing)
            except ProviderError as exc:
                log.warning("SMS %s to %s, attempt %d: %s", message_id, mask_phone(phone), attempt, exc.reason)
                if exc.ambiguous:
                    # It may have been delivered: at most once, so never again, and say so.
                    await self._fail(message_id, notice, token, c.OUTCOME_UNKNOWN, attempt, phone, sms.segments,
                                     exc.reason)
                    return
                if not exc.retryable or attempt == self._attempts:
                    reason = c.GATEWAY_UNAVAILABLE if exc.retryable else c.GATEWAY_REFUSED
                    await self._fail(message_id, notice, token, reason, attempt, phone, sms.segments, exc.reason)
                    return
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))  # back-off between gateway attempts
                continue
            log.info("SMS %s sent to %s (%s, %d segment(s))", message_id, mask_phone(phone), notice.template,
                     sms.segments)
            await self._finish(message_id, notice, token, "sent", {
                "type": c.SMS_SENT, "phone": mask_phone(phone), "segments": sms.segments, "provider": receipt.provider,
                "receipt": receipt.provider_message_id, "at": self._clock().isoformat(timespec="seconds")})
            return

    async def _unknown(self, message_id: str, notice: n.Notice, token: str) -> None:
        """A claim found pending past its lease: its sender died, perhaps after the gateway took
        the message. Recorded as unknown, never sent again."""
        contacts = await self._retry(lambda: self._store.contacts([notice.person_id]))
        await self._fail(message_id, notice, token, c.OUTCOME_UNKNOWN, 0, contacts.get(notice.person_id, ("",))[0],
                         detail="claim left pending past its lease")

    async def _fail(self, message_id: str, notice: n.Notice, token: str, reason: str, attempts: int,
                    phone: str = "", segments: int = 0, detail: str | None = None) -> None:
        log.warning("SMS %s failed after %d attempt(s): %s", message_id, attempts, reason)
        await self._finish(message_id, notice, token, "failed", {
            "type": c.SMS_FAILED, "phone": mask_phone(phone) if phone else "", "segments": segments,
            "provider": self._provider.name, "reason": reason, "attempts": attempts, "detail": detail,
            "at": self._clock().isoformat(timespec="seconds")})

    async def _finish(self, message_id: str, notice: n.Notice, token: str, state: str,
                      outcome: dict[str, Any] | None) -> None:
        """Record the one outcome, then publish it; a sender whose claim was taken over meanwhile
        publishes nothing (the instance that took it over recorded and published the outcome)."""
        record = json.dumps(outcome, ensure_ascii=False, separators=(",", ":")).encode() if outcome else b""
        recorded, _ = await self._retry(lambda: self._store.record(message_id, token, state, record))
        if not recorded:
            log.warning("message %s: claim taken over by another instance; its outcome stands", message_id)
            return
        if outcome:
            await self._retry(lambda: self._publish(outcome_event(message_id, notice, outcome)))

    async def _publish(self, value: bytes) -> None:
        """On notify.deliveries, keyed by the masked phone (contract.md)."""
        key = json.loads(value)["payload"]["phone"].encode()
        await self._broker.publish(value, topics.NOTIFY_DELIVERIES, key=key)
