"""Who may say what to settlement (contract version 3): pure rules over the signer a message's
signature proved (`shared.signing.Signer`) and what the message names. A bureau's rules about a
person are shared by every projection of bureau.accounts (`shared.bureau`); these are settlement's
own: a HIS speaks only for its institution, a bureau registers only its region's institutions,
and a HIS hears only on its own reply topics."""

from __future__ import annotations

from shared.bureau import speaks_for_region
from shared.signing import SignatureRefused, Signer


def his_refusal(signer: Signer, institution_code: object) -> SignatureRefused | None:
    """A HIS message (a charge, refund, quote or reconciliation) is believed only from a key of
    the institution it names. A message naming no institution string is left to the contract's
    own checks (INVALID_CHARGE), as long as a HIS signed it."""
    if signer.owner != "his":
        return SignatureRefused.NOT_SIGNERS
    if isinstance(institution_code, str) and institution_code != signer.institution:
        return SignatureRefused.NOT_SIGNERS
    return None


def institution_refusal(signer: Signer, event_region: str) -> SignatureRefused | None:
    """An InstitutionRegistered is believed only from the bureau of the region it names. (And a
    change of an institution already registered only from the bureau of its current region, so an
    institution never moves to another region by a registration: that part reads the projection,
    in the same atomic step that registers it, storage/bureau.lua `register_institution`.)"""
    return None if speaks_for_region(signer, event_region) else SignatureRefused.NOT_SIGNERS


def reply_prefix(signer: Signer | SignatureRefused) -> str | None:
    """The reply topics a sender may be answered on: a HIS's begin `reply.<its institution>.`;
    nobody else who signs a HIS topic, and no sender that proved nothing, is answered there."""
    if isinstance(signer, Signer) and signer.owner == "his" and signer.institution:
        return f"reply.{signer.institution}."
    return None
