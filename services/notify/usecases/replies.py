"""The SMS uplink (sms.uplink, issue 15): a grantor's reply with a payment's reference becomes
DisputePayment on binding.commands, signed with notify's key; a reply not understood gets the
person an SMS on how to reply. Binding's refusal of such a dispute is told back (notices.py)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import envelope, topics
from shared.envelope import CHINA_TZ
from shared.identity import mask_phone
from shared.kafka import Outage, Received, dead_letter, publish_all
from shared.kafka import Outgoing as Publication
from shared.logs import shown
from shared.references import read_reference
from shared.signing import KeyFinder, SignatureRefused, SigningKey, verify_received
from services.notify import contract as c
from services.notify.domain import notices as n
from services.notify.metrics import NotifyMetrics
from services.notify.storage.deliveries import DeliveryStore
from services.notify.usecases.deliveries import MESSAGE_NAMESPACE, Deliveries, Message
from services.notify.usecases.inputs import defect, invalid_fields

log = logging.getLogger("notify")
_COMMAND_NAMESPACE = uuid.UUID("5d1b7f0e-93a4-5c1e-a2f0-6100a0005001")


def help_message_id(person_id: str, day: str) -> str:
    """The how-to-reply SMS a person gets on a day: one, however many replies are not understood."""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"sms-help/{person_id}/{day}"))


# The ids of the commands notify asks for SMS replies start with this: a rejection of one of them
# is told to the grantor (`_refused`); every other rejection is passed by without a look-up.
SMS_COMMAND_PREFIX = "sms-"


def dispute_command_id(message_id: str, person_id: str) -> str:
    return SMS_COMMAND_PREFIX + str(uuid.uuid5(_COMMAND_NAMESPACE, f"{message_id}/{person_id}"))


def dispute_command(reply: c.SmsReplyReceived, person_id: str, reference: str) -> Publication:
    """DisputePayment for a reply, keyed by the reference (I-4): its id and bytes derived from the
    reply's message_id (and the person), so a redelivered reply is the same command."""
    command = c.DisputePayment(reference=reference, requested_by=person_id)
    event_id = dispute_command_id(reply.message_id, person_id)
    return Publication(topics.BINDING_COMMANDS, reference.encode(),
                       envelope.seal(c.DISPUTE_PAYMENT, command, event_id=event_id, occurred_at=reply.received_at))


