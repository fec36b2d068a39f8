"""The shape every refusal shares: a contract reason code and the words a clerk or an HIS
vendor reads, in Chinese and English. Each service subclasses it with its own message table."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class Refusal(Exception):
    MESSAGES: ClassVar[dict] = {}

    def __init__(self, reason: StrEnum, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.reason = reason
        self.detail = detail

    @property
    def message_zh(self) -> str:
        return self.MESSAGES[self.reason][0]

    @property
    def message_en(self) -> str:
        text = self.MESSAGES[self.reason][1]
        return f"{text} ({self.detail})" if self.detail else text
