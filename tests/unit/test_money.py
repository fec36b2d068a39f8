"""Tests for shared.money: yuan strings at the edge, integer fen inside."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import re

from shared.money import (SIGNED_YUAN_PATTERN, Fen, InvalidAmount, SignedYuan, Yuan, format_yuan, parse_signed_yuan,
                          parse_yuan)

# No example database: tests must not write files into the tree.
no_db = settings(database=None)


class Payment(BaseModel):
    amount: Yuan


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0", 0),
        ("0.5", 50),
        ("0.50", 50),
        ("0.05", 5),
        ("0.00", 0),
        ("12", 1200),
        ("12.5", 1250),
        ("12.50", 1250),
        ("128.50", 12850),
        ("100", 10000),
        ("999999999999.99", 99999999999999),
    ],
)
def test_plain_yuan_strings_are_parsed_into_fen(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1",
        "-0.01",
        "+1",
        "00.5",
        "01",
        "1.005",
        "1.",
        ".5",
        "1e3",
        "1E3",
        "NaN",
        "nan",
        "Infinity",
        "inf",
        " 1",
        "1 ",
        "1\n",
        "1,000",
        "1_000",
        "１２",  # full-width digits
        "١٢",  # Arabic-Indic digits
        "1000000000000",  # 13 integer digits
        "abc",
    ],
)
def test_malformed_yuan_strings_are_refused(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_yuan(text)


@pytest.mark.parametrize("value", [12, 12.5, 0.1, True, False, None, b"12"])
def test_non_strings_are_refused_by_parse_yuan(value: object) -> None:
    with pytest.raises(InvalidAmount):
        parse_yuan(value)  # type: ignore[arg-type]


def test_three_decimals_are_refused_not_rounded() -> None:
    for text in ("1.005", "1.004", "0.999", "12.500"):
        with pytest.raises(InvalidAmount, match="two decimals"):
            parse_yuan(text)


def test_invalid_amount_is_a_value_error() -> None:
    assert issubclass(InvalidAmount, ValueError)


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (50, "0.50"),
        (12850, "128.50"),
        (-1230, "-12.30"),
        (-5, "-0.05"),
        (100, "1.00"),
    ],
)
def test_fen_is_formatted_with_exactly_two_decimals(fen: int, text: str) -> None:
    assert format_yuan(fen) == text


@pytest.mark.parametrize("value", [1.5, "12", None, True, False])
def test_format_yuan_refuses_non_ints_and_bools(value: object) -> None:
    with pytest.raises(TypeError):
        format_yuan(value)  # type: ignore[arg-type]


@no_db
@given(st.integers(min_value=0, max_value=10**14 - 1))
def test_formatting_then_parsing_gives_back_the_same_fen(fen: int) -> None:
    assert parse_yuan(format_yuan(fen)) == fen


@no_db
@given(st.integers(min_value=-(10**14), max_value=10**14))
def test_formatted_amounts_always_have_two_decimals(fen: int) -> None:
    text = format_yuan(fen)
    whole, _, cents = text.lstrip("-").partition(".")
    assert len(cents) == 2
    assert (text.startswith("-")) == (fen < 0)
    assert int(whole) * 100 + int(cents) == abs(fen)


def test_a_yuan_field_holds_fen_after_validation() -> None:
    assert Payment(amount="12.50").amount == 1250
    assert Payment(amount="12.5").amount == 1250


def test_a_yuan_field_dumps_as_a_yuan_string() -> None:
    payment = Payment(amount="12.5")
    assert payment.model_dump() == {"amount": "12.50"}
    assert payment.model_dump_json() == '{"amount":"12.50"}'


def test_a_yuan_field_round_trips_through_json() -> None:
    payment = Payment.model_validate_json('{"amount": "0.05"}')
    assert payment.amount == 5
    assert Payment.model_validate_json(payment.model_dump_json()) == payment


def test_fen_passes_through_a_yuan_field_unchanged() -> None:
    payment = Payment(amount=Fen(1250))
    assert payment.amount == 1250
    assert payment.model_dump() == {"amount": "12.50"}


@pytest.mark.parametrize(
    "value", [1250, 12.5, 0.0, True, None, "1.005", "-1", "NaN", "1e2", " 1"]
)
def test_a_yuan_field_refuses_with_invalid_amount(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        Payment(amount=value)
    errors = info.value.errors()
    assert [e["type"] for e in errors] == ["invalid_amount"]
    assert errors[0]["loc"] == ("amount",)


def test_json_numbers_are_refused_by_a_yuan_field() -> None:
    for raw in ('{"amount": 12.5}', '{"amount": 1250}'):
        with pytest.raises(ValidationError) as info:
            Payment.model_validate_json(raw)
        assert info.value.errors()[0]["type"] == "invalid_amount"


def test_the_json_schema_of_a_yuan_field_is_a_string() -> None:
    schema = Payment.model_json_schema()
    assert schema["properties"]["amount"]["type"] == "string"


# -- signed amounts (balances, in flight, drift, net: contract version 2 never clamps) --------------
class _Balance(BaseModel):
    balance_after: SignedYuan


@pytest.mark.parametrize("text,fen", [("-12.30", -1230), ("-0.01", -1), ("-0.5", -50), ("0", 0), ("0.00", 0),
                                      ("128.50", 12850), ("-230.00", -23000)])
def test_signed_yuan_strings_may_carry_a_minus(text: str, fen: int) -> None:
    assert parse_signed_yuan(text) == fen
    assert _Balance.model_validate({"balance_after": text}).balance_after == fen
    assert re.fullmatch(SIGNED_YUAN_PATTERN, text)


@pytest.mark.parametrize("text", ["-0", "-0.00", "--1.00", "- 1.00", "+1.00", "-1.005", "-01.00", "-", "-1e2",
                                  "−1.00"])
def test_malformed_signed_yuan_strings_are_refused_by_parser_and_schema_alike(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_signed_yuan(text)
    with pytest.raises(ValidationError):
        _Balance.model_validate({"balance_after": text})
    assert not re.fullmatch(SIGNED_YUAN_PATTERN, text)


@pytest.mark.parametrize("value", [-12.3, -1230, None, True])
def test_signed_yuan_refuses_non_strings(value: object) -> None:
    with pytest.raises(ValidationError):
        _Balance.model_validate({"balance_after": value})


@given(st.integers(min_value=-(10**14) + 1, max_value=10**14 - 1))
@settings(max_examples=300)
def test_signed_yuan_round_trips_through_json_and_matches_its_schema(fen: int) -> None:
    text = format_yuan(fen)
    assert re.fullmatch(SIGNED_YUAN_PATTERN, text)
    assert _Balance.model_validate_json(_Balance(balance_after=Fen(fen)).model_dump_json()).balance_after == fen


def test_an_unsigned_yuan_field_still_refuses_a_minus() -> None:
    class Charge(BaseModel):
        total: Yuan

    with pytest.raises(ValidationError):
        Charge.model_validate({"total": "-1.00"})
