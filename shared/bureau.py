"""Events the regional bureaus publish on `bureau.accounts` (contract.md). Three services read
them, each into a projection of its own, so their shape lives in the shared kernel.

Strict at the edge (contract version 2): strings stay strings, `bureau_seq` is a JSON integer
from 1 to 2^53 - 1, sizes are bounded."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from shared.identity import IdNumber, Mobile
from shared.money import Yuan
from shared.regions import RegionCode
from shared.signing import Signer, SignatureRefused
from shared.wire import Day, Text

PERSON_REGISTERED = "PersonRegistered"
ACCOUNT_CREDITED = "AccountCredited"
ACCOUNT_DEBITED_LOCALLY = "AccountDebitedLocally"
BALANCE_SNAPSHOT = "BalanceSnapshot"
# Added to the contract: a bureau's list of the platform postings it applied to its book on a
# day, which the settlement service reconciles (对账) against what it sent.
DAILY_POSTINGS_REPORTED = "DailyPostingsReported"
# Contract version 3: a person's own bureau lets another region register him (a move).
PERSON_TRANSFERRED = "PersonTransferred"
BUREAU_EVENT_TYPES = frozenset({PERSON_REGISTERED, ACCOUNT_CREDITED, ACCOUNT_DEBITED_LOCALLY, BALANCE_SNAPSHOT,
                                DAILY_POSTINGS_REPORTED, PERSON_TRANSFERRED})

BureauSeq = Annotated[int, Strict(), Field(ge=1, lt=2**53)]
"""Increasing per person; a JSON integer (never a string or a bool), exact in every JSON reader."""

AccountSeq = Annotated[int, Strict(), Field(ge=0, lt=2**53)]
"""A platform posting's place in its account's sequence (0: none)."""

# A day's report comes in parts of at most this many postings (and at most this many parts).
MAX_POSTINGS_PER_PART = 10_000
MAX_PARTS = 1_000


class PersonRegistered(BaseModel):
    """A person insured in a pooling region; employees come with their personal account's balance."""

    model_config = ConfigDict(extra="ignore")

    person_id: IdNumber
    name: Text = Field(min_length=1, max_length=64)
    region: RegionCode
    scheme: Literal["employee", "resident"]
    employer: Text | None = Field(None, max_length=128)
    community: Text | None = Field(None, max_length=128)
    phone: Mobile | None = None
    balance: Yuan | None = None

    @model_validator(mode="after")
    def _employees_have_an_account(self) -> PersonRegistered:
        if self.scheme == "employee" and self.balance is None:
            raise ValueError("an employee registration carries the personal account's balance")
        return self


class AccountMovement(BaseModel):
    """AccountCredited (monthly contribution) or AccountDebitedLocally (spent at the bureau itself)."""

    model_config = ConfigDict(extra="ignore")

    person_id: IdNumber
    region: RegionCode
    amount: Yuan
    bureau_seq: BureauSeq


class BalanceSnapshot(BaseModel):
    """The bureau's balance of an account, which already includes the platform's postings to it
    up to `postings_applied_through` (their `account_seq`; 0: none)."""

    model_config = ConfigDict(extra="ignore")

    person_id: IdNumber
    region: RegionCode
    balance: Yuan
    bureau_seq: BureauSeq
    postings_applied_through: AccountSeq = Field(
        description="Contract version 2: the highest account_seq of this account's platform postings the "
                    "balance includes (0: none).")


class AppliedPosting(BaseModel):
    model_config = ConfigDict(extra="ignore")

    posting_id: Text = Field(min_length=1, max_length=200)
    direction: Literal["debit", "credit"]
    amount: Yuan


class DailyPostingsReported(BaseModel):
    """What one region's bureau applied of the platform's postings on one day (China time).

    A busy region-day may come in parts (`part` of `parts`, 1-based); the platform reconciles
    once every part of the same (`region`, `day`, `report_id`) is in."""

    model_config = ConfigDict(extra="ignore")

    region: RegionCode
    day: Day
    postings: list[AppliedPosting] = Field(max_length=MAX_POSTINGS_PER_PART)
    report_id: Text = Field("", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$", description=(
        "Added: names one report of the region-day when a bureau sends more than one (a correction); "
        "empty by default."))
    part: int = Field(1, strict=True, ge=1, le=MAX_PARTS, description="Added: this part's number, from 1.")
    parts: int = Field(1, strict=True, ge=1, le=MAX_PARTS, description="Added: how many parts the report has.")

    @model_validator(mode="after")
    def _part_within_parts(self) -> DailyPostingsReported:
        if self.part > self.parts:
            raise ValueError("part is greater than parts")
        return self


class PersonTransferred(BaseModel):
    """The person's own region's bureau lets `to_region` register him next (contract version 3).
    Until it does, a PersonRegistered from another region for him is refused NOT_SIGNERS."""

    model_config = ConfigDict(extra="ignore")

    person_id: IdNumber
    to_region: RegionCode


# -- Who may say what about a person (contract version 3) -----------------------------------------
# Pure rules, the same in every projection of bureau.accounts (settlement, binding, notify): the
# region a bureau event speaks for is the signer's, never the `region` field alone.

def speaks_for_region(signer: Signer, region: str) -> bool:
    """Whether the signer is the bureau of `region`."""
    return signer.owner == "bureau" and signer.region == region


def registration_refusal(signer: Signer, event_region: str, registered_region: str | None,
                         transferred_to: str | None) -> SignatureRefused | None:
    """A PersonRegistered is believed from the bureau of its region, for a new person, a person
    of that region (phone, name, employer change only there), or a person whose own bureau has
    transferred him to that region."""
    if not speaks_for_region(signer, event_region):
        return SignatureRefused.NOT_SIGNERS
    if registered_region is None or registered_region == event_region or transferred_to == event_region:
        return None
    return SignatureRefused.NOT_SIGNERS


def transfer_refusal(signer: Signer, registered_region: str | None) -> SignatureRefused | None:
    """A PersonTransferred is believed only from the bureau of the region the person is in now."""
    if registered_region is None or not speaks_for_region(signer, registered_region):
        return SignatureRefused.NOT_SIGNERS
    return None


def movement_refusal(signer: Signer, event_region: str) -> SignatureRefused | None:
    """AccountCredited, AccountDebitedLocally, BalanceSnapshot and DailyPostingsReported are
    believed only from the bureau of the region they name (which must also be the person's)."""
    return None if speaks_for_region(signer, event_region) else SignatureRefused.NOT_SIGNERS
