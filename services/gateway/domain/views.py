"""What the API shows of the platform's answers: ID numbers masked (the binding list and the
consumption query already mask theirs), roles also in Chinese. Pure."""

from __future__ import annotations

from typing import Any

from shared.identity import is_valid_id_number, mask_id_number
from services.gateway.domain.access import ROLE_ZH

# The outcome of a command, by the event type that carried it.
STATUS_BY_EVENT = {"BindingCreated": "created", "BindingRevoked": "revoked",
                   "PaymentOrderChanged": "payment_order_changed", "BindingRejected": "rejected"}


def masked(value: Any) -> Any:
    """`value` with every full ID number in it masked, however deep."""
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str) and len(value) == 18 and is_valid_id_number(value):
        return mask_id_number(value)
    return value


def outcome_view(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A command's outcome for the API: its status, the event type and its payload, masked."""
    return {"command_id": payload.get("command_id"), "status": STATUS_BY_EVENT[event_type],
            "event_type": event_type, "outcome": masked(payload)}


def bindings_view(listed: dict[str, Any]) -> dict[str, Any]:
    """A BindingsListed payload for the API: each binding's role also as 授权者 / 使用者."""
    return {"person_id": listed.get("person_id"),
            "bindings": [{**b, "role_zh": ROLE_ZH.get(b.get("role"), "")} for b in listed.get("bindings", [])]}
