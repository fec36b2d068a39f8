"""The rules of a family mutual-aid binding (domain.md), as pure functions with no I/O.

Each guard raises BindingRefused with the contract's reason code; the use case layer records
and publishes whatever these decide.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass, replace
from datetime import date

from shared.bureau import speaks_for_region
from shared.limits import is_allowed_monthly_limit
from shared.regions import is_in_province
from shared.signing import SignatureRefused, Signer
from services.binding.domain.model import Binding, Dispute, DisputeStatus, Insured, Payment, Relation, Scheme
from services.binding.domain.reasons import BindingRefused, Reason

MAX_GRANTORS = 2
PAYMENT_ORDERS = (1, 2)
_DISPUTE_NAMESPACE = uuid.UUID("3d0c61a2-9b54-5f1e-a7c3-15d15b0e7a11")
_SIGNATURE = re.compile(r"sha256:[0-9a-f]{64}")


def name_digest(name: str, key: bytes) -> str:
    """Names are compared, never stored. A bare hash of a Chinese name is reversed by a
    dictionary of names, so the digest is a keyed HMAC-SHA256 (the key is a secret of the
    service). 32 bits of it tell a mismatch (a wrong name passes once in four billion) and keep
    the registry entry to one integer."""
    return hmac.new(key, name.strip().encode("utf-8"), hashlib.sha256).hexdigest()[:8]


# -- who may send what (contract version 3) -------------------------------------------------------
# binding.commands is the platform's own topic: requested_by, channel and clerk_id are believed
# because the gateway (which authenticated the person or the clerk) signed them. Notify speaks
# only for a grantor who disputed a payment by SMS reply.
NOTIFY_MAY_SEND = frozenset({"DisputePayment"})


def sender_refusal(signer: Signer | SignatureRefused, event_type: str, key_id: str = "") -> SignatureRefused | None:
    """Why a command or query is not believed from this signer, or None. `key_id`: the signer the
    message names (its x-signer header). Binding holds no institution's keys (they are
    settlement's projection): a key an institution's id names is refused NOT_SIGNERS unverified,
    since no institution may send here whatever it signed (and, unverified, it is never replied to)."""
    if isinstance(signer, SignatureRefused):
        if signer is SignatureRefused.UNKNOWN_SIGNER and key_id.startswith("his:"):
            return SignatureRefused.NOT_SIGNERS
        return signer
    if signer.owner == "gateway":
        return None
    if signer.owner == "platform" and signer.service == "notify" and event_type in NOTIFY_MAY_SEND:
        return None
    return SignatureRefused.NOT_SIGNERS


def may_read_reply(signer: Signer, reply_topic: str) -> bool:
    """A refusal NOT_SIGNERS is replied only where its signer may read: an institution its own
    reply topics (`reply.<code>.`), the platform's services and the gateway any; a bureau none."""
    if signer.owner == "his":
        return reply_topic.startswith(f"reply.{signer.institution}.")
    return signer.owner in ("gateway", "platform")


@dataclass(frozen=True)
class Party:
    """One side of a binding as filled in on the form."""

    id_number: str
    name: str
    region: str


@dataclass(frozen=True)
class BindingRequest:
    """A CreateBinding command, already well-typed."""

    binding_id: str
    grantor: Party
    beneficiary: Party
    relation: str
    payment_order: int
    start_date: date
    end_date: date
    notice_accepted: bool
    signature_digest: str | None
    channel: str


def check_consent(request: BindingRequest) -> None:
    if not request.notice_accepted:
        raise BindingRefused(Reason.NOTICE_NOT_ACCEPTED)
    if not request.signature_digest or not _SIGNATURE.fullmatch(request.signature_digest):
        raise BindingRefused(Reason.SIGNATURE_MISSING)


def check_parties(request: BindingRequest) -> None:
    if request.grantor.id_number == request.beneficiary.id_number:
        raise BindingRefused(Reason.SELF_BINDING)
    if request.relation not in {r.value for r in Relation}:
        raise BindingRefused(Reason.RELATION_NOT_ALLOWED, f"relation {request.relation[:20]!r}")


