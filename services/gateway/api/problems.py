"""Every error the API answers is application/problem+json (RFC 9457): FastAPI's own 404, 405
and request validation errors included. Validation errors never echo the values sent (they
may be ID numbers)."""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aiokafka.errors import KafkaError

from services.gateway.domain.access import Forbidden, RequesterMissing
from services.gateway.domain.problems import Problem, own_refusal, plain, reason_for_errors
from services.gateway.replies import UnreadableReply
from services.gateway.domain.uplink import MAX_BODY_BYTES as UPLINK_MAX_BYTES
from services.gateway.usecases import (IdempotencyKeyReused, NotAnswered, OutcomeUnknown, PersonUnknown,
                                       RefusedUpstream, UplinkClosed, UplinkTooLarge, UplinkUnsigned)

PROBLEM_JSON = "application/problem+json"


class ProblemRaised(Exception):
    """Raised by a route to answer with a problem."""

    def __init__(self, problem: Problem, headers: dict[str, str] | None = None) -> None:
        super().__init__(problem.detail)
        self.problem, self.headers = problem, headers or {}


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(problem.body(), status_code=problem.status, media_type=PROBLEM_JSON, headers=headers)


def install(app: FastAPI) -> None:
    _document_problems_as_problem_json(app)
    @app.exception_handler(ProblemRaised)
    async def raised(_: Request, exc: ProblemRaised) -> JSONResponse:
        return problem_response(exc.problem, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(part) for part in e.get("loc", ())], "type": e.get("type", ""),
                   "msg": str(e.get("msg", ""))[:200]} for e in exc.errors()[:20]]
        where = "; ".join(f"{'.'.join(e['loc'])}: {e['type']}" for e in errors[:5])
        reason = reason_for_errors([e["type"] for e in errors])
        return problem_response(own_refusal(reason, where, errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem_response(plain(exc.status_code, title, detail), getattr(exc, "headers", None))

    # What the use cases raise, as problems.
    answers = {
        Forbidden: lambda e: plain(403, "Forbidden", str(e)),
        RequesterMissing: lambda e: own_refusal("INVALID_COMMAND", str(e)),
        NotAnswered: lambda e: plain(504, "Gateway Timeout", f"No answer to {e} in time; retry later."),
        RefusedUpstream: lambda e: plain(502, "Bad Gateway", f"The service refused the gateway's query ({e})."),
        UnreadableReply: lambda e: plain(502, "Bad Gateway", "A service answered with an unreadable reply."),
        OutcomeUnknown: lambda e: plain(404, "Not Found", "No outcome is recorded for this command: it is "
                                                          "unknown, or not decided yet (retry shortly)."),
        PersonUnknown: lambda e: own_refusal("UNKNOWN_PERSON", status=404),
        IdempotencyKeyReused: lambda e: own_refusal("IDEMPOTENCY_KEY_REUSED"),
        UplinkClosed: lambda e: plain(404, "Not Found", "Not Found"),
        UplinkTooLarge: lambda e: plain(413, "Content Too Large", f"An uplink body holds at most {UPLINK_MAX_BYTES} "
                                                                  "bytes."),
        UplinkUnsigned: lambda e: plain(401, "Unauthorized", "X-Signature is not the body's HMAC-SHA256 under the "
                                                             "uplink key."),
        KafkaError: lambda e: plain(503, "Service Unavailable", "The platform's broker cannot be reached; retry."),
    }
    for kind, to_problem in answers.items():
        app.add_exception_handler(kind, _handler(to_problem))

    @app.exception_handler(Exception)
    async def defect(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(plain(500, "Internal Server Error", "The gateway failed to handle this request."))


def _handler(to_problem):
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return problem_response(to_problem(exc))
    return handle


def _document_problems_as_problem_json(app: FastAPI) -> None:
    """The OpenAPI page shows each error response under application/problem+json, the type it
    is sent as (a route's `responses` model would otherwise be listed as application/json)."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            for item in generate()["paths"].values():
                for operation in item.values():
                    for response in operation.get("responses", {}).values():
                        content = response.get("content", {})
                        if PROBLEM_JSON in content and "application/json" in content:
                            content[PROBLEM_JSON] = content.pop("application/json")
        return app.openapi_schema

    app.openapi = openapi
