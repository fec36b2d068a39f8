"""Strict types for what partners send (contract.md, version 2: "strings stay strings").

pydantic's lax mode turns the JSON number 0 into "0" or into 1970-01-01T00:00:00Z; at the
platform's edge nothing is coerced: a JSON number where the contract says a string (an amount,
a time, an ID number, a date) is refused.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, Strict
from pydantic_core import PydanticCustomError


def _must_be_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "must be a JSON string")
    return value


def _plain_date(value: Any) -> Any:
    _must_be_text(value)
    if len(value) != 10:
        raise PydanticCustomError("date_format", "must be YYYY-MM-DD")
    return value


def _representable(value: datetime) -> datetime:
    # An offset at the edge of the calendar (0001-01-01T00:00+01:00) is valid ISO 8601 but cannot
    # be converted to China time, nor moved by a day: refusing every year outside 2000-2999 refuses
    # those too (the calendar's edges are years 1 and 9999), before anything converts it.
    if not 2000 <= value.year <= 2999:
        raise PydanticCustomError("datetime_range", "time out of range")
    return value


Text = Annotated[str, Strict()]
"""A JSON string, never a number made into one."""

Time = Annotated[AwareDatetime, BeforeValidator(_must_be_text), AfterValidator(_representable)]
"""An ISO 8601 time string with an offset, within years 2000-2999."""

Day = Annotated[date, BeforeValidator(_plain_date)]
"""An ISO date string, YYYY-MM-DD."""

Count = Annotated[int, Strict(), Field(ge=0, lt=2**53)]
"""A JSON integer (not a bool, not a string), exact in every JSON reader."""
