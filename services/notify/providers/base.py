"""What every SMS provider offers the notify service: send one text to one phone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Outgoing:
    message_id: str       # our id, echoed by gateways in receipts (Aliyun OutId)
    phone: str            # full number: only ever handed to the provider, never logged
    template: str
    params: dict[str, str]
    text: str


@dataclass(frozen=True)
class Receipt:
    provider: str
    provider_message_id: str


class ProviderError(Exception):
    """The provider refused or could not be reached. `retryable` says whether trying again may help."""

    def __init__(self, reason: str, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class SmsProvider(Protocol):
    name: str

    async def send(self, sms: Outgoing) -> Receipt: ...

    async def close(self) -> None: ...
