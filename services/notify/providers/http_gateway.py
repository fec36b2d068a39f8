"""A real HTTP SMS gateway, in the shape of Aliyun's SendSms: JSON POST with PhoneNumbers,
SignName, TemplateCode, TemplateParam (a JSON string) and OutId; success is `Code == "OK"` and
the gateway's id is `BizId`. Requests are signed with HMAC-SHA256 over the body."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from services.notify.providers.base import Outgoing, ProviderError, Receipt


class HttpSmsGateway:
    name = "http"

    def __init__(self, url: str, access_key_id: str, access_key_secret: str, sign_name: str,
                 timeout_seconds: float) -> None:
        self._url = url
        self._key_id = access_key_id
        self._secret = access_key_secret.encode()
        self._sign_name = sign_name
        self._client = httpx.AsyncClient(timeout=timeout_seconds)

    async def send(self, sms: Outgoing) -> Receipt:
        body = json.dumps({"PhoneNumbers": sms.phone, "SignName": self._sign_name, "TemplateCode": sms.template,
                           "TemplateParam": json.dumps(sms.params, ensure_ascii=False), "OutId": sms.message_id},
                          ensure_ascii=False).encode()
        signature = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        try:
            response = await self._client.post(self._url, content=body, headers={
                "Content-Type": "application/json", "X-Access-Key-Id": self._key_id, "X-Signature": signature})
        except httpx.TimeoutException as exc:
            # The gateway may have delivered it: the caller records "unknown", never resends blindly.
            raise ProviderError(f"timeout: {exc.__class__.__name__}", retryable=False) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"unreachable: {exc.__class__.__name__}") from exc
        if response.status_code >= 500:
            raise ProviderError(f"gateway HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise ProviderError(f"unreadable answer, HTTP {response.status_code}") from exc
        if response.status_code != 200 or answer.get("Code") != "OK":
            code = str(answer.get("Code", response.status_code))
            raise ProviderError(f"gateway refused: {code}", retryable=code.startswith("isv.BUSINESS_LIMIT")
                                or code in ("Throttling", "ServiceUnavailable"))
        return Receipt(self.name, str(answer.get("BizId", "")))

    async def close(self) -> None:
        await self._client.aclose()
