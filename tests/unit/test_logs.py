"""Log lines: an ID number or a mobile number that slipped into a message is masked on its way
out, in text and in JSON lines alike; JSON lines are one object per line with the fields an
operator filters on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from shared.identity import make_id_number
from shared.logs import JsonLines, MaskPersonalData, configure_logging, mask_personal_data

ID = "610102199001011234"


@pytest.mark.parametrize("text,masked", [
    (f"charge for {ID} refused", "charge for 610***********1234 refused"),
    ("person 61010219900101123x", "person 610***********123X"),
    (f"id={ID},", "id=610***********1234,"),
    (f"{ID}的账户", "610***********1234的账户"),
    ("call 13812345678 now", "call 138****5678 now"),
    ("phone:+8613812345678", "phone:138****5678"),
    ("手机13812345678已通知", "手机138****5678已通知"),
    (f"{ID} and 13912345678", "610***********1234 and 139****5678"),
])
def test_id_numbers_and_mobiles_are_masked(text, masked):
    assert mask_personal_data(text) == masked


@pytest.mark.parametrize("text", [
    "offset 1732600000000 of his.charges",       # a 13-digit timestamp is no phone
    "12812345678",                               # 12x is not a mainland mobile prefix
    "C6101021990010112345",                      # part of a longer id
    "BND-6101021990010112346abc",                # digits inside a hex-ish id
    "uuid 5d1b7f0e-93a4-5c1e-a2f0-6100a0005000",
    "amount 1381234567 fen",                     # ten digits
    "610***********1234 and 138****5678",        # already masked
])
def test_other_numbers_are_left_alone(text):
    assert mask_personal_data(text) == text


def test_a_generated_id_number_is_masked():
    from datetime import date
    person = make_id_number("610300", date(1985, 6, 30), 17)
    assert person not in mask_personal_data(f"registered {person}")


def _record(msg: str, *args, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    return logging.LogRecord("settlement", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_the_filter_masks_arguments_merged_into_the_message():
    record = _record("charge %s for %s", "C-1", ID)
    assert MaskPersonalData().filter(record) is True
    assert record.getMessage() == "charge C-1 for 610***********1234"


def test_the_filter_masks_a_traceback():
    try:
        raise ValueError(f"no phone 13812345678 for {ID}")
    except ValueError as exc:
        record = _record("failed", exc=exc)
    MaskPersonalData().filter(record)
    assert "ValueError: no phone 138****5678 for 610***********1234" in record.exc_text
    assert ID not in logging.Formatter().format(record)


def test_a_json_line_has_time_level_logger_service_message_and_exc():
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        record = _record("charge %s refused", "C-1", exc=exc)
    line = JsonLines("settlement").format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert set(parsed) == {"time", "level", "logger", "service", "message", "exc"}
    assert parsed["level"] == "WARNING" and parsed["logger"] == "settlement" and parsed["service"] == "settlement"
    assert parsed["message"] == "charge C-1 refused"
    assert parsed["time"].endswith("+00:00")
    assert parsed["exc"].startswith("Traceback") and "RuntimeError: boom" in parsed["exc"]


def test_a_json_line_without_exception_has_no_exc_and_keeps_chinese_readable():
    parsed = json.loads(JsonLines("notify").format(_record("短信已发送")))
    assert "exc" not in parsed
    assert parsed["message"] == "短信已发送"


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        root.removeHandler(h)
        h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_go_to_the_log_file_masked(tmp_path: Path, restore_logging):
    path = tmp_path / "settlement.log"
    configure_logging("INFO", service="settlement", fmt="json", file=path)
    logging.getLogger("settlement").info("charge for %s settled", ID)
    logging.getLogger("settlement").debug("not at INFO")
    logging.getLogger().handlers[0].flush()
    [line] = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["message"] == "charge for 610***********1234 settled"


def test_text_lines_are_masked_too(tmp_path: Path, restore_logging):
    path = tmp_path / "binding.log"
    configure_logging("INFO", service="binding", file=path)
    logging.getLogger("binding").warning("beneficiary %s has phone %s", ID, "13912345678")
    logging.getLogger().handlers[0].flush()
    text = path.read_text(encoding="utf-8")
    assert "WARNING binding beneficiary 610***********1234 has phone 139****5678" in text


def test_an_unknown_log_format_is_refused(restore_logging):
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        configure_logging("INFO", fmt="xml")
