"""Logging set-up for every service: one line per record, as text or as a JSON object, to stderr
or to a file. Log lines carry masked identifiers only (shared.identity.mask_*); no full ID
number, name or phone is ever logged, and nothing a partner sent is written raw (`shown`). Should
an ID number or a mobile number slip into a message or a traceback all the same, `MaskPersonalData`
masks it on its way out."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shared.identity import mask_id_number, mask_phone

# ASCII boundaries, not \b: a CJK character is a word character to `re`, and an ID number right
# before "的" must still be found. Letters around a digit run (a hex id) mean it is something else.
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<![0-9A-Za-z+])(?:\+?86)?1[3-9][0-9]{9}(?![0-9A-Za-z])")


def mask_personal_data(text: str) -> str:
    """Every 18-character ID number and every mainland mobile number in `text`, masked
    (610***********1234, 138****5678); ID numbers first, so no digit run of one is read as a phone."""
    if len(text) < 11:
        return text
    text = _ID_NUMBER.sub(lambda m: mask_id_number(m.group().upper()), text)
    return _MOBILE.sub(lambda m: mask_phone(m.group()), text)


class MaskPersonalData(logging.Filter):
    """On a handler: the record's message (arguments merged in) and its traceback text, masked."""

    _plain = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_personal_data(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._plain.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_personal_data(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_personal_data(record.stack_info)
        return True


class JsonLines(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601, milliseconds), level, logger, service,
    message, and `exc` (the traceback) when there is one."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "service": self._service,
            "message": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False)


def configure_logging(level: str, *, service: str = "", fmt: str = "text", file: str | Path | None = None) -> None:
    """The root logger writes to stderr, or appends to `file` when one is given, as `fmt`
    (`text` or `json`, LOG_FORMAT); every line goes through `MaskPersonalData`."""
    if fmt not in ("text", "json"):
        raise ValueError(f"LOG_FORMAT must be text or json, not {fmt!r}")
    handler: logging.Handler = (logging.FileHandler(file, encoding="utf-8") if file
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(JsonLines(service) if fmt == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(MaskPersonalData())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def shown(value: Any, limit: int = 64) -> str:
    """A partner-sent value fit for a log line: bounded, quoted, control characters escaped, so
    an id can neither forge a log line nor flood one."""
    text = value if isinstance(value, str) else repr(value)
    return json.dumps(text[:limit] + ("…" if len(text) > limit else ""), ensure_ascii=False)