def check_dates(start: date, end: date, today: date) -> None:
    """A binding starts no earlier than the day it is made (China time): one starting in the
    past would count toward grantors and orders on days already settled."""
    if start > end:
        raise BindingRefused(Reason.INVALID_DATES, "start_date is after end_date")
    if start < today:
        raise BindingRefused(Reason.INVALID_DATES, "start_date is before today (China time)")


def check_registered(party: Party, insured: Insured | None, role: str, name_key: bytes) -> Insured:
    """The person must be insured in the province, under the name on the form."""
    if not is_in_province(party.region):
        raise BindingRefused(Reason.OUTSIDE_PROVINCE, f"{role} region {party.region}")
    if insured is None:
        raise BindingRefused(Reason.UNKNOWN_PERSON, role)
    if not is_in_province(insured.region):
        raise BindingRefused(Reason.OUTSIDE_PROVINCE, f"{role} is insured outside the province")
    if not name_matches(insured, party.name, name_key):
        raise BindingRefused(Reason.NAME_MISMATCH, role)
    return insured


def name_matches(insured: Insured, name: str, name_key: bytes) -> bool:
    """Whether `name` is the registered one, by its keyed digest (constant-time comparison)."""
    return hmac.compare_digest(insured.name_digest, name_digest(name, name_key))


def check_grantor_has_account(grantor: Insured) -> None:
    if grantor.scheme is not Scheme.EMPLOYEE:
        raise BindingRefused(Reason.GRANTOR_NOT_EMPLOYEE)


def most_at_once(bindings: list[Binding], start: date, end: date) -> int:
    """The largest number of `bindings` in force on any one day of [start, end].

    The count can only rise on a day some binding starts, so those days (and `start`) suffice.
    """
    days = {start} | {b.start_date for b in bindings if start <= b.start_date <= end}
    return max(sum(1 for b in bindings if b.covers(day)) for day in days)


def check_room_for_grantor(request: BindingRequest, existing: list[Binding]) -> None:
    """Over every day of the new binding's range, against every binding not revoked (whether in
    force today, ended or still to start): no second binding between the same two persons, at
    most two grantors at once, never two on one payment order. A renewal that starts after the
    current binding ends overlaps nothing and is accepted."""
    if request.payment_order not in PAYMENT_ORDERS:
        raise BindingRefused(Reason.INVALID_COMMAND, "payment_order must be 1 or 2")
    overlapping = [b for b in existing if not b.is_revoked and b.overlaps(request.start_date, request.end_date)]
    if any(b.grantor_id == request.grantor.id_number for b in overlapping):
        raise BindingRefused(Reason.DUPLICATE_BINDING)
    if overlapping and most_at_once(overlapping, request.start_date, request.end_date) >= MAX_GRANTORS:
        raise BindingRefused(Reason.TOO_MANY_GRANTORS)
    if any(b.payment_order == request.payment_order for b in overlapping):
        raise BindingRefused(Reason.PAYMENT_ORDER_TAKEN, f"order {request.payment_order}")


def create_binding(request: BindingRequest, grantor: Insured | None, beneficiary: Insured | None,
                   existing: list[Binding], today: date, *, name_key: bytes) -> Binding:
    """Decide a CreateBinding: the new binding, or BindingRefused. `existing` are the
    beneficiary's bindings; cross-region pairs follow exactly the same rules. `name_key` is the
    key the registry's name digests were made with."""
    check_consent(request)
    check_parties(request)
    check_dates(request.start_date, request.end_date, today)
    grantor = check_registered(request.grantor, grantor, "grantor", name_key)
    beneficiary = check_registered(request.beneficiary, beneficiary, "beneficiary", name_key)
    check_grantor_has_account(grantor)
    check_room_for_grantor(request, existing)
    return Binding(
        binding_id=request.binding_id,
        grantor_id=grantor.person_id,
        beneficiary_id=beneficiary.person_id,
        relation=Relation(request.relation),
        payment_order=request.payment_order,
        start_date=request.start_date,
        end_date=request.end_date,
        grantor_region=grantor.region,
        beneficiary_region=beneficiary.region,
        signature_digest=request.signature_digest or "",
        channel=request.channel,
    )


