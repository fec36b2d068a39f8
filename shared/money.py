"""Money handling: integer fen inside the system, decimal yuan strings at the edges.

Amounts arrive from and leave to the outside world as yuan strings such as
"128.50". Inside, every amount is an ``int`` number of fen (1 yuan = 100 fen),
so arithmetic is exact. Floats are never accepted and nothing is ever rounded:
an amount that cannot be represented exactly in fen is refused.

For pydantic models use the ``Yuan`` annotated type. After validation a
``Yuan`` field holds an ``int`` of fen; it dumps (both ``model_dump()`` and
``model_dump_json()``) as a yuan string. Internal code that already has fen
wraps the value in ``Fen`` to get it through validation unchanged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Callable

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

__all__ = ["SIGNED_YUAN_PATTERN", "YUAN_PATTERN", "Fen", "InvalidAmount", "SignedYuan", "Yuan", "format_yuan",
           "parse_signed_yuan", "parse_yuan"]

# Twelve integer digits is just under a trillion yuan: far above any
# legitimate claim or fund balance, low enough to stop absurd input early.
MAX_INTEGER_DIGITS = 12

# [0-9] rather than \d: \d also matches non-ASCII digits such as "١".
# No leading zeros ("00.5"), no sign, at most two decimals.
_YUAN_RE = re.compile(r"(0|[1-9][0-9]*)(?:\.([0-9]{1,2}))?")


class InvalidAmount(ValueError):
    """Raised when a yuan string is not an exact, non-negative amount."""


class Fen(int):
    """Marker for an amount that is already integer fen.

    The ``Yuan`` validator refuses plain ints (the edge always speaks yuan
    strings, and a bare int is ambiguous between yuan and fen). Wrapping a
    value in ``Fen`` states the unit explicitly, so it passes through as is.
    """


def parse_yuan(text: str) -> int:
    """Parse a yuan string such as ``"12.5"`` into fen (``1250``).

    Only plain non-negative decimals with at most two fractional digits are
    accepted. More precision is an error, never rounded.
    """
    if not isinstance(text, str):
        raise InvalidAmount(
            f"amount must be a yuan string, got {type(text).__name__}"
        )
    match = _YUAN_RE.fullmatch(text)
    if match is None:
        raise InvalidAmount(
            f"amount {text!r} is not a plain non-negative yuan amount "
            "with at most two decimals (e.g. '12.50')"
        )
    integer_part, fraction = match.group(1), match.group(2) or ""
    if len(integer_part) > MAX_INTEGER_DIGITS:
        raise InvalidAmount(
            f"amount {text!r} has more than {MAX_INTEGER_DIGITS} integer digits"
        )
    # "12.5" means 50 fen, not 5: pad the fraction to two digits.
    return int(integer_part) * 100 + int(fraction.ljust(2, "0"))


def parse_signed_yuan(text: str) -> int:
    """Parse a yuan string that may carry a leading minus (``"-12.30"`` -> ``-1230``).

    For the amounts the contract lets go below zero (a balance after a bureau's own spending,
    money in flight, a drift, a net): the same strictness as ``parse_yuan`` otherwise. A minus
    zero ("-0", "-0.00") is refused: ``format_yuan`` never writes it, so it names no amount.
    """
    if isinstance(text, str) and text.startswith("-"):
        fen = -parse_yuan(text[1:])
        if fen == 0:
            raise InvalidAmount(f"amount {text!r} is a negative zero")
        return fen
    return parse_yuan(text)


def format_yuan(fen: int) -> str:
    """Format fen as a yuan string with exactly two decimals.

    Negative values are allowed because reconciliation differences can be
    negative: ``format_yuan(-1230) == "-12.30"``.
    """
    # bool is an int subclass; True meaning "0.01" would hide a bug.
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise TypeError(f"fen must be an int, got {type(fen).__name__}")
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}{yuan}.{cents:02d}"


def _validator(parse: Callable[[str], int]) -> Callable[[Any], int]:
    def validate(value: Any) -> int:
        if isinstance(value, Fen):
            return value
        try:
            return parse(value)
        except InvalidAmount as exc:
            # A stable error type lets API layers map this to a reason code.
            raise PydanticCustomError(
                "invalid_amount", "invalid amount: {reason}", {"reason": str(exc)}
            ) from None
    return validate


_validate_yuan = _validator(parse_yuan)
_validate_signed_yuan = _validator(parse_signed_yuan)


def _serialize_yuan(fen: int) -> str:
    return format_yuan(fen)


# The wire form of a Yuan, for schemas (AsyncAPI, OpenAPI): no sign, at most two decimals.
YUAN_PATTERN = r"^(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?$"

Yuan = Annotated[
    int,
    BeforeValidator(_validate_yuan),
    PlainSerializer(_serialize_yuan, return_type=str),
    # The wire format is a string, not the internal int; say so in schemas.
    WithJsonSchema(
        {
            "type": "string",
            "pattern": YUAN_PATTERN,
            "examples": ["128.50"],
        }
    ),
]
"""Pydantic type: a yuan string at the edge, ``int`` fen after validation."""

# A minus sign only before a non-zero amount: "-0.00" is refused, as by the parser.
SIGNED_YUAN_PATTERN = (
    r"^(0(\.[0-9]{1,2})?|-?0\.(0[1-9]|[1-9][0-9]?)|-?[1-9][0-9]{0,11}(\.[0-9]{1,2})?)$"
)

SignedYuan = Annotated[
    int,
    BeforeValidator(_validate_signed_yuan),
    PlainSerializer(_serialize_yuan, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": SIGNED_YUAN_PATTERN,
            "examples": ["128.50", "-230.00"],
        }
    ),
]
"""Pydantic type: a yuan string that may be negative ("-12.30"), ``int`` fen after validation.

Only for amounts the contract lets go below zero (``balance_after``, in-flight money, drift, a
net); a charge's amounts stay ``Yuan``."""
