"""SMS templates are data (templates.json); this renders them and counts SMS segments."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

SEGMENT_CHARS = 70        # one SMS of Chinese text (UCS-2)
MULTIPART_CHARS = 67      # each part of a long SMS: the concatenation header takes 3 characters


@dataclass(frozen=True)
class Sms:
    template: str
    text: str
    urgent: bool

    @property
    def segments(self) -> int:
        return segments(self.text)


class TooLong(ValueError):
    """A rendered text that would need more segments than allowed."""


def segments(text: str) -> int:
    return 1 if len(text) <= SEGMENT_CHARS else math.ceil(len(text) / MULTIPART_CHARS)


@cache
def catalogue() -> dict:
    return json.loads(files("services.notify").joinpath("templates.json").read_text(encoding="utf-8"))


def is_urgent(template: str) -> bool:
    """Urgent texts (money moved) go at once, even in quiet hours."""
    return bool(catalogue()["templates"][template]["urgent"])


def render(template: str, values: dict[str, str]) -> Sms:
    spec = catalogue()
    entry = spec["templates"][template]
    sms = Sms(template, spec["signature"] + entry["text"].format(**values), bool(entry["urgent"]))
    if sms.segments > spec["max_segments"]:
        raise TooLong(f"{template} renders to {len(sms.text)} characters ({sms.segments} segments)")
    return sms