def revoke_binding(binding: Binding | None, requested_by: str, today: date) -> Binding:
    """解绑: only the grantor ends a binding, and only one not revoked and not yet ended (one still
    to start may be revoked too: the grantor changed his or her mind)."""
    if binding is None or not binding.is_active_on(today):
        raise BindingRefused(Reason.BINDING_NOT_FOUND)
    if requested_by != binding.grantor_id:
        raise BindingRefused(Reason.NOT_GRANTOR)
    return binding.revoked()


def change_payment_order(binding: Binding | None, payment_order: int, siblings: list[Binding],
                         today: date, requested_by: str | None = None) -> list[Binding]:
    """Move a binding to another payment order. When the beneficiary's other grantor holds that
    order over an overlapping period, the two swap: that is what "pay from my mother first"
    means, and it keeps two bindings from ever sharing an order. Returns the changed bindings.
    `requested_by` is who asks, when the caller says (an app acting for a signed-in person): then
    only the grantor may, as for 解绑; a caller that does not say is trusted as before."""
    if binding is None or not binding.is_active_on(today):
        raise BindingRefused(Reason.BINDING_NOT_FOUND)
    if requested_by is not None and requested_by != binding.grantor_id:
        raise BindingRefused(Reason.NOT_GRANTOR)
    if payment_order not in PAYMENT_ORDERS:
        raise BindingRefused(Reason.INVALID_COMMAND, "payment_order must be 1 or 2")
    if payment_order == binding.payment_order:
        return [binding]
    holders = [b for b in siblings if b.binding_id != binding.binding_id and not b.is_revoked
               and b.payment_order == payment_order and b.overlaps_from(today, binding)]
    changed = [binding.with_order(payment_order)] + [b.with_order(binding.payment_order) for b in holders]
    check_orders_unshared(changed, siblings, today)
    return changed


def check_orders_unshared(changed: list[Binding], siblings: list[Binding], today: date) -> None:
    """A swap must not land a binding on an order another binding not revoked holds on a day
    from today on (every binding still to start included; days already past are history)."""
    ids = {b.binding_id for b in changed}
    after = changed + [b for b in siblings if b.binding_id not in ids and not b.is_revoked]
    for i, a in enumerate(after):
        for b in after[i + 1:]:
            if a.payment_order == b.payment_order and a.overlaps_from(today, b):
                raise BindingRefused(Reason.PAYMENT_ORDER_TAKEN, f"order {a.payment_order}")


# -- 共济限额 and pause: the grantor's own say over a binding (issue 15) --------------------------

def _grantors_binding(binding: Binding | None, requested_by: str, today: date) -> Binding:
    """The binding a grantor command names: not revoked, not ended, and asked for by its grantor."""
    if binding is None or not binding.is_active_on(today):
        raise BindingRefused(Reason.BINDING_NOT_FOUND)
    if requested_by != binding.grantor_id:
        raise BindingRefused(Reason.NOT_GRANTOR)
    return binding


def set_grantor_limit(binding: Binding | None, requested_by: str, monthly_limit: int | None, today: date) -> Binding:
    """The most the grantor's account pays for this beneficiary in a calendar month (China time),
    in fen; None lifts the limit, 0 pays nothing. Settlement applies it inside its debit."""
    binding = _grantors_binding(binding, requested_by, today)
    if monthly_limit is not None and not is_allowed_monthly_limit(monthly_limit):
        raise BindingRefused(Reason.INVALID_LIMIT, f"{monthly_limit} fen")
    return replace(binding, monthly_limit=monthly_limit)


def pause_binding(binding: Binding | None, requested_by: str, today: date) -> Binding:
    """A paused binding stays (it is not revoked) but pays nothing until resumed."""
    binding = _grantors_binding(binding, requested_by, today)
    if binding.paused:
        raise BindingRefused(Reason.ALREADY_PAUSED)
    return replace(binding, paused=True)


def resume_binding(binding: Binding | None, requested_by: str, today: date) -> Binding:
    """Only the grantor resumes, and not while a dispute of one of its payments is undecided
    (whoever paid without consent could otherwise resume it)."""
    binding = _grantors_binding(binding, requested_by, today)
    if binding.open_disputes > 0:
        raise BindingRefused(Reason.DISPUTE_OPEN)
    if not binding.paused:
        raise BindingRefused(Reason.NOT_PAUSED)
    return replace(binding, paused=False)


