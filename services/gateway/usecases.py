"""The gateway's use cases: each HTTP request becomes one command or query on Kafka, waits a
bounded time for its answer on the gateway's reply topic, and is audited when a window clerk
made it. The gateway owns no business state: every rule is the binding or settlement service's.
Who may reach whom is the gateway's (domain/access.py): a clerk's scope is decided on where the
binding service's registry says a person is insured (QueryPerson) and on the grantors of the
bindings naming the person as beneficiary (QueryBindings), asked before the request itself.

Commands are keyed as the binding service routes them: a CreateBinding by its beneficiary's ID
number (contract.md); a RevokeBinding or ChangePaymentOrder names only a binding id, which the
binding service resolves to the beneficiary itself (its owner index), so the gateway keys them
by the binding id: every command on one binding stays on one partition, in the order sent. So
are SetGrantorLimit, PauseBinding and ResumeBinding; a DisputePayment names only the payment's
reference, and is keyed by it (I-4).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, ClassVar

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import envelope
from shared.catchup import ProjectionGate
from shared.envelope import CHINA_TZ
from shared.identity import mask_id_number
from shared.logs import shown
from shared.tokens import Principal
from shared.topics import BINDING_COMMANDS, GATEWAY_AUDIT, SETTLEMENT_QUERIES, SMS_UPLINK
from services.gateway import contract as c
from services.gateway.domain import access, uplink
from services.gateway.domain.views import STATUS_BY_EVENT, audit_entry_view, lookup_view
from services.gateway.replies import Requests
from services.gateway.storage.audit import AuditStore, Entry
from services.gateway.storage.idempotency import IdempotencyStore, request_digest

log = logging.getLogger("gateway")


@dataclass(frozen=True)
class Decided:
    """A command's outcome as binding.events carried it."""

    event_type: str
    payload: dict[str, Any]

    @property
    def rejected(self) -> bool:
        return self.event_type == c.BINDING_REJECTED

    @property
    def status(self) -> str:
        return STATUS_BY_EVENT[self.event_type]


@dataclass(frozen=True)
class Where:
    """Whom a window command was for: the grantor (or the person named), where insured, and the binding."""

    subject: str
    region: str | None
    binding_id: str | None


@dataclass(frozen=True)
class Pending:
    """No outcome within the wait: the command may still be decided; ask for it by its id."""

    command_id: str
    status: ClassVar[str] = "pending"


# A window command past the wait is asked about again after 0.5, 1, 2, ... 30 s, for 5 minutes.
FOLLOW_FIRST_SECONDS, FOLLOW_LONGEST_SECONDS, FOLLOW_SECONDS = 0.5, 30.0, 300.0


class NotAnswered(Exception):
    """A query got no answer within GATEWAY_QUERY_TIMEOUT_MS: answered 504."""


class RefusedUpstream(Exception):
    """A service refused a query the gateway had checked (a defect on one side): answered 502."""

    def __init__(self, reason_code: str) -> None:
        super().__init__(reason_code)
        self.reason_code = reason_code


class OutcomeUnknown(Exception):
    """No outcome is recorded for a command id (unknown, or not decided yet): answered 404."""


class PersonUnknown(Exception):
    """A look-up of a person no bureau registered: answered 404 UNKNOWN_PERSON."""


class IdempotencyKeyReused(Exception):
    """An Idempotency-Key already named another request of the same principal: answered 422."""


class UplinkClosed(Exception):
    """No GATEWAY_SMS_UPLINK_KEY is configured: the uplink endpoint does not exist (404)."""


class UplinkTooLarge(Exception):
    """An uplink callback's body over 4 KiB: answered 413."""


class UplinkUnsigned(Exception):
    """An uplink callback whose X-Signature is missing or wrong: answered 401."""


