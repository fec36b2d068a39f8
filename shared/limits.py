"""The bounds of a grantor's monthly limit (共济限额, issue 15): the one place they are written.

The binding service's rules refuse a limit outside them, the gateway refuses it before sending
(its request type below), and the console reads them from the gateway's catalogue
(GET /console/catalogue.json), so a change here is a change everywhere."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

from shared.money import InvalidAmount, format_yuan, parse_yuan

MIN_MONTHLY_LIMIT_FEN = 0                  # 0.00: the binding pays nothing for now
MAX_MONTHLY_LIMIT_FEN = 100_000_000        # 1,000,000.00 yuan a calendar month (China time)
# Seven integer digits cover the maximum; the value check does the rest.
MONTHLY_LIMIT_PATTERN = r"^(0|[1-9][0-9]{0,6})(\.[0-9]{1,2})?$"


def is_allowed_monthly_limit(fen: int) -> bool:
    return MIN_MONTHLY_LIMIT_FEN <= fen <= MAX_MONTHLY_LIMIT_FEN


def _limit_fen(value: Any) -> int:
    """A yuan string within the bounds; anything else (a JSON number, a third decimal, above the
    bound) is the stable error type `invalid_limit` (reason code INVALID_LIMIT)."""
    try:
        fen = parse_yuan(value)
    except InvalidAmount:
        fen = -1
    if not is_allowed_monthly_limit(fen):
        raise PydanticCustomError("invalid_limit", "a monthly limit is a yuan string from {low} to {high}",
                                  {"low": format_yuan(MIN_MONTHLY_LIMIT_FEN), "high": format_yuan(MAX_MONTHLY_LIMIT_FEN)})
    return fen


MonthlyLimit = Annotated[int, BeforeValidator(_limit_fen), PlainSerializer(format_yuan, return_type=str),
                         WithJsonSchema({"type": "string", "pattern": MONTHLY_LIMIT_PATTERN, "examples": ["500.00"],
                                         "description": f"Yuan a calendar month (China time), "
                                                        f"{format_yuan(MIN_MONTHLY_LIMIT_FEN)} to "
                                                        f"{format_yuan(MAX_MONTHLY_LIMIT_FEN)}."})]
"""Pydantic type: a monthly limit as a yuan string within the bounds, ``int`` fen after validation."""


def catalogue() -> dict[str, str]:
    """The bounds as the console reads them (yuan strings and the pattern a field is checked with)."""
    return {"min": format_yuan(MIN_MONTHLY_LIMIT_FEN), "max": format_yuan(MAX_MONTHLY_LIMIT_FEN),
            "pattern": MONTHLY_LIMIT_PATTERN}