class Replies:
    def __init__(self, store: DeliveryStore, broker: KafkaBroker, deliveries: Deliveries, *, keys: KeyFinder,
                 signing_key: SigningKey, metrics: NotifyMetrics, outage: Outage) -> None:
        self._store, self._broker, self._deliveries = store, broker, deliveries
        # Contract version 3: a reply is believed only from the gateway's key; the DisputePayment
        # commands are signed with notify's.
        self._keys, self._signing_key = keys, signing_key
        self._metrics = metrics
        self._outage = outage  # Redis or Kafka away: the step is retried in place

    async def on_sms_replies(self, batch: list[Received]) -> None:
        """A grantor's SMS replies (sms.uplink): a reply from a registered phone with a payment's
        reference becomes DisputePayment on binding.commands, for each person registered with that
        phone (a reference is unique per grantor: binding finds it for at most one of them and
        refuses the others UNKNOWN_REFERENCE). A reply not understood gets a registered person an
        SMS on how to reply; one from an unknown phone gets nothing. Each counted, logged masked.
        Everything is published before this returns, so before the offsets are committed."""
        replies: list[tuple[int, c.SmsReplyReceived]] = []
        for i, msg in enumerate(batch):
            try:
                reply = await self._outage.retrying(lambda: self._reply(msg))
            except Exception as exc:  # noqa: BLE001 - one message's defect must not hold up the others
                await defect(self._broker, msg, exc)
                continue
            if reply is None:
                self._metrics.uplink("unreadable")
            else:
                replies.append((i, reply))
        if not replies:
            return
        people = await self._outage.retrying(lambda: self._store.people_by_phone([r.phone for _, r in replies]))
        commands: list[Publication] = []
        asks: list[tuple[str, str, str]] = []
        helps: list[Message] = []
        for i, reply in replies:
            try:
                outcome = self._understand(i, reply, people.get(reply.phone, []), commands, asks, helps)
            except Exception as exc:  # noqa: BLE001 - one message's defect must not hold up the others
                await defect(self._broker, batch[i], exc)
                continue
            self._metrics.uplink(outcome)
        if commands:
            # Remembered before they are published: binding's refusal can never come first.
            await self._outage.retrying(lambda: self._store.remember_asks(asks))
            signed = [replace(p, headers=self._signing_key.headers(p.topic, p.key, p.value)) for p in commands]
            await self._outage.retrying(lambda: publish_all(self._broker, signed))
        for i, exc in (await self._deliveries.deliver(helps)).items():
            await defect(self._broker, batch[i], exc)

    async def _reply(self, msg: Received) -> c.SmsReplyReceived | None:
        """The reply a record holds; one that cannot be read, or is not signed by the gateway
        (which alone hears the SMS provider), is dead-lettered with its bytes."""
        signer = verify_received(msg, self._keys, envelope.now())  # keys are valid in real time, not a test's clock
        refusal = signer if isinstance(signer, SignatureRefused) else (
            None if signer.owner == "gateway" else SignatureRefused.NOT_SIGNERS)
        readable = envelope.read(msg.value, c.UPLINK_TYPES)
        if isinstance(readable, envelope.Unreadable):
            await dead_letter(self._broker, msg, f"{refusal.value}: {readable.error}" if refusal else readable.error)
            return None
        if refusal is not None:
            await dead_letter(self._broker, msg, f"{refusal.value}: {readable.event_type} not believed")
            return None
        try:
            return c.SmsReplyReceived.model_validate(readable.body.get("payload"))
        except ValidationError as exc:
            await dead_letter(self._broker, msg, f"invalid {c.SMS_REPLY_RECEIVED}: {invalid_fields(exc)}")
            return None

    def _understand(self, i: int, reply: c.SmsReplyReceived, people: list[str], commands: list[Publication],
                    asks: list[tuple[str, str, str]], helps: list[Message]) -> str:
        """What a reply calls for, appended to `commands` (and `asks`) or `helps`; returns the
        metric's outcome."""
        # The provider's id, bounded and escaped; the phone masked; the text never (it is the sender's).
        reply_id, phone = shown(reply.message_id), mask_phone(reply.phone)
        if not people:
            log.info("SMS reply %s from %s: no person registered with this phone; ignored", reply_id, phone)
            return "unknown_phone"
        reference = read_reference(reply.text)
        if reference is None:
            if n.is_opt_out(reply.text):
                log.info("SMS reply %s from %s: an unsubscribe; not answered", reply_id, phone)
                return "opted_out"
            log.info("SMS reply %s from %s not understood (%d characters); told how to reply", reply_id, phone,
                     len(reply.text))
            day = reply.received_at.astimezone(CHINA_TZ).strftime("%Y%m%d")
            # One help a person a day, however many replies are not understood (nothing is
            # published again for a second one: it is the same message).
            helps += [Message(help_message_id(person, day), n.reply_help(person, reply.message_id, day), i,
                              republish=False) for person in people[:1]]
            return "not_understood"
        for person in people:
            commands.append(dispute_command(reply, person, reference))
        if len(people) == 1:
            # A refusal is told only where one person has the phone: where several share it,
            # binding refuses all but the payer, and those refusals would only confuse the phone.
            asks.append((dispute_command_id(reply.message_id, people[0]), people[0], reference))
        log.info("SMS reply %s from %s: dispute of payment %s asked", reply_id, phone, reference)
        return "dispute_asked"