class GatewayService:
    def __init__(self, requests: Requests, broker: KafkaBroker, *, command_timeout: float,
                 query_timeout: float, audit: AuditStore | None = None, gate: ProjectionGate | None = None,
                 uplink_key: bytes | None = None, idempotency: IdempotencyStore | None = None) -> None:
        self._requests, self._broker = requests, broker
        self._command_timeout, self._query_timeout = command_timeout, query_timeout
        self._audit, self._gate = audit, gate
        self._idempotency = idempotency
        self._uplink_key = uplink_key
        self._following: set[asyncio.Task] = set()  # window commands past the wait (_follow)

    # -- commands ----------------------------------------------------------------------------------
    async def create_binding(self, who: Principal, form: c.BindingRequest,
                             idempotency_key: str | None = None) -> Decided | Pending:
        access.check_may_grant(who, form.grantor.id_number)
        payload = form.model_dump(mode="json", exclude_none=True) | access.channel_of(who)
        return await self._command(who, "create_binding", c.CREATE_BINDING, payload, key=form.beneficiary.id_number,
                                   subject=form.grantor.id_number, idempotency_key=idempotency_key)

    async def revoke_binding(self, who: Principal, binding_id: str, form: c.RevocationRequest,
                             idempotency_key: str | None = None) -> Decided | Pending:
        return await self._grantor_command(who, "revoke_binding", c.REVOKE_BINDING, binding_id, form.requested_by,
                                           idempotency_key=idempotency_key)

    async def set_limit(self, who: Principal, binding_id: str, form: c.LimitRequest,
                        idempotency_key: str | None = None) -> Decided | Pending:
        """共济限额: SetGrantorLimit (I-4), the limit as a yuan string or null (no limit)."""
        limit = form.model_dump(mode="json", include={"monthly_limit"})
        return await self._grantor_command(who, "set_limit", c.SET_GRANTOR_LIMIT, binding_id, form.requested_by,
                                           limit, idempotency_key=idempotency_key)

    async def pause_binding(self, who: Principal, binding_id: str, form: c.GrantorRequest,
                            idempotency_key: str | None = None) -> Decided | Pending:
        return await self._grantor_command(who, "pause_binding", c.PAUSE_BINDING, binding_id, form.requested_by,
                                           idempotency_key=idempotency_key)

    async def resume_binding(self, who: Principal, binding_id: str, form: c.GrantorRequest,
                             idempotency_key: str | None = None) -> Decided | Pending:
        return await self._grantor_command(who, "resume_binding", c.RESUME_BINDING, binding_id, form.requested_by,
                                           idempotency_key=idempotency_key)

    async def _grantor_command(self, who: Principal, action: str, event_type: str, binding_id: str,
                               asked: str | None, fields: dict[str, Any] | None = None, *,
                               idempotency_key: str | None = None) -> Decided | Pending:
        """A command only the binding's grantor may give, naming the binding (keyed by its id)."""
        requester = access.grantor_requester(who, asked)
        payload = {"binding_id": binding_id, **(fields or {}), "requested_by": requester, **access.channel_of(who)}
        return await self._command(who, action, event_type, payload, key=binding_id, subject=requester,
                                   binding_id=binding_id, idempotency_key=idempotency_key)

    async def dispute_payment(self, who: Principal, form: c.DisputeRequest,
                              idempotency_key: str | None = None) -> Decided | Pending:
        """非本人授权: DisputePayment (I-4) by the payment SMS's reference, keyed by the reference;
        the binding service finds the payment among the grantor's own."""
        grantor = access.grantor_requester(who, form.grantor_id, field="grantor_id")
        payload = {"reference": form.reference, "requested_by": grantor, **access.channel_of(who)}
        return await self._command(who, "dispute_payment", c.DISPUTE_PAYMENT, payload, key=form.reference,
                                   subject=grantor, idempotency_key=idempotency_key)

    async def change_payment_order(self, who: Principal, binding_id: str, form: c.PaymentOrderRequest,
                                   idempotency_key: str | None = None) -> Decided | Pending:
        requester = access.order_requester(who, form.requested_by)
        payload = {"binding_id": binding_id, "payment_order": form.payment_order, **access.channel_of(who),
                   "requested_by": requester}
        return await self._command(who, "change_payment_order", c.CHANGE_PAYMENT_ORDER, payload, key=binding_id,
                                   subject=requester, binding_id=binding_id, idempotency_key=idempotency_key)

    async def _command(self, who: Principal, action: str, event_type: str, payload: dict[str, Any], *, key: str,
                       subject: str, binding_id: str | None = None,
                       idempotency_key: str | None = None) -> Decided | Pending:
        """Send one command (the grantor, `subject`, checked to be of a clerk's region first) and
        wait a bounded time for its outcome. With an Idempotency-Key, a retry of the same request
        is sent again under the first one's command id, so the binding service answers it with
        what it recorded: the same command, the same answer."""
        command_id, at = str(uuid.uuid4()), envelope.now()
        subject_region = None
        if who.at_window:
            subject_region = await self._grantor_region(who, action, command_id, subject, binding_id, at)
        if idempotency_key is not None and self._idempotency is not None:
            claimed = await self._idempotency.claim(who.key, idempotency_key, request_digest(event_type, payload),
                                                    command_id)
            if not claimed.same_request:
                raise IdempotencyKeyReused(idempotency_key)
            command_id, repeated = claimed.command_id, not claimed.first
        else:
            repeated = False
        answer = await self._requests.ask(BINDING_COMMANDS, key, event_type, payload, event_id=command_id,
                                          timeout_seconds=self._command_timeout)
        result: Decided | Pending = Pending(command_id)
        # The command's own outcome, or its refusal. Anything else first (a BindingPaused a dispute
        # also causes) leaves the command pending: its recorded outcome can be asked for.
        if answer is not None and answer.get("event_type") in (c.OUTCOME_OF[event_type], c.BINDING_REJECTED):
            result = Decided(answer["event_type"], access.as_seen_by(who, answer["payload"]))
        log.info("%s %s: %s", event_type, shown(command_id), result.status)
        if who.at_window and not repeated:  # a retry is the command audited already
            where = Where(subject, subject_region, binding_id)
            await self._audit_command(who, action, command_id, where, result, at)
            if isinstance(result, Pending):
                self._following.add(task := asyncio.create_task(self._follow(who, action, command_id, where, at)))
                task.add_done_callback(self._following.discard)
        return result

    async def _grantor_region(self, who: Principal, action: str, command_id: str, grantor_id: str,
                              binding_id: str | None, at: datetime) -> str | None:
        """Where the grantor a clerk acts for is insured (the binding service's registry); a
        grantor of another region is refused 403, and the attempt audited `forbidden`."""
        found = await self._ask(BINDING_COMMANDS, grantor_id, c.QUERY_PERSON, {"person_id": grantor_id},
                                c.PERSON_FOUND, str(uuid.uuid4()))
        region = found.get("region")
        try:
            access.check_acts_in_region(who, region)
        except access.Forbidden:
            await self.audit(who, action, command_id, grantor_id, "forbidden", binding_id=binding_id, at=at,
                             subject_region=region)
            raise
        return region

    async def _audit_command(self, who: Principal, action: str, command_id: str, where: "Where",
                             result: Decided | Pending, at: datetime) -> None:
        if isinstance(result, Pending):
            return await self.audit(who, action, command_id, where.subject, result.status,
                                    binding_id=where.binding_id, at=at, subject_region=where.region)
        outcome = result.payload
        await self.audit(who, action, command_id, where.subject or outcome.get("beneficiary_id", ""), result.status,
                         reason_code=outcome.get("reason_code") if result.rejected else None,
                         binding_id=where.binding_id or outcome.get("binding_id"), at=at, subject_region=where.region)

    async def _follow(self, who: Principal, action: str, command_id: str, where: "Where", at: datetime) -> None:
        """A window command still pending after the wait: ask the binding service for its outcome
        now and then (backing off) for up to FOLLOW_SECONDS, and audit it once decided, under the
        same time, so the audit list shows the decision in place of `pending`. Best effort: a
        gateway stopped meanwhile leaves the entry pending (the outcome can still be asked)."""
        delay, deadline = FOLLOW_FIRST_SECONDS, asyncio.get_running_loop().time() + FOLLOW_SECONDS
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(delay)  # a period between questions to the binding service, with back-off
            delay = min(delay * 2, FOLLOW_LONGEST_SECONDS)
            try:
                answer = await self._requests.ask(BINDING_COMMANDS, command_id, c.QUERY_COMMAND_OUTCOME,
                                                  {"command_id": command_id}, event_id=str(uuid.uuid4()),
                                                  timeout_seconds=self._query_timeout)
            except Exception as exc:  # noqa: BLE001 - an outage or a garbled reply: ask again later
                log.debug("outcome of %s not read: %s", shown(command_id), exc.__class__.__name__)
                continue
            if (answer is not None and answer.get("event_type") in c.OUTCOME_TYPES
                    and answer["payload"].get("command_id") == command_id):
                decided = Decided(answer["event_type"], answer["payload"])
                return await self._audit_command(who, action, command_id, where, decided, at)
        log.info("%s %s still has no outcome; its audit entry stays pending", action, shown(command_id))

    # -- the SMS provider's uplink (I-6) ---------------------------------------------------------------
    async def sms_reply(self, body: bytes, given_signature: str | None) -> c.SmsReplyReceived:
        """A grantor's SMS reply, called in by the provider: checked to be the provider's (the
        HMAC of the raw bytes, before anything reads them), read strictly, and put on sms.uplink
        (key: message_id) for notify, which knows who the phone is. Raises pydantic's
        ValidationError for a signed body that is not a reply. The phone and the text are never logged."""
        if self._uplink_key is None:
            raise UplinkClosed()
        if len(body) > uplink.MAX_BODY_BYTES:
            raise UplinkTooLarge()
        if not uplink.signed(self._uplink_key, body, given_signature):
            raise UplinkUnsigned()
        inbound = c.SmsInbound.model_validate_json(body)
        reply = c.SmsReplyReceived(**inbound.model_dump())
        await self._requests.publish(envelope.seal(c.SMS_REPLY_RECEIVED, reply, event_id=uplink.event_id(
            reply.message_id)), SMS_UPLINK, reply.message_id)
        log.info("SMS reply %s put on %s", shown(reply.message_id), SMS_UPLINK)
        return reply

    # -- queries -----------------------------------------------------------------------------------
    async def bindings_of(self, who: Principal, person_id: str, role: str | None) -> dict[str, Any]:
        access.check_may_see(who, person_id)
        payload: dict[str, Any] = {"person_id": person_id} | ({"role": role} if role else {})
        return await self._query(who, "list_bindings", BINDING_COMMANDS, person_id, c.QUERY_BINDINGS, payload,
                                 c.BINDINGS_LISTED, subject=person_id)

    async def disputes_of(self, who: Principal, person_id: str) -> dict[str, Any]:
        """A grantor's disputes (QueryDisputes, I-4); an app token only its own person's."""
        access.check_may_see(who, person_id)
        return await self._query(who, "list_disputes", BINDING_COMMANDS, person_id, c.QUERY_DISPUTES,
                                 {"person_id": person_id}, c.DISPUTES_LISTED, subject=person_id)

    async def consumption_of(self, who: Principal, grantor_id: str, date_from: date, date_to: date) -> dict[str, Any]:
        access.check_may_see(who, grantor_id)
        payload = {"grantor_id": grantor_id, "date_from": date_from.isoformat(), "date_to": date_to.isoformat()}
        return await self._query(who, "query_consumption", SETTLEMENT_QUERIES, grantor_id, c.QUERY_CONSUMPTION,
                                 payload, c.CONSUMPTION_LISTED, subject=grantor_id)

    async def _reach(self, person_id: str, name: str | None = None) -> tuple[dict[str, Any], list[str]]:
        """What a clerk's scope is decided on, asked at once: the person's registration
        (PersonFound, the name compared when one is given) and the regions of the grantors of the
        bindings naming the person as beneficiary."""
        asked = {"person_id": person_id} | ({"name": name} if name is not None else {})
        person, bound = await asyncio.gather(
            self._ask(BINDING_COMMANDS, person_id, c.QUERY_PERSON, asked, c.PERSON_FOUND, str(uuid.uuid4())),
            self._ask(BINDING_COMMANDS, person_id, c.QUERY_BINDINGS, {"person_id": person_id, "role": "beneficiary"},
                      c.BINDINGS_LISTED, str(uuid.uuid4())))
        return person, [str(b.get("grantor_region")) for b in bound.get("bindings", [])]

    async def _check_reach(self, who: Principal, action: str, query_id: str, person_id: str) -> str | None:
        """A clerk's look-up of a person out of reach is refused 403 and audited `forbidden`;
        returns the person's region (None for an app token, or a person no bureau registered)."""
        if not who.at_window:
            return None
        person, grantor_regions = await self._reach(person_id)
        region = person.get("region")
        if not access.may_look_up(who, region, grantor_regions):
            await self.audit(who, action, query_id, person_id, "forbidden", subject_region=region)
            access.check_may_look_up(who, region, grantor_regions)
        return region

    async def command_outcome(self, who: Principal, command_id: str) -> Decided:
        """The recorded outcome of an earlier command; an app sees it only when it concerns its person."""
        query_id = str(uuid.uuid4())
        answer = await self._requests.ask(BINDING_COMMANDS, command_id, c.QUERY_COMMAND_OUTCOME,
                                          {"command_id": command_id}, event_id=query_id,
                                          timeout_seconds=self._query_timeout)
        if answer is None:
            raise NotAnswered(c.QUERY_COMMAND_OUTCOME)
        event_type = answer.get("event_type")
        if event_type == c.COMMAND_OUTCOME_UNKNOWN:
            raise OutcomeUnknown(command_id)
        if event_type not in c.OUTCOME_TYPES or answer["payload"].get("command_id") != command_id:
            # A BindingRejected of the query itself names the query's id, not the command's.
            raise RefusedUpstream(str(answer["payload"].get("reason_code", event_type)))
        decided = Decided(event_type, access.as_seen_by(who, answer["payload"]))
        access.check_may_see_outcome(who, decided.payload)
        if who.at_window:
            subject, region = await self._outcome_in_reach(who, command_id, decided.payload)
            await self.audit(who, "query_command", command_id, subject, "answered",
                             binding_id=decided.payload.get("binding_id"), subject_region=region)
        return decided

    async def _outcome_in_reach(self, who: Principal, command_id: str, outcome: dict[str, Any]) -> tuple[str, str | None]:
        """A clerk reads a command's outcome when one of the persons it concerns is in reach (a
        refusal names nobody: its random id is known only to whoever sent the command); returns
        that person and region."""
        people = sorted(access.people_in(outcome))
        for person_id in people:
            person, grantor_regions = await self._reach(person_id)
            if access.may_look_up(who, person.get("region"), grantor_regions):
                return person_id, person.get("region")
        if not people:
            return "", None
        await self.audit(who, "query_command", command_id, people[0], "forbidden")
        raise access.Forbidden("this outcome concerns persons out of the clerk's reach")

    async def _query(self, who: Principal, action: str, topic: str, key: str, event_type: str,
                     payload: dict[str, Any], expected: str, *, subject: str) -> dict[str, Any]:
        query_id = str(uuid.uuid4())
        region = await self._check_reach(who, action, query_id, subject)
        answer = await self._ask(topic, key, event_type, payload, expected, query_id)
        if who.at_window:
            await self.audit(who, action, query_id, subject, "answered", subject_region=region)
        return answer

    async def _ask(self, topic: str, key: str, event_type: str, payload: dict[str, Any], expected: str,
                   query_id: str) -> dict[str, Any]:
        """One query's answer payload: 504 when none comes in time, 502 when it is not the one expected."""
        answer = await self._requests.ask(topic, key, event_type, payload, event_id=query_id,
                                          timeout_seconds=self._query_timeout)
        if answer is None:
            raise NotAnswered(event_type)
        if answer.get("event_type") != expected:
            raise RefusedUpstream(str(answer["payload"].get("reason_code", answer.get("event_type"))))
        return answer["payload"]

    async def lookup(self, who: Principal, form: c.LookupRequest) -> dict[str, Any]:
        """查询参保人: the binding service's registration (the name compared there, by digest) and
        settlement's account, asked at once; the balance shows only for a verified name. The name
        goes only into the binding query: never into a log line, the audit or the answer."""
        access.check_may_see(who, form.id_number)
        person_id, query_id = form.id_number, str(uuid.uuid4())
        asked = {"person_id": person_id} | ({"name": form.name} if form.name is not None else {})
        # A clerk's scope is decided on the same answers (the bindings asked only at a window).
        found, account = await asyncio.gather(
            self._reach(person_id, form.name) if who.at_window else self._ask(
                BINDING_COMMANDS, person_id, c.QUERY_PERSON, asked, c.PERSON_FOUND, query_id),
            self._ask(SETTLEMENT_QUERIES, person_id, c.QUERY_ACCOUNT, {"person_id": person_id}, c.ACCOUNT_FOUND,
                      query_id),
            return_exceptions=True)
        if isinstance(found, BaseException):
            raise found
        person = found[0] if who.at_window else found
        region = person.get("region")
        if who.at_window and not access.may_look_up(who, region, found[1]):
            await self.audit(who, "lookup", query_id, person_id, "forbidden", subject_region=region)
            access.check_may_look_up(who, region, found[1])
        view = lookup_view(person, None if isinstance(account, BaseException) else account)
        if isinstance(account, BaseException) and view["name_verified"] and view["scheme"] == "employee":
            raise account  # the balance is due and settlement did not give it
        reason = ("UNKNOWN_PERSON" if not view["registered"]
                  else "NAME_MISMATCH" if view["name_verified"] is False else None)
        if who.at_window:
            await self.audit(who, "lookup", query_id, person_id, "answered", reason_code=reason, subject_region=region)
        if not view["registered"]:
            raise PersonUnknown(person_id)
        return view

    async def audit_list(self, who: Principal, clerk_id: str | None, date_from: date, date_to: date, page: int,
                         page_size: int) -> dict[str, Any]:
        """The audit list, newest first, from the projection of gateway.audit: a window clerk's
        own entries, a supervisor's region's. Answered once the projection has caught up."""
        region, clerk = access.audit_scope(who, clerk_id)
        if self._audit is None:
            raise NotAnswered("the audit list")
        if self._gate is not None:
            try:
                async with asyncio.timeout(self._query_timeout):
                    await self._gate.caught_up()
            except TimeoutError:
                raise NotAnswered("the audit list (its projection is catching up)") from None
        start = datetime.combine(date_from, time(), CHINA_TZ)
        end = datetime.combine(date_to + timedelta(days=1), time(), CHINA_TZ)
        listed = await self._audit.page(region, clerk, start, end, (page - 1) * page_size, page_size)
        return {"entries": [audit_entry_view(e) for e in listed.entries], "page": page, "page_size": page_size,
                "total": listed.total}

    # -- gateway.audit -----------------------------------------------------------------------------
    async def audit(self, who: Principal, action: str, command_id: str, subject_id: str, outcome: str, *,
                    reason_code: str | None = None, binding_id: str | None = None,
                    at: datetime | None = None, subject_region: str | None = None) -> None:
        """What a window clerk did, on gateway.audit keyed by the clerk. The answer to the clerk
        does not wait on a broker that fails here (the command has taken effect already): the
        failure is logged with the command id, so the record can be restored from the log."""
        record = c.WindowActionAudited(clerk_id=who.clerk_id or "", region=who.region or "", action=action,
                                       command_id=command_id,
                                       subject_id=mask_id_number(subject_id) if subject_id else "",
                                       subject_region=subject_region, binding_id=binding_id, outcome=outcome, reason_code=reason_code,
                                       at=at or envelope.now())
        try:
            await self._broker.publish(envelope.seal(c.WINDOW_ACTION_AUDITED, record), GATEWAY_AUDIT,
                                       key=record.clerk_id.encode())
        except Exception as exc:  # noqa: BLE001 - logged for the operators, see the docstring
            log.error("audit record not published: clerk %s, %s %s -> %s (%s)", record.clerk_id, action,
                      shown(command_id), outcome, exc.__class__.__name__)


class AuditProjection:
    """Projects gateway.audit into Redis (storage/audit.py) for GET /v1/audit. Idempotent: a
    redelivered record is the same entry. A record that cannot be read is counted in the log
    (never its content) and skipped: the gateway is the topic's only writer, so that is a defect
    to look at, not a reason to stop the list."""

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def project(self, values: list[bytes]) -> int:
        """The records of a batch; returns how many entries were new."""
        entries = [_audit_entry(value) for value in values]
        if None in entries:
            log.warning("%d unreadable audit records skipped", entries.count(None))
        return await self._store.add(e for e in entries if e is not None)


def _audit_entry(value: bytes) -> Entry | None:
    readable = envelope.read(value, frozenset({c.WINDOW_ACTION_AUDITED}))
    if isinstance(readable, envelope.Unreadable):
        return None
    try:
        r = c.WindowActionAudited.model_validate(readable.body.get("payload"))
    except ValidationError:
        return None
    if not r.clerk_id or not r.region:
        return None
    return Entry(readable.event_id, r.at, r.clerk_id, r.region, r.action, r.command_id, r.subject_id, r.outcome,
                 r.reason_code, r.subject_region)
