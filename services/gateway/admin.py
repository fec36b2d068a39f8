"""The gateway's operator port (ADMIN_HOST:ADMIN_PORT, loopback by default), its own uvicorn
server in the gateway's process: /metrics, the detailed /readyz and /healthz
(shared/observability.py), and the revocations (revocations.py):

    POST /admin/revocations {"jti": "..."} | {"clerk_id": "..."}  -> 202 {event_id, event_type, revoked_at}

The public port says only whether the gateway is ready (`public_routes`): what it is waiting
for, and what it has counted, are for operators."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shared.observability import Observability
from services.gateway import contract as c


def admin_routes(revoke: Callable[[c.AccessRevocation], Awaitable[dict[str, str]]]) -> list[Route]:
    async def revocations(request: Request) -> Response:
        try:
            asked = c.AccessRevocation.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"type": "about:blank", "title": "Unprocessable Content", "status": 422,
                                 "detail": "; ".join(e["msg"] for e in exc.errors(include_url=False))[:500]},
                                status_code=422, media_type="application/problem+json")
        return JSONResponse(await revoke(asked), status_code=202)

    return [Route("/admin/revocations", revocations, methods=["POST"])]


def public_routes(obs: Observability) -> list[Route]:
    """/healthz as every service has it, and a /readyz that says ready or not ready, nothing more."""
    healthz = next(r for r in obs.routes() if r.path == "/healthz")

    async def readyz(request: Request) -> Response:
        ready = all(check.ok for check in (await obs.readiness()).values())
        return JSONResponse({"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503)

    return [healthz, Route("/readyz", readyz, methods=["GET"])]
