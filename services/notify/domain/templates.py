"""SMS templates are data (templates.json); this renders them and counts SMS segments."""

from __future__ import annotations

import json
import math
import string
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

# contract v2: an SMS names the institution by its registered name only; one notify does not know
# (yet) is named neutrally, and a long name is shortened so every template keeps its segments.
NEUTRAL_INSTITUTION = "定点医药机构"
INSTITUTION_CHARS = 20
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


def placeholders(template: str) -> list[str]:
    """The values a template needs, in the order its text uses them."""
    text = catalogue()["templates"][template]["text"]
    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


def template_params(template: str, values: dict[str, str]) -> dict[str, str]:
    """What a gateway's template needs (its TemplateParam): every placeholder, nothing else."""
    return {name: values[name] for name in placeholders(template)}


def institution_shown(registered_name: str | None) -> str:
    if not registered_name:
        return NEUTRAL_INSTITUTION
    return registered_name if len(registered_name) <= INSTITUTION_CHARS else registered_name[:INSTITUTION_CHARS - 1] + "…"
