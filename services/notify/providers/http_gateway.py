"""A real HTTP SMS gateway, in the shape of Aliyun's SendSms: JSON POST with PhoneNumbers,
SignName, TemplateCode, TemplateParam (a JSON string of every value the template needs) and
OutId; success is `Code == "OK"` and the gateway's id is `BizId`. Requests are signed with
HMAC-SHA256 over the body.

Gateways are not idempotent (platform-notes.md): what the adapter cannot tell apart from a
delivery is reported as ambiguous, and the caller never sends that message again."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import httpx

from services.notify.providers.base import Outgoing, ProviderError, Receipt

# Codes that say "not now" rather than "no": the message was not taken, another try may pass.
_RETRYABLE_CODES = ("Throttling", "ServiceUnavailable", "isv.BUSINESS_LIMIT_CONTROL")


class HttpSmsGateway:
    name = "http"

    def __init__(self, url: str, access_key_id: str, access_key_secret: str, sign_name: str,
                 timeout_seconds: float) -> None:
        self._url = url
        self._key_id = access_key_id
        self._secret = access_key_secret.encode()
        self._sign_name = sign_name
        self._client = httpx.AsyncClient(timeout=timeout_seconds)

    async def send_many(self, batch: list[Outgoing]) -> list[Receipt | Exception]:
        """One request each, all at once: the caller bounds the batch (NOTIFY_SEND_CONCURRENCY)."""
        return list(await asyncio.gather(*(self.send(sms) for sms in batch), return_exceptions=True))

    async def send(self, sms: Outgoing) -> Receipt:
        body = json.dumps({"PhoneNumbers": sms.phone, "SignName": self._sign_name, "TemplateCode": sms.template_code,
                           "TemplateParam": json.dumps(sms.params, ensure_ascii=False), "OutId": sms.message_id},
                          ensure_ascii=False).encode()
        signature = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        try:
            response = await self._client.post(self._url, content=body, headers={
                "Content-Type": "application/json", "X-Access-Key-Id": self._key_id, "X-Signature": signature})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection, so no request: nothing was sent.
            raise ProviderError(f"unreachable: {exc.__class__.__name__}") from exc
        except httpx.HTTPError as exc:
            # The request may have reached the gateway (a read timeout, a connection dropped while
            # waiting for the answer): it may have been delivered.
            raise ProviderError(f"no answer: {exc.__class__.__name__}", ambiguous=True) from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise ProviderError(f"HTTP {status}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            if status == 200:  # 200 says it was taken, but not what became of it
                raise ProviderError("unreadable answer, HTTP 200", ambiguous=True)
            raise ProviderError(f"HTTP {status}", retryable=False)
        code = str(answer.get("Code", ""))[:64]
        if status == 200 and code == "OK":
            return Receipt(self.name, str(answer.get("BizId", ""))[:128])
        raise ProviderError(code or f"HTTP {status}", retryable=code in _RETRYABLE_CODES)

    async def close(self) -> None:
        await self._client.aclose()
