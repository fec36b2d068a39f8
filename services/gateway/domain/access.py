"""Who may do what through the HTTP API (issue 13, "Authentication"). Pure functions over the
token's principal (shared.tokens.Principal):

- `app`: the real-name-authenticated person only: that person's bindings and consumption, and
  commands only as the grantor;
- `window` / `supervisor`: a clerk, who may act for anyone; every action is audited. The audit
  list: a `window` token reads its own clerk's entries, a `supervisor` every clerk's of its
  region; an `app` token none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.tokens import Principal

ROLE_ZH = {"grantor": "授权者", "beneficiary": "使用者"}


class Forbidden(Exception):
    """The token may not reach this person or binding: answered 403."""


class RequesterMissing(Exception):
    """A window revocation names no requester: answered 422."""


def check_may_see(principal: Principal, person_id: str) -> None:
    if principal.role == "app" and person_id != principal.person_id:
        raise Forbidden("an app token may see only its own person")


def check_may_grant(principal: Principal, grantor_id: str) -> None:
    """A binding is made by its grantor: the app only for the token's person."""
    if principal.role == "app" and grantor_id != principal.person_id:
        raise Forbidden("an app token may create a binding only as its grantor")


def grantor_requester(principal: Principal, asked: str | None, field: str = "requested_by") -> str:
    """Who asks, as a binding's grantor, to end it, limit it, pause or resume it, or to dispute a
    payment: the app's person (the binding service then refuses NOT_GRANTOR unless that is the
    grantor); at a window, the person the clerk names in `field`."""
    if principal.role == "app":
        if asked is not None and asked != principal.person_id:
            raise Forbidden("an app token may act only for its own person")
        return principal.person_id  # type: ignore[return-value]
    if asked is None:
        raise RequesterMissing(f"a window command names {field} (the grantor)")
    return asked


revocation_requester = grantor_requester


def order_requester(principal: Principal, asked: str | None) -> str | None:
    """Who asks to change a payment order: the app's person; at a window, whoever the clerk
    names, if anyone (the clerk may act for the beneficiary's family as a whole)."""
    if principal.role == "app":
        if asked is not None and asked != principal.person_id:
            raise Forbidden("an app token may act only for its own person")
        return principal.person_id
    return asked


def channel_of(principal: Principal) -> dict[str, str]:
    """The fields a command carries for its channel: the app's, or the window's with its clerk."""
    if principal.at_window:
        return {"channel": "window", "clerk_id": principal.clerk_id or ""}
    return {"channel": "app"}


def people_in(outcome: dict[str, Any]) -> set[str]:
    """The persons a command's outcome concerns (grantor, beneficiary, every grantor whose order moved)."""
    found = {outcome.get("grantor_id"), outcome.get("beneficiary_id")}
    changes: Iterable[Any] = outcome.get("changes") or ()
    found |= {c.get("grantor_id") for c in changes if isinstance(c, dict)}
    return {p for p in found if isinstance(p, str)}


def check_may_see_outcome(principal: Principal, outcome: dict[str, Any]) -> None:
    """An app sees an outcome only when it concerns its person; a refusal names nobody, and its
    command id (a random uuid) is known only to whoever sent the command."""
    people = people_in(outcome)
    if principal.role == "app" and people and principal.person_id not in people:
        raise Forbidden("this outcome concerns other persons")


def audit_scope(principal: Principal, clerk_id: str | None) -> tuple[str, str | None]:
    """Whose audit entries a token may list: (region, clerk or None for every clerk of it). A
    window clerk only his or her own (naming another clerk is 403); a supervisor the region's,
    optionally one clerk's; an app token none."""
    if not principal.at_window or principal.region is None:
        raise Forbidden("only a window or supervisor token may read the audit list")
    if principal.role == "window":
        if clerk_id is not None and clerk_id != principal.clerk_id:
            raise Forbidden("a window token may read only its own clerk's audit entries")
        return principal.region, principal.clerk_id
    return principal.region, clerk_id
