"""Who may do what through the HTTP API (issue 13, "Authentication"). Pure functions over the
token's principal (shared.tokens.Principal):

- `app`: the real-name-authenticated person only: that person's bindings and consumption, and
  commands only as the grantor;
- `window` / `supervisor`: a clerk of a region (contract version 3): acts for grantors insured
  in that region, and looks up persons of that region and the beneficiaries named in bindings
  with them; every action is audited. The audit list: a `window` token reads its own clerk's
  entries, a `supervisor` the region's (its clerks', and other clerks' about its persons); an
  `app` token none.

Where a person is insured is the binding service's word (QueryPerson, QueryBindings), asked by
the use cases; the rules here decide on what it said.
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


def order_requester(principal: Principal, asked: str | None) -> str:
    """Who asks to change a payment order: the app's person; at a window, the grantor the clerk
    names (required since version 3: a clerk acts only for grantors of the clerk's region, so
    the gateway must know whom the clerk acts for)."""
    return grantor_requester(principal, asked)


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


def check_acts_in_region(principal: Principal, grantor_region: str | None) -> None:
    """A window clerk acts only for a grantor insured in the clerk's own region (an unregistered
    one included: the binding service refuses that one with its own reason)."""
    if principal.at_window and grantor_region is not None and grantor_region != principal.region:
        raise Forbidden("a window clerk acts only for grantors insured in the clerk's own region")


def may_look_up(principal: Principal, person_region: str | None, grantor_regions: Iterable[str]) -> bool:
    """Whether a clerk may look up a person: one of the clerk's region, a beneficiary named in a
    binding with a grantor of that region (`grantor_regions`: the grantors' regions of the
    person's bindings as beneficiary), or someone no bureau registered (nothing to see)."""
    if not principal.at_window:
        return True
    return person_region is None or person_region == principal.region or principal.region in set(grantor_regions)


def check_may_look_up(principal: Principal, person_region: str | None, grantor_regions: Iterable[str]) -> None:
    if not may_look_up(principal, person_region, grantor_regions):
        raise Forbidden("a window clerk looks up persons of the clerk's region and the beneficiaries bound "
                        "with them")


# A refusal of an app's command that would tell whether another person's ID number is registered,
# in the province, or under that name: one answer for all of them (contract version 3).
STRANGER_REASONS = frozenset({"UNKNOWN_PERSON", "NAME_MISMATCH", "OUTSIDE_PROVINCE"})
NOT_VERIFIED = "PERSON_NOT_VERIFIED"
NOT_VERIFIED_MESSAGES = ("无法核验对方的参保信息，请核对身份证号码和姓名",
                         "The other person's registration could not be verified; check the ID number and the name.")


def as_seen_by(principal: Principal, outcome: dict[str, Any]) -> dict[str, Any]:
    """A command's outcome as the token may read it: for an app, a refusal among STRANGER_REASONS
    becomes PERSON_NOT_VERIFIED, whichever of them it was."""
    if principal.role != "app" or outcome.get("reason_code") not in STRANGER_REASONS:
        return outcome
    zh, en = NOT_VERIFIED_MESSAGES
    return outcome | {"reason_code": NOT_VERIFIED, "message_zh": zh, "message_en": en}
