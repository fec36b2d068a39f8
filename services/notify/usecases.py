"""The notify service's use cases: turn settlement and binding events into SMS to the family,
send each at most once, hold non-urgent ones through quiet hours, publish every outcome."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from faststream.kafka import KafkaBroker

from shared import envelope, topics
from shared.identity import mask_name, mask_phone
from shared.kafka import Received, dead_letter
from shared.registrations import registrations
from services.notify import contract as c
from services.notify.domain import notices as n
from services.notify.domain.quiet import QuietHours
from services.notify.domain.templates import Sms, is_urgent, render
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


class NotifyService:
    def __init__(self, store: DeliveryStore, broker: KafkaBroker, provider: SmsProvider, quiet: QuietHours,
                 attempts: int, backoff_ms: int, clock: Callable[[], datetime] = envelope.now) -> None:
        self._store, self._broker, self._provider = store, broker, provider
        self._quiet, self._attempts, self._backoff = quiet, attempts, backoff_ms / 1000
        self._clock = clock

    # -- inputs -------------------------------------------------------------------------------
    async def on_settlement_results(self, batch: list[Received]) -> None:
        await self._each(batch, c.SETTLEMENT_TYPES, n.for_settlement)

    async def on_binding_events(self, batch: list[Received]) -> None:
        async def follow(readable: envelope.Readable) -> None:
            p = readable.body.get("payload") or {}
            if readable.event_type == "BindingCreated":
                await self._store.follow_binding(p["binding_id"], p["grantor_id"], p["beneficiary_id"], p["end_date"])
            elif readable.event_type == "BindingRevoked":
                await self._store.follow_binding(p["binding_id"], "", "", None)
        await self._each(batch, c.BINDING_TYPES, n.for_binding, before=follow)

    async def on_bureau_accounts(self, batch: list[Received]) -> None:
        """Project PersonRegistered into the contacts the SMS go to; the name only masked."""
        people = [(p.person_id, p.phone, short_masked_name(p.name)) for p in await registrations(self._broker, batch)]
        if people:
            await self._store.save_contacts(people)

    async def _each(self, batch: list[Received], known: frozenset[str], notices_of, before=None) -> None:
        for msg in batch:
            readable = envelope.read(msg.value, known)
            if isinstance(readable, envelope.Unreadable):
                await dead_letter(self._broker, msg, readable.error)
                continue
            payload = readable.body.get("payload")
            try:
                if before:
                    await before(readable)
                found = notices_of(readable.event_id, readable.event_type, payload) if isinstance(payload, dict) else []
            except (KeyError, TypeError, ValueError) as exc:
                await dead_letter(self._broker, msg, f"malformed {readable.event_type}: {exc.__class__.__name__}")
                continue
            for notice in found:
                await self.deliver(notice)

    # -- periodic -----------------------------------------------------------------------------
    async def check_endings(self) -> int:
        """The daily check: every binding ending within 7 days, told once per end date."""
        today = self._clock().date()
        last = today + timedelta(days=ENDING_WITHIN_DAYS)
        ending = await self._store.ending_between(int(today.strftime("%Y%m%d")), int(last.strftime("%Y%m%d")))
        for binding_id, grantor, beneficiary, end in ending:
            # Every run sees the same bindings again: announce each once, republish nothing.
            await self.deliver(n.ending_soon(binding_id, grantor, beneficiary, end), republish=False)
        return len(ending)

    async def release_held(self) -> int:
        """Send what quiet hours held back, once they are over."""
        due = await self._store.due(self._clock().timestamp())
        for message_id, notice in due:
            status, state, _ = await self._store.claim(message_id, "deferred")
            if status == "CLAIMED":
                await self._send(message_id, notice)
        return len(due)

    # -- delivery -----------------------------------------------------------------------------
    async def deliver(self, notice: n.Notice, republish: bool = True) -> None:
        message_id = message_id_for(notice)
        status, state, recorded = await self._store.claim(message_id)
        if status == "HELD":
            if recorded:  # already sent or failed: the same outcome again, never a second SMS
                if republish:
                    await self._publish(recorded)
            elif state == "pending":
                # A process died while this was with the gateway: it may have been delivered.
                # At most once: record it as unknown instead of sending again.
                await self._fail(message_id, notice, None, "outcome_unknown_after_restart", 0)
            return
        now = self._clock()
        if not is_urgent(notice.template) and self._quiet.contains(now):
            await self._store.defer(message_id, notice, self._quiet.ends_after(now).timestamp())
            log.info("message %s (%s) held until quiet hours end", message_id, notice.template)
            return
        await self._send(message_id, notice)

    async def _send(self, message_id: str, notice: n.Notice) -> None:
        contacts = await self._store.contacts([notice.person_id, *notice.name_of.values()])
        names = {slot: contacts.get(pid, ("", "*"))[1] for slot, pid in notice.name_of.items()}
        sms = render(notice.template, {**notice.values, **names})
        phone = contacts.get(notice.person_id, ("", ""))[0]
        if not phone and notice.role == "beneficiary":
            # A child or an elderly parent may have no phone: nothing to send, nothing failed.
            await self._store.record(message_id, "skipped", b"")
            return
        if not phone:
            await self._fail(message_id, notice, sms, "no_phone", 0)
            return
        outgoing = Outgoing(message_id, phone, notice.template, {**notice.values}, sms.text)
        for attempt in range(1, self._attempts + 1):
            try:
                receipt = await self._provider.send(outgoing)
            except ProviderError as exc:
                log.warning("SMS %s to %s, attempt %d: %s", message_id, mask_phone(phone), attempt, exc.reason)
                if not exc.retryable or attempt == self._attempts:
                    await self._fail(message_id, notice, sms, exc.reason, attempt, phone)
                    return
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))  # back-off between gateway attempts
                continue
            event = c.SmsSent(message_id=message_id, source_event_id=notice.source_event_id,
                              source_event_type=notice.source_event_type, charge_id=notice.charge_id,
                              binding_id=notice.binding_id, recipient_role=notice.role, phone=mask_phone(phone),
                              template=notice.template, segments=sms.segments, provider=receipt.provider,
                              provider_message_id=receipt.provider_message_id,
                              sent_at=self._clock().isoformat(timespec="seconds"))
            value = envelope.seal(c.SMS_SENT, event, event_id=envelope.outcome_id(message_id, c.SMS_SENT))
            await self._store.record(message_id, "sent", value)
            log.info("SMS %s sent to %s (%s, %d segment(s))", message_id, mask_phone(phone), notice.template,
                     sms.segments)
            await self._publish(value)
            return

    async def _fail(self, message_id: str, notice: n.Notice, sms: Sms | None, reason: str, attempts: int,
                    phone: str = "") -> None:
        event = c.SmsFailed(message_id=message_id, source_event_id=notice.source_event_id,
                            source_event_type=notice.source_event_type, charge_id=notice.charge_id,
                            binding_id=notice.binding_id, recipient_role=notice.role,
                            phone=mask_phone(phone) if phone else "", template=notice.template,
                            segments=sms.segments if sms else 0, provider=self._provider.name, reason=reason,
                            attempts=attempts, sent_at=self._clock().isoformat(timespec="seconds"))
        value = envelope.seal(c.SMS_FAILED, event, event_id=envelope.outcome_id(message_id, c.SMS_FAILED))
        await self._store.record(message_id, "failed", value)
        log.warning("SMS %s failed after %d attempt(s): %s", message_id, attempts, reason)
        await self._publish(value)

    async def _publish(self, value: bytes) -> None:
        """On notify.deliveries, keyed by the masked phone (contract.md)."""
        key = json.loads(value)["payload"]["phone"].encode()
        await self._broker.publish(value, topics.NOTIFY_DELIVERIES, key=key)
