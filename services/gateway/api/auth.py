"""The edge of /v1, before anything reads a request's body: the bearer token is checked against
the issuers the operator lists (shared.tokens), then, in one Redis call shared by every gateway
instance, whether the token or its clerk is revoked and whether its principal may make one more
look-up or command now (storage/admission.py). A request without a valid token is answered 401,
a revoked one 401, one over the rate 429 with Retry-After, each as problem+json, all before the
body is read; the token's principal is left in the request's state for the routes
(`principal`). Every /v1 answer, these included, says `Cache-Control: no-store` and
`X-Content-Type-Options: nosniff`: it is about someone, and never to be cached or sniffed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.tokens import InvalidToken, Principal, TrustedIssuers
from services.gateway.api.problems import problem_response
from services.gateway.domain.problems import plain
from services.gateway.storage.admission import AdmissionStore, Rate, Verdict

API_PREFIX = "/v1/"
# Called by the SMS provider, which holds no token: its body is signed instead (usecases.sms_reply).
UNAUTHENTICATED = frozenset({"/v1/sms/inbound"})
# Reads (and the person look-up, a POST only to keep the name out of URLs) against commands.
LOOKUP, COMMAND = "lookup", "command"
_LOOKUP_POSTS = frozenset({"/v1/person-lookups"})
V1_HEADERS = [(b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff")]
log = logging.getLogger("gateway.http")


def kind_of(method: str, path: str) -> str:
    """Which of a principal's buckets a request takes from."""
    return LOOKUP if method in ("GET", "HEAD") or path in _LOOKUP_POSTS else COMMAND


class Authenticate:
    def __init__(self, app: ASGIApp, issuers: TrustedIssuers, admission: AdmissionStore | None = None,
                 rates: Mapping[str, Rate] | None = None) -> None:
        self.app, self._issuers, self._admission, self._rates = app, issuers, admission, rates or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith(API_PREFIX):
            return await self.app(scope, receive, send)
        send = _with_v1_headers(send)
        if path in UNAUTHENTICATED:
            return await self.app(scope, receive, send)
        scheme, _, token = dict(scope.get("headers") or ()).get(b"authorization", b"").decode(
            "latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return await _unauthorized("A bearer token is required.", "Bearer")(scope, receive, send)
        try:
            principal = self._issuers.verify(token.strip())
        except InvalidToken as exc:
            log.debug("token refused: %s", exc)
            return await _unauthorized("The bearer token is invalid or expired.",
                                       'Bearer error="invalid_token"')(scope, receive, send)
        refusal = await self._admit(principal, kind_of(scope.get("method", "GET"), path))
        if refusal is not None:
            return await refusal(scope, receive, send)
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    async def _admit(self, principal: Principal, kind: str):
        """None when admitted, else the answer: 401 (revoked), 429 (over the rate), 503 (no Redis)."""
        if self._admission is None or kind not in self._rates:
            return None
        try:
            admission = await self._admission.admit(principal, kind, self._rates[kind])
        except (RedisError, OSError) as exc:
            log.warning("admission not decided: %s", exc.__class__.__name__)
            return problem_response(plain(503, "Service Unavailable", "The platform's Redis cannot be reached; "
                                                                      "retry."), {"Retry-After": "1"})
        if admission.verdict in (Verdict.TOKEN_REVOKED, Verdict.CLERK_REVOKED):
            what = "token" if admission.verdict is Verdict.TOKEN_REVOKED else "clerk's sign-on"
            return _unauthorized(f"The bearer token is revoked (its {what}).", 'Bearer error="invalid_token"')
        if admission.verdict is Verdict.LIMITED:
            seconds = admission.retry_after_seconds
            return problem_response(plain(429, "Too Many Requests", f"Too many {kind}s by this {_who(principal)}; "
                                          f"retry after {seconds} s.", retry_after=seconds),
                                    {"Retry-After": str(seconds)})
        return None


def _who(principal: Principal) -> str:
    return "person" if principal.role == "app" else "clerk"


def _with_v1_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {name.lower() for name, _ in message.get("headers", [])}
            message["headers"] = [*message.get("headers", []), *(h for h in V1_HEADERS if h[0] not in names)]
        await send(message)
    return sending


def _unauthorized(detail: str, challenge: str):
    return problem_response(plain(401, "Unauthorized", detail), {"WWW-Authenticate": challenge})


# Declares the scheme in the OpenAPI page ("Authorize" button); the check itself is Authenticate's.
_bearer = HTTPBearer(auto_error=False, description="A JWT (EdDSA or ES256) from an issuer listed in "
                                                    "GATEWAY_TOKEN_ISSUERS, aud `fma-gateway`: role app (sub = the "
                                                    "person's ID number) or window/supervisor (clerk_id, region).")


async def principal(request: Request,
                    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    return request.state.principal
