"""Tests for shared.identity: resident ID numbers, mobiles and log masking."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.identity import (
    IdNumber,
    Mobile,
    check_digit,
    is_valid_id_number,
    is_valid_mobile,
    make_id_number,
    mask_id_number,
    mask_name,
    mask_phone,
    normalize_id_number,
    normalize_mobile,
)

# No example database: tests must not write files into the tree.
no_db = settings(database=None)

KNOWN_GOOD_ID = "11010519491231002X"

regions6 = st.from_regex(r"[0-9]{6}", fullmatch=True)
births = st.dates(
    min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2020, 12, 31)
)
seqs = st.integers(min_value=0, max_value=999)
mobiles = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)


class Person(BaseModel):
    id_number: IdNumber
    phone: Mobile


def _with_check_digit(first17: str) -> str:
    return first17 + check_digit(first17)


def test_the_known_good_id_number_is_valid() -> None:
    assert is_valid_id_number(KNOWN_GOOD_ID)


def test_a_lowercase_trailing_x_is_accepted_and_normalized() -> None:
    lower = KNOWN_GOOD_ID[:-1] + "x"
    assert is_valid_id_number(lower)
    assert normalize_id_number(lower) == KNOWN_GOOD_ID


def test_normalizing_strips_nothing() -> None:
    assert normalize_id_number(" " + KNOWN_GOOD_ID) == " " + KNOWN_GOOD_ID
    assert not is_valid_id_number(" " + KNOWN_GOOD_ID)
    assert not is_valid_id_number(KNOWN_GOOD_ID + "\n")


def test_check_digit_of_the_known_good_id_is_x() -> None:
    assert check_digit(KNOWN_GOOD_ID[:17]) == "X"


@pytest.mark.parametrize("bad", ["", "123", "1" * 18, "1101051949123100a", None])
def test_check_digit_refuses_anything_but_17_digits(bad: object) -> None:
    with pytest.raises(ValueError):
        check_digit(bad)  # type: ignore[arg-type]


@no_db
@given(position=st.integers(min_value=0, max_value=17), data=st.data())
def test_changing_any_one_character_of_a_good_id_makes_it_invalid(
    position: int, data: st.DataObject
) -> None:
    original = KNOWN_GOOD_ID[position]
    alphabet = "0123456789X" if position == 17 else "0123456789"
    replacement = data.draw(st.sampled_from([c for c in alphabet if c != original]))
    changed = KNOWN_GOOD_ID[:position] + replacement + KNOWN_GOOD_ID[position + 1 :]
    assert not is_valid_id_number(changed)


@no_db
@given(region=regions6, birth=births, seq=seqs)
def test_made_id_numbers_are_always_valid(
    region: str, birth: datetime.date, seq: int
) -> None:
    number = make_id_number(region, birth, seq)
    assert len(number) == 18
    assert number.startswith(region)
    assert number[6:14] == birth.strftime("%Y%m%d")
    assert number[14:17] == f"{seq:03d}"
    assert is_valid_id_number(number)


@pytest.mark.parametrize(
    ("region", "seq"), [("61010", 1), ("6101000", 1), ("61010a", 1), ("610100", -1), ("610100", 1000)]
)
def test_make_id_number_refuses_bad_parts(region: str, seq: int) -> None:
    with pytest.raises(ValueError):
        make_id_number(region, datetime.date(1990, 1, 1), seq)


@pytest.mark.parametrize(
    "date_digits",
    [
        "19490230",  # 30 February
        "19490229",  # 1949 is not a leap year
        "19491301",  # month 13
        "19490001",  # month 0
        "19490100",  # day 0
        "18991231",  # before 1900
        "00000000",
    ],
)
def test_id_numbers_with_impossible_birth_dates_are_invalid(date_digits: str) -> None:
    # Correct check digit, so only the date can be at fault.
    assert not is_valid_id_number(_with_check_digit(f"610102{date_digits}123"))


def test_a_leap_day_birth_date_is_valid() -> None:
    assert is_valid_id_number(_with_check_digit("61010220000229123"))


def test_id_numbers_born_in_the_future_are_invalid() -> None:
    number = make_id_number("610102", datetime.date(2030, 6, 1), 5)
    assert not is_valid_id_number(number, today=datetime.date(2030, 5, 31))
    assert is_valid_id_number(number, today=datetime.date(2030, 6, 1))


@pytest.mark.parametrize(
    "bad",
    [
        None,
        110105194912310020,
        "",
        KNOWN_GOOD_ID[:-1],
        KNOWN_GOOD_ID + "0",
        "11010519491231002Y",
        "X10105194912310020",
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width
    ],
)
def test_malformed_id_numbers_are_invalid(bad: object) -> None:
    assert not is_valid_id_number(bad)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("13812345678", "13812345678"),
        ("+8613812345678", "13812345678"),
        ("8613812345678", "13812345678"),
        ("+86138123456", "+86138123456"),  # too short after the prefix: untouched
        ("86123", "86123"),
    ],
)
def test_mobile_normalization_strips_only_a_country_code(raw: str, normalized: str) -> None:
    assert normalize_mobile(raw) == normalized


@pytest.mark.parametrize(
    "good", ["13812345678", "19912345678", "+8613812345678", "8615012345678"]
)
def test_mainland_mobiles_are_valid(good: str) -> None:
    assert is_valid_mobile(good)


@pytest.mark.parametrize(
    "bad",
    [
        "12812345678",  # second digit 2
        "1381234567",
        "138123456789",
        "23812345678",
        "138 1234 5678",
        "+85213812345678",
        "+86 13812345678",
        "",
        None,
        13812345678,
    ],
)
def test_other_phone_numbers_are_invalid(bad: object) -> None:
    assert not is_valid_mobile(bad)


def test_a_phone_is_masked_in_the_middle() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+8613812345678") == "138****5678"


@no_db
@given(mobiles)
def test_masked_phones_hide_the_middle_four_digits(phone: str) -> None:
    assert mask_phone(phone) == phone[:3] + "****" + phone[-4:]


def test_an_id_number_is_masked_except_the_ends() -> None:
    assert mask_id_number("610102199001011234") == "610***********1234"


@no_db
@given(region=regions6, birth=births, seq=seqs)
def test_masked_id_numbers_never_contain_the_birth_date_or_middle(
    region: str, birth: datetime.date, seq: int
) -> None:
    number = make_id_number(region, birth, seq)
    masked = mask_id_number(number)
    assert len(masked) == 18
    assert masked[3:14] == "*" * 11
    assert number[6:14] not in masked
    assert number[3:14] not in masked


@no_db
@given(st.text(max_size=40).filter(lambda s: len(s) != 18))
def test_strings_of_unexpected_length_show_at_most_two_characters(text: str) -> None:
    masked = mask_id_number(text)
    assert len(masked) == len(text)
    assert set(masked[:-2]) <= {"*"}
    if len(text) <= 4:
        assert masked == "*" * len(text)


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("", ""),
        ("张", "*"),
        ("张三", "张*"),
        ("张三明", "张*明"),
        ("欧阳小明", "欧**明"),
        ("买买提·艾力", "买****力"),
    ],
)
def test_names_are_masked_keeping_first_and_last_characters(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_the_pydantic_types_normalize_valid_input() -> None:
    person = Person(id_number=KNOWN_GOOD_ID[:-1] + "x", phone="+8613812345678")
    assert person.id_number == KNOWN_GOOD_ID
    assert person.phone == "13812345678"


@pytest.mark.parametrize("bad", ["11010519491231002Y", "", 110105194912310020, None])
def test_a_bad_id_number_gives_invalid_id_number(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        Person(id_number=bad, phone="13812345678")
    errors = info.value.errors()
    assert [e["type"] for e in errors] == ["invalid_id_number"]
    # The rejected value must not leak into the message (it may be logged).
    assert "1101051949" not in errors[0]["msg"]


@pytest.mark.parametrize("bad", ["12812345678", "", 13812345678, None])
def test_a_bad_phone_gives_invalid_phone(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        Person(id_number=KNOWN_GOOD_ID, phone=bad)
    assert [e["type"] for e in info.value.errors()] == ["invalid_phone"]


@pytest.fixture
def utc_host(monkeypatch):
    """The host's zone set to UTC for the test (the process's local time follows TZ)."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_person_born_today_in_china_is_valid_at_half_past_midnight_china_time_on_a_utc_host(
        utc_host, monkeypatch) -> None:
    """Issue 21: the birth-date bound is the day in China by the platform's clock, not the host's
    date. The clock is injected at 00:30 China time of the day after the host's UTC date: on this
    UTC host it is still 16:30 the day before, so the host's date.today() would refuse the person."""
    from shared import envelope

    born = datetime.date.today() + datetime.timedelta(days=1)    # the host's (UTC) date + 1
    moment = datetime.datetime.combine(born, datetime.time(0, 30), envelope.CHINA_TZ)
    assert moment.astimezone().date() == born - datetime.timedelta(days=1)   # the host is still on yesterday
    monkeypatch.setattr(envelope, "now", lambda: moment)
    number = make_id_number("610102", born, 7)

    assert envelope.china_today() == born
    assert is_valid_id_number(number)

    class Person(BaseModel):
        person_id: IdNumber
    assert Person(person_id=number).person_id == number
    # ...and a day later than China's today is still refused.
    assert not is_valid_id_number(make_id_number("610102", born + datetime.timedelta(days=1), 7))


def test_china_today_reads_any_instant_in_china_time() -> None:
    from shared.envelope import china_today

    utc = datetime.timezone.utc
    assert china_today(datetime.datetime(2026, 5, 21, 16, 0, tzinfo=utc)) == datetime.date(2026, 5, 22)
    assert china_today(datetime.datetime(2026, 5, 21, 15, 59, 59, tzinfo=utc)) == datetime.date(2026, 5, 21)


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_check_digit_is_the_weighted_sum_of_the_digits_mod_11(first17: str) -> None:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    assert check_digit(first17) == "10X98765432"[sum(int(d) * w for d, w in zip(first17, weights)) % 11]
