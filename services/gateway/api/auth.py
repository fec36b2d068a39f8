"""Bearer authentication at the edge of /v1: a request without a valid token is answered 401
before anything else reads it (its body included), and the token's principal is left in the
request's state for the routes (`principal`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.tokens import InvalidToken, Principal, verify
from services.gateway.api.problems import problem_response
from services.gateway.domain.problems import plain

API_PREFIX = "/v1/"
# Called by the SMS provider, which holds no token: its body is signed instead (usecases.sms_reply).
UNAUTHENTICATED = frozenset({"/v1/sms/inbound"})


class Authenticate:
    def __init__(self, app: ASGIApp, key: str) -> None:
        self.app, self._key = app, key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(API_PREFIX) and path not in UNAUTHENTICATED:
            scheme, _, token = dict(scope.get("headers") or ()).get(b"authorization", b"").decode(
                "latin-1").partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return await _unauthorized("A bearer token is required.", "Bearer")(scope, receive, send)
            try:
                principal = verify(self._key, token.strip())
            except InvalidToken:
                return await _unauthorized("The bearer token is invalid or expired.",
                                           'Bearer error="invalid_token"')(scope, receive, send)
            scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _unauthorized(detail: str, challenge: str):
    return problem_response(plain(401, "Unauthorized", detail), {"WWW-Authenticate": challenge})


# Declares the scheme in the OpenAPI page ("Authorize" button); the check itself is Authenticate's.
_bearer = HTTPBearer(auto_error=False, description="A JWT (HS256) minted with GATEWAY_JWT_KEY: role app "
                                                    "(sub = the person's ID number) or window/supervisor "
                                                    "(clerk_id, region).")


async def principal(request: Request,
                    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    return request.state.principal