# -- 非本人授权: disputes ---------------------------------------------------------------------------

def dispute_id_for(grantor_id: str, reference: str) -> str:
    """Derived from the grantor and the payment's reference: one dispute per payment, however
    often or by whichever channel it is sent. Reveals neither."""
    return f"DSP-{uuid.uuid5(_DISPUTE_NAMESPACE, f'{grantor_id}:{reference}').hex[:24]}"


def open_dispute(payment: Payment | None, existing: Dispute | None, binding: Binding | None, requested_by: str,
                 channel: str, at: int) -> tuple[Dispute, Binding | None]:
    """Open a dispute of `payment` (found by the grantor and the reference; None: no such payment
    in the dispute window). The binding that paid is paused at once unless already paused or
    revoked, and counts the dispute as open. Returns the dispute and the binding as changed (None
    when the binding is not among the beneficiary's)."""
    if payment is None or payment.grantor_id != requested_by:
        raise BindingRefused(Reason.UNKNOWN_REFERENCE)
    if existing is not None:
        raise BindingRefused(Reason.ALREADY_DISPUTED, existing.status.value)
    pauses = binding is not None and not binding.paused and not binding.is_revoked
    changed = None if binding is None else replace(binding, paused=binding.paused or pauses,
                                                   open_disputes=binding.open_disputes + 1)
    dispute = Dispute(
        dispute_id=dispute_id_for(payment.grantor_id, payment.reference), grantor_id=payment.grantor_id,
        reference=payment.reference, binding_id=binding.binding_id if binding else payment.binding_id,
        beneficiary_id=payment.beneficiary_id, charge_id=payment.charge_id,
        institution_code=payment.institution_code, amount=payment.amount, channel=channel, opened_at=at,
        grantor_region=binding.grantor_region if binding else payment.grantor_region, paused_binding=pauses)
    return dispute, changed


def paying_binding(payment: Payment, bindings: list[Binding]) -> Binding | None:
    """The binding that paid: the one the settled line names, else (a line from before lines
    named it) the grantor's binding with this beneficiary that covered the charge's day."""
    if payment.binding_id:
        return next((b for b in bindings if b.binding_id == payment.binding_id), None)
    return next((b for b in bindings if b.grantor_id == payment.grantor_id and b.covers(payment.charged_on)), None)


class DecisionRefused(Exception):
    """A bureau's DisputeDecided that cannot be applied: dead-lettered with this reason (and
    `code` first, when it has one of the contract's)."""

    def __init__(self, why: str, code: SignatureRefused | None = None) -> None:
        super().__init__(why)
        self.code = code


def decision_refusal(signer: Signer, region: str) -> SignatureRefused | None:
    """A DisputeDecided is believed only from the bureau of the region it names (which must also
    be the grantor's: `decide_dispute`)."""
    return None if speaks_for_region(signer, region) else SignatureRefused.NOT_SIGNERS


def decide_dispute(dispute: Dispute | None, region: str, decision: str, decided_at: int,
                   binding: Binding | None) -> tuple[Dispute, Binding | None] | None:
    """Apply the bureau's decision. The binding stays paused either way (upheld: the bureau orders
    the refund through the normal path; dismissed: the grantor may resume); it no longer counts
    the dispute as open. None: this very decision was applied already (a redelivery)."""
    if dispute is None:
        raise DecisionRefused("unknown dispute")
    if region != dispute.grantor_region:
        raise DecisionRefused(f"region {region} is not the grantor's region {dispute.grantor_region}",
                              SignatureRefused.NOT_SIGNERS)
    status = DisputeStatus(decision)
    if status is DisputeStatus.OPEN:
        raise DecisionRefused("a decision is upheld or dismissed")
    if not dispute.is_open:
        if dispute.status is status:
            return None
        raise DecisionRefused(f"already decided {dispute.status.value}")
    changed = None if binding is None else replace(binding, open_disputes=max(0, binding.open_disputes - 1))
    return replace(dispute, status=status, decided_at=decided_at), changed
