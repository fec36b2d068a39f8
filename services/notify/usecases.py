"""The notify service's use cases: turn settlement and binding events into SMS to the family,
send each at most once with exactly one outcome event, hold non-urgent ones through quiet hours,
wait (bounded) for people notify has not read yet, publish every outcome.

A message's life is kept in Redis (storage/notify.lua): claimed (pending, with a lease) before
the gateway sees it, held (deferred) while it waits, recorded (sent, failed, skipped) once. The
consumers never wait on a held message: the periodic `release_due` looks at it again.

Messages go through in batches, a step at a time for all of them: claims in one Redis round trip,
contacts and institution names in one each, the SMS to the provider at once (at most
NOTIFY_SEND_CONCURRENCY a wave, each wave claimed just before it is sent, so a claim's lease still
covers one send), outcomes recorded in one round trip and published with one wait for the acks.
A defect on one message is that message's (its input is dead-lettered); the others go on.

The SMS uplink (sms.uplink, issue 15) is read here too: a grantor's reply with a payment's
reference becomes DisputePayment on binding.commands; see `on_sms_replies`."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from shared import envelope, topics
from shared.bureau import speaks_for_region
from shared.envelope import CHINA_TZ
from shared.identity import mask_name, mask_phone
from shared.institutions import INSTITUTION_EVENT_TYPES, InstitutionRegistered
from shared.kafka import Outage, Received, dead_letter, publish_all
from shared.kafka import Outgoing as Publication
from shared.logs import shown
from shared.references import read_reference
from shared.registrations import person_changes
from shared.signing import KeyFinder, SignatureRefused, SigningKey, verify_received
from services.notify import contract as c
from services.notify.domain import notices as n
from services.notify.domain.quiet import QuietHours
from services.notify.domain.templates import (institution_shown, is_urgent, placeholders, render, segments,
                                              template_params)
from services.notify.metrics import NotifyMetrics
from services.notify.providers.base import Outgoing, ProviderError, Receipt, SmsProvider
from services.notify.storage.deliveries import ClaimAsk, DeliveryStore, decode_outcome, encode_outcome

log = logging.getLogger("notify")
_MESSAGE_NAMESPACE = uuid.UUID("5d1b7f0e-93a4-5c1e-a2f0-6100a0005000")
_COMMAND_NAMESPACE = uuid.UUID("5d1b7f0e-93a4-5c1e-a2f0-6100a0005001")
ENDING_WITHIN_DAYS = 7


def message_id_for(notice: n.Notice) -> str:
    """One message per source event, recipient and template: the dedupe key, across restarts."""
    return str(uuid.uuid5(_MESSAGE_NAMESPACE, f"{notice.source_event_id}/{notice.role}/{notice.person_id}/"
                                              f"{notice.template}"))


def help_message_id(person_id: str, day: str) -> str:
    """The how-to-reply SMS a person gets on a day: one, however many replies are not understood."""
    return str(uuid.uuid5(_MESSAGE_NAMESPACE, f"sms-help/{person_id}/{day}"))


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


def delivery(message_id: str, notice: n.Notice, recorded: bytes) -> Publication:
    """The outcome event on notify.deliveries, keyed by the masked phone (contract.md), rebuilt
    from the recorded outcome: the first publication and every republication are the same bytes."""
    outcome = decode_outcome(recorded)
    return Publication(topics.NOTIFY_DELIVERIES, outcome["phone"].encode(),
                       outcome_event(message_id, notice, outcome))


@dataclass(eq=False)
class _Message:
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


_Decided = tuple[_Message, dict[str, Any] | None]  # a message and its outcome (None: skipped, nothing to tell)


class NotifyService:
    def __init__(self, store: DeliveryStore, broker: KafkaBroker, provider: SmsProvider, quiet: QuietHours,
                 attempts: int, backoff_ms: int, *, template_codes: dict[str, str] | None = None,
                 lease_seconds: float = 60, unknown_wait_seconds: float = 600,
                 unknown_retry_seconds: float = 10, send_concurrency: int = 100,
                 clock: Callable[[], datetime] = envelope.now, metrics: NotifyMetrics | None = None,
                 keys: KeyFinder, signing_key: SigningKey) -> None:
        self._store, self._broker, self._provider = store, broker, provider
        # Contract version 3: whose signatures are believed (the operator's trust anchor and no
        # other), and the key notify signs its DisputePayment commands with.
        self._keys, self._signing_key = keys, signing_key
        self._metrics = metrics or NotifyMetrics(CollectorRegistry())
        self._quiet, self._attempts, self._backoff = quiet, attempts, backoff_ms / 1000
        self._codes = template_codes or {}
        self._lease_ms = int(lease_seconds * 1000)
        self._wait_ms, self._retry_ms = int(unknown_wait_seconds * 1000), int(unknown_retry_seconds * 1000)
        self._wave = send_concurrency
        self._clock = clock
        self._outage = Outage("notify")

    async def _retry(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """A step of claimed messages is retried in place when Redis or Kafka is away: starting
        them over would find their own claims and leave them to the lease."""
        return await self._outage.retrying(work)

    # -- inputs: one boundary per message ----------------------------------------------------------
    async def on_settlement_results(self, batch: list[Received]) -> None:
        await self._answer_all(batch, c.SETTLEMENT_TYPES | c.SETTLEMENT_SILENT_TYPES, n.for_settlement)

    async def on_binding_events(self, batch: list[Received]) -> None:
        await self._answer_all(batch, c.BINDING_TYPES, n.for_binding)

    async def _answer_all(self, batch: list[Received], known: frozenset[str], notices_of) -> None:
        messages: list[_Message] = []
        for i, msg in enumerate(batch):
            try:
                notices = await self._retry(lambda: self._notices(msg, known, notices_of))
                messages += [_Message(message_id_for(notice), notice, i) for notice in notices]
            except Exception as exc:  # noqa: BLE001 - one message's defect must not hold up the others
                await self._defect(msg, exc)
        for i, exc in (await self._deliver(messages)).items():
            await self._defect(batch[i], exc)

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
                reply = await self._retry(lambda: self._reply(msg))
            except Exception as exc:  # noqa: BLE001 - one message's defect must not hold up the others
                await self._defect(msg, exc)
                continue
            if reply is None:
                self._metrics.uplink("unreadable")
            else:
                replies.append((i, reply))
        if not replies:
            return
        people = await self._retry(lambda: self._store.people_by_phone([r.phone for _, r in replies]))
        commands: list[Publication] = []
        asks: list[tuple[str, str, str]] = []
        helps: list[_Message] = []
        for i, reply in replies:
            try:
                outcome = self._understand(i, reply, people.get(reply.phone, []), commands, asks, helps)
            except Exception as exc:  # noqa: BLE001 - one message's defect must not hold up the others
                await self._defect(batch[i], exc)
                continue
            self._metrics.uplink(outcome)
        if commands:
            # Remembered before they are published: binding's refusal can never come first.
            await self._retry(lambda: self._store.remember_asks(asks))
            signed = [replace(p, headers=self._signing_key.headers(p.topic, p.key, p.value)) for p in commands]
            await self._retry(lambda: publish_all(self._broker, signed))
        for i, exc in (await self._deliver(helps)).items():
            await self._defect(batch[i], exc)

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
            await dead_letter(self._broker, msg, f"invalid {c.SMS_REPLY_RECEIVED}: {_where(exc)}")
            return None

    def _understand(self, i: int, reply: c.SmsReplyReceived, people: list[str], commands: list[Publication],
                    asks: list[tuple[str, str, str]], helps: list[_Message]) -> str:
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
            helps += [_Message(help_message_id(person, day), n.reply_help(person, reply.message_id, day), i,
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

    async def _notices(self, msg: Received, known: frozenset[str], notices_of) -> list[n.Notice]:
        """The SMS a record calls for; one that cannot be read is dead-lettered and calls for none."""
        readable = envelope.read(msg.value, known)
        if isinstance(readable, envelope.Unreadable):
            await dead_letter(self._broker, msg, readable.error)
            return []
        if readable.event_type == "BindingRejected":
            return await self._refused(readable)
        model = c.READ.get(readable.event_type)
        if model is None:
            return []  # fraud reports call for no SMS
        try:
            payload = model.model_validate(readable.body.get("payload")).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            await dead_letter(self._broker, msg, f"invalid {readable.event_type}: {_where(exc)}")
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

    async def _defect(self, msg: Received, exc: BaseException) -> None:
        """A platform defect while answering: the record goes to the DLQ for the operators (a
        message it left claimed is recorded `outcome_unknown` after its lease)."""
        log.error("defect while answering %s[%d]@%d", msg.topic, msg.partition, msg.offset, exc_info=exc)
        await dead_letter(self._broker, msg, f"unhandled {exc.__class__.__name__}")

    # -- projections -------------------------------------------------------------------------------
    async def on_bureau_accounts(self, batch: list[Received]) -> None:
        """Project PersonRegistered into the contacts the SMS go to, the name only masked, and
        PersonTransferred beside them; each believed only from the bureau it speaks for
        (shared/registrations.py), so a phone changes only by the person's own region's bureau."""
        changes = await person_changes(self._broker, batch, self._keys, self._store.standing)
        people = [(p.person_id, p.phone, short_masked_name(p.name), p.region) for p in changes.registered]
        if people or changes.transfers:
            await self._store.save_contacts(people, changes.transfers)

    async def on_institutions(self, batch: list[Received]) -> None:
        """Project InstitutionRegistered: the names payment SMS give (never what a HIS sent).
        Believed only from the bureau of the institution's region, and only that region's bureau
        renames it (NOT_SIGNERS otherwise, dead-lettered)."""
        signed = []
        now = envelope.now()
        for msg in batch:
            signer = verify_received(msg, self._keys, now)
            readable = envelope.read(msg.value, INSTITUTION_EVENT_TYPES)
            if isinstance(readable, envelope.Unreadable):
                why = f"{signer.value}: {readable.error}" if isinstance(signer, SignatureRefused) else readable.error
                await dead_letter(self._broker, msg, why)
                continue
            if isinstance(signer, SignatureRefused):
                await dead_letter(self._broker, msg, f"{signer.value}: InstitutionRegistered not believed")
                continue
            try:
                registered = InstitutionRegistered.model_validate(readable.body.get("payload"))
            except ValidationError as exc:
                await dead_letter(self._broker, msg, f"invalid InstitutionRegistered: {_where(exc)}")
                continue
            signed.append((msg, signer, registered))
        if not signed:
            return
        regions = await self._store.institution_regions(list({r.institution_code: None for _, _, r in signed}))
        names: dict[str, str] = {}
        for msg, signer, registered in signed:
            code, region = registered.institution_code, registered.region
            its_region = regions.get(code, region)
            if not speaks_for_region(signer, region) or its_region != region:
                await dead_letter(self._broker, msg, f"{SignatureRefused.NOT_SIGNERS.value}: InstitutionRegistered for "
                                                     f"region {region} signed by {signer.key_id}; the institution's "
                                                     f"region is {its_region}")
                continue
            names[code], regions[code] = registered.name, registered.region
        if names:
            await self._store.save_institutions(names, {code: regions[code] for code in names})

    async def on_binding_projection(self, batch: list[Received]) -> None:
        """Project binding.events into the bindings in force, for the ending-soon check. What
        cannot be read is skipped here: the answering consumer of the same topic dead-letters it."""
        changes = []
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
            if event.end_date is not None:  # a revocation is found by its end date
                changes.append((event.binding_id, event.grantor_id, event.beneficiary_id, event.end_date,
                                isinstance(event, c.BindingCreatedIn)))
        if changes:
            await self._store.follow_bindings(changes)

    # -- periodic ----------------------------------------------------------------------------------
    async def check_endings(self) -> int:
        """The daily check: every binding ending within 7 days, told once per end date."""
        today = self._clock().date()
        ending = await self._store.ending_between(today, today + timedelta(days=ENDING_WITHIN_DAYS))
        # Every run sees the same bindings again: announce each once, republish nothing.
        messages = [_Message(message_id_for(notice), notice, i, republish=False)
                    for i, notice in enumerate(n.ending_soon(*binding) for binding in ending)]
        for i, exc in (await self._deliver(messages)).items():
            log.error("ending-soon message for binding %s failed", ending[i][0], exc_info=exc)
        return len(ending)

    async def release_due(self) -> int:
        """Look again at messages whose time has come: held ones (quiet hours over, a person
        looked for again) are sent; a claim past its lease was left by a crashed sender and is
        recorded `outcome_unknown`. Returns how many were looked at."""
        due = await self._store.due(_ms(self._clock()))
        messages = [_Message(item.message_id, item.notice, i, from_state="deferred", wait_until_ms=item.wait_until_ms)
                    for i, item in enumerate(due)]
        for i, exc in (await self._deliver(messages, keep_notice=True)).items():
            log.error("releasing message %s failed", due[i].message_id, exc_info=exc)
        return len(due)

    # -- delivery ----------------------------------------------------------------------------------
    async def _deliver(self, messages: list[_Message], keep_notice: bool = False) -> dict[int, Exception]:
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
            await self._retry(lambda: publish_all(self._broker, published))
        return defects

    async def _wave_of(self, wave: list[_Message], keep_notice: bool,
                       defects: dict[int, Exception]) -> list[Publication]:
        now = self._clock()
        claims = await self._retry(lambda: self._store.claim(
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

    async def _prepare(self, claimed: list[_Message], orphaned: list[_Message], now: datetime,
                       defects: dict[int, Exception]) -> list[_Decided]:
        """Decide each claimed message: held (quiet hours, a person not known yet), nothing to
        send, failed, or its SMS made ready (`m.sms`). Returns the outcomes already decided."""
        people = {pid for m in claimed for pid in (m.notice.person_id, *m.notice.name_of.values())}
        people |= {m.notice.person_id for m in orphaned}
        contacts = await self._retry(lambda: self._store.contacts(sorted(people))) if people else {}
        codes = sorted({m.notice.institution_code for m in claimed if m.notice.institution_code})
        registered = await self._retry(lambda: self._store.institution_names(codes)) if codes else {}
        outcomes: list[_Decided] = []
        holds: list[tuple[_Message, _Hold]] = []
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
            answers = await self._retry(lambda: self._store.hold(
                [(m.message_id, m.token, m.notice, h.release_ms, h.wait_until_ms) for m, h in holds]))
            for (m, _), answer in zip(holds, answers):
                if isinstance(answer, Exception):
                    defects.setdefault(m.source, answer)
        return outcomes

    def _decide(self, m: _Message, contacts: dict[str, tuple[str, str]], registered: dict[str, str],
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

    async def _send(self, sending: list[_Message], defects: dict[int, Exception]) -> list[_Decided]:
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
        answers = await self._retry(lambda: self._store.record(
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
