"""Events the regional bureaus publish on `bureau.accounts` (contract.md). Three services read
them, each into a projection of its own, so their shape lives in the shared kernel."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.identity import IdNumber, Mobile
from shared.money import Yuan
from shared.regions import RegionCode

PERSON_REGISTERED = "PersonRegistered"
ACCOUNT_CREDITED = "AccountCredited"
ACCOUNT_DEBITED_LOCALLY = "AccountDebitedLocally"
BALANCE_SNAPSHOT = "BalanceSnapshot"
# Added to the contract: a bureau's list of the platform postings it applied to its book on a
# day, which the settlement service reconciles (对账) against what it sent.
DAILY_POSTINGS_REPORTED = "DailyPostingsReported"
BUREAU_EVENT_TYPES = frozenset({PERSON_REGISTERED, ACCOUNT_CREDITED, ACCOUNT_DEBITED_LOCALLY, BALANCE_SNAPSHOT,
                                DAILY_POSTINGS_REPORTED})


class PersonRegistered(BaseModel):
    """A person insured in a pooling region; employees come with their personal account's balance."""

    model_config = ConfigDict(extra="ignore")

    person_id: IdNumber
    name: str = Field(min_length=1, max_length=64)
    region: RegionCode
    scheme: Literal["employee", "resident"]
    employer: str | None = None
    community: str | None = None
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
    bureau_seq: int = Field(ge=0)


class BalanceSnapshot(BaseModel):
    model_config = ConfigDict(extra="ignore")

    person_id: IdNumber
    region: RegionCode
    balance: Yuan
    bureau_seq: int = Field(ge=0)


class AppliedPosting(BaseModel):
    model_config = ConfigDict(extra="ignore")

    posting_id: str = Field(min_length=1, max_length=200)
    direction: Literal["debit", "credit"]
    amount: Yuan


class DailyPostingsReported(BaseModel):
    """What one region's bureau applied of the platform's postings on one day (China time)."""

    model_config = ConfigDict(extra="ignore")

    region: RegionCode
    day: date
    postings: list[AppliedPosting]
