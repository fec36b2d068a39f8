"""ASGI middleware at the edge: bodies over the limit are refused 413 before the API sees them,
and each request is logged and counted by its route template (never its raw path, which may
hold an ID number) with status and duration."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.api.problems import problem_response
from services.gateway.domain.problems import plain
from services.gateway.metrics import GatewayMetrics

MAX_BODY_BYTES = 64 * 1024
log = logging.getLogger("gateway.http")


class BodyLimit:
    """Reads the body first (at most `max_bytes`, so at most that much is ever held) and hands it
    on; more is refused 413 whether the length was declared or the body streamed. (Raising from
    inside the app's own read would be turned into a 400 by FastAPI's body parsing.)"""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._refuse(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._refuse(scope, receive, send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body, handed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = plain(413, "Content Too Large", f"A request body may hold at most {self.max_bytes} bytes.")
        await problem_response(problem)(scope, receive, send)


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics | None = None) -> None:
        self.app, self._metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began, status = time.monotonic(), [0]

        async def noted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            route, seconds = _template(scope), time.monotonic() - began
            log.info("%s %s %d %.1f ms", scope.get("method"), route, status[0], seconds * 1000)
            if self._metrics is not None:
                self._metrics.answered(scope.get("method", ""), route, status[0], seconds)


def _template(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "(no route)"
