"""Tests for shared.regions: the province's pooling regions as data."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel, ValidationError

from shared.regions import Region, RegionCode, all_regions, find_region, is_in_province


class Claim(BaseModel):
    region: RegionCode


def test_xian_is_found() -> None:
    assert find_region("610100") == Region("610100", "西安市", "Xi'an")


def test_baoji_is_found() -> None:
    region = find_region("610300")
    assert region is not None
    assert region.name_zh == "宝鸡市"
    assert region.name_en == "Baoji"


def test_special_regions_are_in_province() -> None:
    for code in ("610403", "610581", "619900"):
        assert is_in_province(code)


def test_beijing_is_not_in_province() -> None:
    assert find_region("110100") is None
    assert not is_in_province("110100")


@pytest.mark.parametrize("code", ["", "6101", "610100 ", None, 610100])
def test_malformed_codes_are_not_in_province(code: object) -> None:
    assert not is_in_province(code)  # type: ignore[arg-type]


def test_there_are_thirteen_regions() -> None:
    assert len(all_regions()) == 13


def test_every_code_is_six_digits_starting_with_61() -> None:
    for region in all_regions():
        assert len(region.code) == 6
        assert region.code.isascii() and region.code.isdigit()
        assert region.code.startswith("61")


def test_codes_are_unique() -> None:
    codes = [region.code for region in all_regions()]
    assert len(codes) == len(set(codes))


def test_every_region_has_both_names() -> None:
    for region in all_regions():
        assert region.name_zh and region.name_en


def test_regions_are_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        all_regions()[0].code = "110100"  # type: ignore[misc]


def test_region_code_accepts_six_digits_without_checking_membership() -> None:
    assert Claim(region="610100").region == "610100"
    # Outside the province, but well formed: membership is a business rule.
    assert Claim(region="110100").region == "110100"


@pytest.mark.parametrize("bad", ["", "61010", "6101000", "61010a", "６１０１００", 610100, None])
def test_malformed_region_codes_give_invalid_region(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        Claim(region=bad)
    assert [e["type"] for e in info.value.errors()] == ["invalid_region"]
