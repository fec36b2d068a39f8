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
from shared.wire import Day, Text

PERSON_REGISTERED = "PersonRegistered"
ACCOUNT_CREDITED = "AccountCredited"
ACCOUNT_DEBITED_LOCALLY = "AccountDebitedLocally"
BALANCE_SNAPSHOT = "BalanceSnapshot"
# Added to the contract: a bureau's list of the platform postings it applied to its book on a
# day, which the settlement service reconciles (对账) against what it sent.
DAILY_POSTINGS_REPORTED = "DailyPostingsReported"
BUREAU_EVENT_TYPES = frozenset({PERSON_REGISTERED, ACCOUNT_CREDITED, ACCOUNT_DEBITED_LOCALLY, BALANCE_SNAPSHOT,
                                DAILY_POSTINGS_REPORTED})

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
