"""What every SMS provider offers the notify service: send texts to phones, a batch at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Outgoing:
    message_id: str       # our id, echoed by gateways in receipts (Aliyun OutId)
    phone: str            # full number: only ever handed to the provider, never logged
    template: str         # our template's name
    template_code: str    # the gateway's code for it (SMS_TEMPLATE_CODES)
    params: dict[str, str]  # every value the template needs (TemplateParam), names already masked
    text: str             # the rendered text, for providers that take text (the local sink)


@dataclass(frozen=True)
class Receipt:
    provider: str
    provider_message_id: str


class ProviderError(Exception):
    """The provider did not send it, or cannot say whether it did.

    `retryable`: it surely did not send it and trying again may help. `ambiguous`: it may have
    sent it (a timeout after the request went out, an unreadable answer); never sent again.
    """

    def __init__(self, reason: str, retryable: bool = True, ambiguous: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable and not ambiguous
        self.ambiguous = ambiguous


class SmsProvider(Protocol):
    name: str

    async def send_many(self, batch: list[Outgoing]) -> list[Receipt | Exception]:
        """Send every SMS of the batch at once; each answer in the batch's order: a Receipt, a
        ProviderError, or the defect that sending it raised (that message's own)."""
        ...

    async def close(self) -> None: ...
