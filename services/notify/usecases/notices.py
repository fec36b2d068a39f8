"""Settlement results and binding events turned into notices (the SMS each calls for), handed to
deliveries.py; and the daily check of bindings ending soon. One boundary per input record: a
record that cannot be read is dead-lettered, a defect on one does not hold up the others."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import envelope
from shared.envelope import CHINA_TZ
from shared.kafka import Outage, Received, dead_letter
from shared.references import may_hold_grantor_line
from shared.signing import SignatureRefused
from services.notify import contract as c
from services.notify.domain import notices as n
from services.notify.storage.deliveries import DeliveryStore
from services.notify.usecases.deliveries import Deliveries, Message, message_id_for
from services.notify.usecases.inputs import defect, invalid_fields
from services.notify.usecases.replies import SMS_COMMAND_PREFIX

log = logging.getLogger("notify")
ENDING_WITHIN_DAYS = 7


def source_day(occurred_at: Any) -> str | None:
    """YYYYMMDD (China time) of a source event: the bucket its messages' outcomes are recorded in.
    A redelivery carries the same bytes (every producer republishes an outcome byte for byte), so
    the same day; without a readable time, None (the record then keeps a key of its own)."""
    if not isinstance(occurred_at, str):
        return None
    try:
        moment = datetime.fromisoformat(occurred_at)
    except ValueError:
        return None
    return moment.astimezone(CHINA_TZ).strftime("%Y%m%d") if moment.tzinfo else None


class Notices:
    def __init__(self, store: DeliveryStore, broker: KafkaBroker, deliveries: Deliveries, *,
                 clock: Callable[[], datetime], outage: Outage) -> None:
        self._store, self._broker, self._deliveries = store, broker, deliveries
        self._clock = clock
        self._outage = outage  # Redis or Kafka away: the step is retried in place

    async def on_settlement_results(self, batch: list[Received]) -> None:
        await self._answer_all(batch, c.SETTLEMENT_TYPES | c.SETTLEMENT_SILENT_TYPES, n.for_settlement)

    async def on_binding_events(self, batch: list[Received]) -> None:
        await self._answer_all(batch, c.BINDING_TYPES, n.for_binding)

    async def _answer_all(self, batch: list[Received], known: frozenset[str], notices_of) -> None:
        messages: list[Message] = []
        for i, msg in enumerate(batch):
            try:
                notices = await self._outage.retrying(lambda: self._notices(msg, known, notices_of))
                messages += [Message(message_id_for(notice), notice, i) for notice in notices]
            except Exception as exc:  # noqa: BLE001 - one message's defect must not hold up the others
                await defect(self._broker, msg, exc)
        for i, exc in (await self._deliveries.deliver(messages)).items():
            await defect(self._broker, batch[i], exc)

    async def _notices(self, msg: Received, known: frozenset[str], notices_of) -> list[n.Notice]:
        """The SMS a record calls for; one that cannot be read is dead-lettered and calls for none."""
        readable = envelope.read(msg.value, known)
        if isinstance(readable, envelope.Unreadable):
            await dead_letter(self._broker, msg, readable.error)
            return []
        if readable.event_type == "BindingRejected":
            return await self._refused(readable)
        if readable.event_type in n.GRANTOR_LINE_EVENTS and not may_hold_grantor_line(msg.value):
            # Only grantor lines call for an SMS; most charges are paid by the patient or in cash, and
            # such a record is passed over without its (costly) validation: settlement wrote it.
            return []
        model = c.READ.get(readable.event_type)
        if model is None:
            return []  # fraud reports call for no SMS
        try:
            payload = model.model_validate(readable.body.get("payload")).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            await dead_letter(self._broker, msg, f"invalid {readable.event_type}: {invalid_fields(exc)}")
            return []
        day = source_day(readable.body.get("occurred_at"))
        return [replace(notice, day=day) for notice in notices_of(readable.event_id, readable.event_type, payload)]

    async def _refused(self, readable: envelope.Readable) -> list[n.Notice]:
        """Binding refused a dispute notify asked for an SMS reply: the grantor hears why. Every
        other rejection (the app's and the windows' commands are answered to them) calls for none."""
        payload = readable.body.get("payload")
        command_id = payload.get("command_id") if isinstance(payload, dict) else None
        if not (isinstance(command_id, str) and command_id.startswith(SMS_COMMAND_PREFIX)):
            return []
        if payload.get("reason_code") in set(SignatureRefused):
            # A command binding did not believe: anyone may have sent it under this id, so it says
            # nothing about the grantor's dispute (notify's own are signed and believed).
            return []
        asked = await self._store.ask(command_id)
        if asked is None:
            return []
        reason = payload.get("reason_code")
        notice = n.dispute_refused(readable.event_id, *asked, reason if isinstance(reason, str) else "")
        return [replace(notice, day=source_day(readable.body.get("occurred_at")))]

    # -- periodic ----------------------------------------------------------------------------------
    async def check_endings(self) -> int:
        """The daily check: every binding ending within 7 days, told once per end date."""
        today = self._clock().date()
        ending = await self._store.ending_between(today, today + timedelta(days=ENDING_WITHIN_DAYS))
        # Every run sees the same bindings again: announce each once, republish nothing.
        messages = [Message(message_id_for(notice), notice, i, republish=False)
                    for i, notice in enumerate(n.ending_soon(*binding) for binding in ending)]
        for i, exc in (await self._deliveries.deliver(messages)).items():
            log.error("ending-soon message for binding %s failed", ending[i][0], exc_info=exc)
        return len(ending)
