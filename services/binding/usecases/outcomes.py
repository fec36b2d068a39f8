"""What the binding jobs share: a command's outcome sealed, and rebuilt from its record to the same
bytes; the binding id a CreateBinding makes; a beneficiary's bindings with changes in place.
Commands (commands.py), the outcome query (queries.py) and a bureau's decision (disputes.py) all
answer from these, so a redelivery, a query and the first answer are byte for byte the same."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

from pydantic import BaseModel

from shared import envelope
from shared.money import Fen
from services.binding import contract as c
from services.binding.domain.model import Binding
from services.binding.domain.reasons import BindingRefused, Reason
from services.binding.storage.bindings import Recorded, Stored, moment

_BINDING_NAMESPACE = uuid.UUID("0c5e3a4e-7f61-5d0a-8b53-6100b1d1a9c7")
# Outcomes rebuilt from their record's payload (everything but command_id).
_RECORDED_MODELS: dict[str, type[BaseModel]] = {
    c.BINDING_REVOKED: c.BindingRevoked, c.PAYMENT_ORDER_CHANGED: c.PaymentOrderChanged,
    c.GRANTOR_LIMIT_SET: c.GrantorLimitSet, c.BINDING_PAUSED: c.BindingPaused, c.BINDING_RESUMED: c.BindingResumed,
    c.DISPUTE_OPENED: c.DisputeOpened}


def binding_id_for(command_id: str) -> str:
    """Derived from the command, so a redelivered CreateBinding can never make a second binding."""
    return f"BND-{uuid.uuid5(_BINDING_NAMESPACE, command_id).hex[:24]}"


def seal(command_id: str, event_type: str, event: BaseModel, at: int) -> bytes:
    return envelope.seal(event_type, event, event_id=envelope.outcome_id(command_id, event_type),
                         occurred_at=moment(at))


def rejection(command_id: str, refused: BindingRefused, at: int) -> bytes:
    event = c.BindingRejected(command_id=command_id, reason_code=refused.reason,
                              message_zh=refused.message_zh, message_en=refused.message_en)
    return seal(command_id, c.BINDING_REJECTED, event, at)


def recorded(command_id: str, r: Recorded) -> bytes:
    """The recorded outcome, rebuilt to the same bytes."""
    if r.event_type == c.BINDING_REJECTED:
        reason, _, detail = r.data.partition("|")
        return rejection(command_id, BindingRefused(Reason(reason), detail), r.at)
    event = _RECORDED_MODELS[r.event_type].model_validate({**json.loads(r.data), "command_id": command_id})
    return seal(command_id, r.event_type, event, r.at)


def created(command_id: str, made: Stored) -> bytes:
    """BindingCreated as first published: the order the binding was created with, its time."""
    event = c.BindingCreated(command_id=command_id, **_binding_fields(made.binding.with_order(made.created_order)))
    return seal(command_id, c.BINDING_CREATED, event, made.created_at)


def made_by(command_id: str, state: list[Stored]) -> Stored | None:
    """The binding a CreateBinding made, among its beneficiary's bindings (its id is derived from
    the command's)."""
    binding_id = binding_id_for(command_id)
    return next((s for s in state if s.binding.binding_id == binding_id), None)


def apply_changes(state: list[Stored], changed: list[Binding]) -> None:
    """The beneficiary's bindings with `changed` in place of the ones they change."""
    by_id = {b.binding_id: b for b in changed}
    state[:] = [replace(s, binding=by_id.get(s.binding.binding_id, s.binding)) for s in state]


def fen(amount: int | None) -> Fen | None:
    return None if amount is None else Fen(amount)


def _binding_fields(b: Binding) -> dict:
    return dict(binding_id=b.binding_id, grantor_id=b.grantor_id, beneficiary_id=b.beneficiary_id,
                relation=b.relation.value, payment_order=b.payment_order, start_date=b.start_date,
                end_date=b.end_date, grantor_region=b.grantor_region, beneficiary_region=b.beneficiary_region,
                channel=b.channel)
