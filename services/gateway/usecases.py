"""The gateway's use cases: each HTTP request becomes one command or query on Kafka, waits a
bounded time for its answer on the gateway's reply topic, and is audited when a window clerk
made it. The gateway owns no business state: every rule is the binding or settlement service's.

Commands are keyed as the binding service routes them: a CreateBinding by its beneficiary's ID
number (contract.md); a RevokeBinding or ChangePaymentOrder names only a binding id, which the
binding service resolves to the beneficiary itself (its owner index), so the gateway keys them
by the binding id: every command on one binding stays on one partition, in the order sent.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

from faststream.kafka import KafkaBroker

from shared import envelope
from shared.identity import mask_id_number
from shared.logs import shown
from shared.tokens import Principal
from shared.topics import BINDING_COMMANDS, GATEWAY_AUDIT, SETTLEMENT_QUERIES
from services.gateway import contract as c
from services.gateway.domain import access
from services.gateway.domain.views import STATUS_BY_EVENT
from services.gateway.replies import Requests

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
class Pending:
    """No outcome within the wait: the command may still be decided; ask for it by its id."""

    command_id: str
    status: ClassVar[str] = "pending"


class NotAnswered(Exception):
    """A query got no answer within GATEWAY_QUERY_TIMEOUT_MS: answered 504."""


class RefusedUpstream(Exception):
    """A service refused a query the gateway had checked (a defect on one side): answered 502."""

    def __init__(self, reason_code: str) -> None:
        super().__init__(reason_code)
        self.reason_code = reason_code


class OutcomeUnknown(Exception):
    """No outcome is recorded for a command id (unknown, or not decided yet): answered 404."""


class GatewayService:
    def __init__(self, requests: Requests, broker: KafkaBroker, *, command_timeout: float,
                 query_timeout: float) -> None:
        self._requests, self._broker = requests, broker
        self._command_timeout, self._query_timeout = command_timeout, query_timeout

    # -- commands ----------------------------------------------------------------------------------
    async def create_binding(self, who: Principal, form: c.BindingRequest) -> Decided | Pending:
        access.check_may_grant(who, form.grantor.id_number)
        payload = form.model_dump(mode="json", exclude_none=True) | access.channel_of(who)
        return await self._command(who, "create_binding", c.CREATE_BINDING, payload,
                                   key=form.beneficiary.id_number, subject=form.grantor.id_number)

    async def revoke_binding(self, who: Principal, binding_id: str, form: c.RevocationRequest) -> Decided | Pending:
        requester = access.revocation_requester(who, form.requested_by)
        payload = {"binding_id": binding_id, "requested_by": requester, **access.channel_of(who)}
        return await self._command(who, "revoke_binding", c.REVOKE_BINDING, payload, key=binding_id,
                                   subject=requester, binding_id=binding_id)

    async def change_payment_order(self, who: Principal, binding_id: str,
                                   form: c.PaymentOrderRequest) -> Decided | Pending:
        requester = access.order_requester(who, form.requested_by)
        payload = {"binding_id": binding_id, "payment_order": form.payment_order, **access.channel_of(who)}
        if requester is not None:
            payload["requested_by"] = requester
        return await self._command(who, "change_payment_order", c.CHANGE_PAYMENT_ORDER, payload, key=binding_id,
                                   subject=requester or "", binding_id=binding_id)

    async def _command(self, who: Principal, action: str, event_type: str, payload: dict[str, Any], *, key: str,
                       subject: str, binding_id: str | None = None) -> Decided | Pending:
        command_id = str(uuid.uuid4())
        answer = await self._requests.ask(BINDING_COMMANDS, key, event_type, payload, event_id=command_id,
                                          timeout_seconds=self._command_timeout)
        result: Decided | Pending = Pending(command_id)
        if answer is not None and answer.get("event_type") in c.OUTCOME_TYPES:
            result = Decided(answer["event_type"], answer["payload"])
        log.info("%s %s: %s", event_type, shown(command_id), result.status)
        if who.at_window:
            await self._audit_command(who, action, command_id, subject, binding_id, result)
        return result

    async def _audit_command(self, who: Principal, action: str, command_id: str, subject: str,
                             binding_id: str | None, result: Decided | Pending) -> None:
        if isinstance(result, Pending):
            return await self.audit(who, action, command_id, subject, result.status, binding_id=binding_id)
        outcome = result.payload
        await self.audit(who, action, command_id, subject or outcome.get("beneficiary_id", ""), result.status,
                         reason_code=outcome.get("reason_code") if result.rejected else None,
                         binding_id=binding_id or outcome.get("binding_id"))

    # -- queries -----------------------------------------------------------------------------------
    async def bindings_of(self, who: Principal, person_id: str, role: str | None) -> dict[str, Any]:
        access.check_may_see(who, person_id)
        payload: dict[str, Any] = {"person_id": person_id} | ({"role": role} if role else {})
        return await self._query(who, "list_bindings", BINDING_COMMANDS, person_id, c.QUERY_BINDINGS, payload,
                                 c.BINDINGS_LISTED, subject=person_id)

    async def consumption_of(self, who: Principal, grantor_id: str, date_from: date, date_to: date) -> dict[str, Any]:
        access.check_may_see(who, grantor_id)
        payload = {"grantor_id": grantor_id, "date_from": date_from.isoformat(), "date_to": date_to.isoformat()}
        return await self._query(who, "query_consumption", SETTLEMENT_QUERIES, grantor_id, c.QUERY_CONSUMPTION,
                                 payload, c.CONSUMPTION_LISTED, subject=grantor_id)

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
        decided = Decided(event_type, answer["payload"])
        access.check_may_see_outcome(who, decided.payload)
        if who.at_window:
            await self.audit(who, "query_command", command_id, decided.payload.get("beneficiary_id", ""), "answered",
                             binding_id=decided.payload.get("binding_id"))
        return decided

    async def _query(self, who: Principal, action: str, topic: str, key: str, event_type: str,
                     payload: dict[str, Any], expected: str, *, subject: str) -> dict[str, Any]:
        query_id = str(uuid.uuid4())
        answer = await self._requests.ask(topic, key, event_type, payload, event_id=query_id,
                                          timeout_seconds=self._query_timeout)
        if answer is None:
            raise NotAnswered(event_type)
        if answer.get("event_type") != expected:
            raise RefusedUpstream(str(answer["payload"].get("reason_code", answer.get("event_type"))))
        if who.at_window:
            await self.audit(who, action, query_id, subject, "answered")
        return answer["payload"]

    # -- gateway.audit -----------------------------------------------------------------------------
    async def audit(self, who: Principal, action: str, command_id: str, subject_id: str, outcome: str, *,
                    reason_code: str | None = None, binding_id: str | None = None) -> None:
        """What a window clerk did, on gateway.audit keyed by the clerk. The answer to the clerk
        does not wait on a broker that fails here (the command has taken effect already): the
        failure is logged with the command id, so the record can be restored from the log."""
        record = c.WindowActionAudited(clerk_id=who.clerk_id or "", region=who.region or "", action=action,
                                       command_id=command_id,
                                       subject_id=mask_id_number(subject_id) if subject_id else "",
                                       binding_id=binding_id, outcome=outcome, reason_code=reason_code,
                                       at=envelope.now())
        try:
            await self._broker.publish(envelope.seal(c.WINDOW_ACTION_AUDITED, record), GATEWAY_AUDIT,
                                       key=record.clerk_id.encode())
        except Exception as exc:  # noqa: BLE001 - logged for the operators, see the docstring
            log.error("audit record not published: clerk %s, %s %s -> %s (%s)", record.clerk_id, action,
                      shown(command_id), outcome, exc.__class__.__name__)
