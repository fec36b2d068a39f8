"""Shaanxi's medical-insurance pooling regions (统筹区), loaded from regions.json.

The list of regions is data, kept in ``regions.json`` next to this module, so
it can change without touching code. It is read lazily on first use.

``RegionCode`` only checks the shape of a code (six digits). Whether a code
belongs to the province is a business rule (``is_in_province``), reported
separately as OUTSIDE_PROVINCE rather than as a validation error.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

__all__ = ["Region", "RegionCode", "all_regions", "find_region", "is_in_province"]

# [0-9] rather than \d: \d also matches non-ASCII digits.
_CODE_RE = re.compile(r"[0-9]{6}")


@dataclass(frozen=True)
class Region:
    """One pooling region: six-digit code plus Chinese and English names."""

    code: str
    name_zh: str
    name_en: str


@functools.cache
def all_regions() -> tuple[Region, ...]:
    """All pooling regions in the province, in data-file order."""
    text = resources.files("shared").joinpath("regions.json").read_text(encoding="utf-8")
    return tuple(
        Region(code=item["code"], name_zh=item["name_zh"], name_en=item["name_en"])
        for item in json.loads(text)
    )


@functools.cache
def _by_code() -> dict[str, Region]:
    return {region.code: region for region in all_regions()}


def find_region(code: str) -> Region | None:
    """The region with this code, or None if the province has no such region."""
    if not isinstance(code, str):
        return None
    return _by_code().get(code)


def is_in_province(code: str) -> bool:
    """True only if ``code`` is one of the province's pooling regions."""
    return find_region(code) is not None


def _validate_region_code(value: Any) -> str:
    if isinstance(value, str) and _CODE_RE.fullmatch(value):
        return value
    raise PydanticCustomError(
        "invalid_region", "region code must be exactly six digits"
    )


RegionCode = Annotated[str, BeforeValidator(_validate_region_code)]
"""Pydantic type: a six-digit region code (shape only, not membership)."""
