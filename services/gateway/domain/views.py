"""What the API shows of the platform's answers: ID numbers masked (the binding list and the
consumption query already mask theirs), roles also in Chinese. Pure."""

from __future__ import annotations

from typing import Any

from shared.identity import is_valid_id_number, mask_id_number
from shared.regions import find_region
from shared.tokens import Principal
from services.gateway.domain.access import ROLE_ZH

# The outcome of a command, by the event type that carried it.
STATUS_BY_EVENT = {"BindingCreated": "created", "BindingRevoked": "revoked",
                   "PaymentOrderChanged": "payment_order_changed", "GrantorLimitSet": "limit_set",
                   "BindingPaused": "paused", "BindingResumed": "resumed", "DisputeOpened": "dispute_opened",
                   "BindingRejected": "rejected"}


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
    """A BindingsListed payload for the API: each binding's role also as 授权者 / 使用者 (its
    monthly limit and pause, I-4, as the binding service lists them)."""
    return {"person_id": listed.get("person_id"),
            "bindings": [{**b, "role_zh": ROLE_ZH.get(b.get("role"), "")} for b in listed.get("bindings", [])]}


def region_name(code: str | None) -> str | None:
    """The region's Chinese name (西安市), when the code is one of the province's."""
    region = find_region(code) if code else None
    return region.name_zh if region else None


def me_view(principal: Principal) -> dict[str, Any]:
    """GET /v1/me: who the token says is asking."""
    return {"role": principal.role, "clerk_id": principal.clerk_id, "region": principal.region,
            "region_name": region_name(principal.region),
            "person_id": mask_id_number(principal.person_id) if principal.person_id else None}


def lookup_view(person: dict[str, Any], account: dict[str, Any] | None) -> dict[str, Any]:
    """A person look-up from the binding service's PersonFound and settlement's AccountFound: the
    balance only once the name is verified, and only for an employee (a resident has no
    personal account)."""
    verified = person.get("name_matches")
    balance = None
    if verified is True and person.get("scheme") == "employee" and account and account.get("registered"):
        balance = account.get("balance")
    return {"person_id": person.get("person_id"), "registered": bool(person.get("registered")),
            "region": person.get("region"), "region_name": region_name(person.get("region")),
            "scheme": person.get("scheme"), "name_verified": verified, "balance": balance}


# A command's audited outcome as the audit list shows it; queries keep theirs (answered, ...).
AUDIT_OUTCOMES = {"created": "accepted", "revoked": "accepted", "payment_order_changed": "accepted",
                  "limit_set": "accepted", "paused": "accepted", "resumed": "accepted", "dispute_opened": "accepted",
                  "rejected": "refused", "pending": "pending"}


def audit_entry_view(entry: dict[str, Any]) -> dict[str, Any]:
    """One audit entry for GET /v1/audit: a command's outcome as accepted, refused or pending."""
    outcome = entry.get("outcome")
    return {**entry, "outcome": AUDIT_OUTCOMES.get(outcome, outcome)}


def disputes_view(listed: dict[str, Any]) -> dict[str, Any]:
    """A DisputesListed payload for the API, every ID number masked (the binding service masks its own)."""
    return masked({"person_id": listed.get("person_id"), "disputes": listed.get("disputes", [])})
