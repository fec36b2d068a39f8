"""Resident ID numbers (GB 11643-1999), mainland mobile numbers, and log masking.

Validation helpers return booleans; the ``IdNumber`` and ``Mobile`` pydantic
types normalize input and raise stable error types (``invalid_id_number``,
``invalid_phone``) so API layers can map them to reason codes. The ``mask_*``
functions produce strings that are safe to write to logs.
"""

from __future__ import annotations

import datetime
import re
from operator import mul
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from shared import envelope

__all__ = [
    "IdNumber",
    "Mobile",
    "check_digit",
    "is_valid_id_number",
    "is_valid_mobile",
    "make_id_number",
    "mask_id_number",
    "mask_name",
    "mask_phone",
    "normalize_id_number",
    "normalize_mobile",
]

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"
_ZERO_WEIGHT = ord("0") * sum(_WEIGHTS)
_EARLIEST_BIRTH = datetime.date(1900, 1, 1)

# [0-9] rather than \d: \d also matches non-ASCII digits.
_FIRST17_RE = re.compile(r"[0-9]{17}")
_ID_RE = re.compile(r"[0-9]{17}[0-9X]")
_REGION_RE = re.compile(r"[0-9]{6}")
_ELEVEN_DIGITS_RE = re.compile(r"[0-9]{11}")
_MOBILE_RE = re.compile(r"1[3-9][0-9]{9}")


def check_digit(first17: str) -> str:
    """Return the GB 11643-1999 check character for the first 17 digits."""
    if not isinstance(first17, str) or not _FIRST17_RE.fullmatch(first17):
        raise ValueError("check_digit needs exactly 17 ASCII digits")
    return _check_char(first17)


def _check_char(digits: str) -> str:
    """The check character of 17 (or more: the first 17 count) ASCII digits, already matched.
    Each digit's byte is the digit plus 48, so the weighted sum of the bytes, less 48 times the
    sum of the weights, is the weighted sum of the digits: one pass in C, read for every ID a
    charge names."""
    return _CHECK_CHARS[(sum(map(mul, digits.encode()[:17], _WEIGHTS)) - _ZERO_WEIGHT) % 11]


def normalize_id_number(s: str) -> str:
    """Uppercase a trailing ``x``; nothing else is changed (no stripping)."""
    if s.endswith("x"):
        return s[:-1] + "X"
    return s


def _birth_date(id_number: str) -> datetime.date | None:
    try:
        return datetime.date(
            int(id_number[6:10]), int(id_number[10:12]), int(id_number[12:14])
        )
    except ValueError:
        return None


def is_valid_id_number(s: Any, *, today: datetime.date | None = None) -> bool:
    """True for a well-formed 18-character ID with a real birth date and check digit.

    The birth date must lie between 1900-01-01 and ``today`` (defaults to the
    day it is in China by the platform's clock, read at call time: never the host's date).
    """
    if not isinstance(s, str):
        return False
    s = normalize_id_number(s)
    if not _ID_RE.fullmatch(s):
        return False
    birth = _birth_date(s)
    if birth is None:
        return False
    latest = today if today is not None else envelope.china_today()
    if not _EARLIEST_BIRTH <= birth <= latest:
        return False
    return _check_char(s) == s[17]


def make_id_number(region6: str, birth: datetime.date, seq: int) -> str:
    """Build a valid ID number, for tests and fixtures.

    ``seq`` (0..999) becomes the 3-digit sequence code; its parity encodes sex
    (odd male, even female).
    """
    if not isinstance(region6, str) or not _REGION_RE.fullmatch(region6):
        raise ValueError("region6 must be exactly 6 ASCII digits")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 999:
        raise ValueError("seq must be an int in 0..999")
    if birth < _EARLIEST_BIRTH:
        raise ValueError("birth must not be before 1900-01-01")
    first17 = f"{region6}{birth:%Y%m%d}{seq:03d}"
    return first17 + check_digit(first17)


def normalize_mobile(s: str) -> str:
    """Strip a leading ``+86`` or ``86`` country code, only when 11 digits remain."""
    for prefix in ("+86", "86"):
        if s.startswith(prefix) and _ELEVEN_DIGITS_RE.fullmatch(s[len(prefix):]):
            return s[len(prefix):]
    return s


def is_valid_mobile(s: Any) -> bool:
    """True for a mainland mobile number (``1[3-9]`` + 9 digits), after normalizing."""
    if not isinstance(s, str):
        return False
    return _MOBILE_RE.fullmatch(normalize_mobile(s)) is not None


def _mask_unexpected(s: str) -> str:
    # Unknown shape: we cannot tell which parts are sensitive, so hide
    # everything except, for longer strings, the last two characters.
    if len(s) <= 4:
        return "*" * len(s)
    return "*" * (len(s) - 2) + s[-2:]


def mask_phone(s: str) -> str:
    """``"13812345678"`` -> ``"138****5678"``; anything else is almost fully hidden."""
    number = normalize_mobile(s)
    if len(number) != 11:
        return _mask_unexpected(s)
    return f"{number[:3]}****{number[-4:]}"


def mask_id_number(s: str) -> str:
    """``"610102199001011234"`` -> ``"610***********1234"``.

    The birth date and sequence never appear; a string of unexpected length
    is hidden except at most its last two characters.
    """
    if len(s) != 18:
        return _mask_unexpected(s)
    return f"{s[:3]}{'*' * 11}{s[-4:]}"


def mask_name(s: str) -> str:
    """Keep the first character (and the last, from three characters up).

    ``"张三明"`` -> ``"张*明"``, ``"张三"`` -> ``"张*"``, ``"张"`` -> ``"*"``,
    ``"欧阳小明"`` -> ``"欧**明"``.
    """
    n = len(s)
    if n == 0:
        return ""
    if n == 1:
        return "*"
    if n == 2:
        return s[0] + "*"
    return s[0] + "*" * (n - 2) + s[-1]


def _validate_id_number(value: Any) -> str:
    if isinstance(value, str):
        normalized = normalize_id_number(value)
        if is_valid_id_number(normalized):
            return normalized
    # Never echo the input: error messages may end up in logs.
    raise PydanticCustomError(
        "invalid_id_number",
        "not a valid 18-character resident ID number",
    )


def _validate_mobile(value: Any) -> str:
    if isinstance(value, str):
        normalized = normalize_mobile(value)
        if is_valid_mobile(normalized):
            return normalized
    raise PydanticCustomError(
        "invalid_phone",
        "not a valid mainland mobile number",
    )


IdNumber = Annotated[str, BeforeValidator(_validate_id_number)]
"""Pydantic type: a valid resident ID number, trailing ``x`` uppercased."""

Mobile = Annotated[str, BeforeValidator(_validate_mobile)]
"""Pydantic type: a mainland mobile number, country code stripped."""
