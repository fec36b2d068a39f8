"""The HTTP API (/v1): thin routes that read the token, call one use case and translate its
answer into a status code. Rules live in the binding and settlement services; who may ask what
in domain/access.py; statuses in domain/problems.py."""

from dataclasses import replace
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from shared import envelope
from shared.identity import IdNumber
from shared.tokens import Principal
from services.gateway import contract as c
from services.gateway.api.auth import principal
from services.gateway.api.problems import PROBLEM_JSON, ProblemRaised, problem_response
from services.gateway.domain import paging
from services.gateway.domain.problems import own_refusal, refusal
from services.gateway.domain.views import bindings_view, disputes_view, me_view, outcome_view
from services.gateway.usecases import Decided, GatewayService, Pending


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    words = {400: "Malformed request", 401: "Missing, invalid or expired token",
             403: "The token may not reach this person or binding (or NOT_GRANTOR)",
             404: "Not found (BINDING_NOT_FOUND, UNKNOWN_REFERENCE, UNKNOWN_PERSON, or no outcome recorded)",
             409: "Conflicts with an existing binding or its state (DUPLICATE_BINDING, TOO_MANY_GRANTORS, "
                  "PAYMENT_ORDER_TAKEN, ALREADY_PAUSED, NOT_PAUSED, DISPUTE_OPEN, ALREADY_DISPUTED)",
             413: "Body over 64 KiB", 422: "Refused: invalid request or a binding rule (reason_code)",
             429: "Too many look-ups or commands by this principal: retry after Retry-After seconds",
             500: "A defect (PLATFORM_ERROR from the binding service, or the gateway's own)",
             502: "A service refused or garbled the gateway's request", 503: "Kafka unreachable",
             504: "No answer within GATEWAY_QUERY_TIMEOUT_MS"}
    return {s: {"model": c.ProblemDetails, "description": words[s], "content": {PROBLEM_JSON: {}}}
            for s in statuses}


_COMMAND_ERRORS = _problems(401, 403, 404, 409, 413, 422, 429, 500, 503)
_QUERY_ERRORS = _problems(401, 403, 422, 429, 502, 503, 504)
_PENDING = {202: {"model": c.CommandAccepted, "description": "Still pending"}}
PersonId = Annotated[IdNumber, Path(description="18-character resident ID number.",
                                    examples=["610102198503150018"])]
BindingIdPath = Annotated[c.BindingId, Path(description="The binding's id (BindingCreated.binding_id).",
                                            examples=["BND-4f6c0a7e9d1b2c3a4e5f6a7b"])]
Who = Annotated[Principal, Depends(principal)]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$",
    description="The client's key for this command (e.g. a UUID): a retry with the same key and the same "
                "request is the same command (same command_id, same answer) for GATEWAY_IDEMPOTENCY_TTL_HOURS; "
                "the same key with another request is 422 IDEMPOTENCY_KEY_REUSED.")]


def make_router(service: GatewayService) -> APIRouter:
    router = APIRouter(prefix="/v1")

    @router.post("/bindings", status_code=201, response_model=c.CommandOutcome, tags=["bindings"],
                 summary="Create a binding (办理家庭共济绑定)",
                 responses={202: {"model": c.CommandAccepted, "description": "No outcome within "
                                  "GATEWAY_COMMAND_TIMEOUT_MS; poll the Location"}, **_COMMAND_ERRORS})
    async def create_binding(form: c.BindingRequest, who: Who, idem: IdempotencyKey = None) -> Response:
        """The grantor lets the beneficiary pay from his or her personal account. An app token
        may create only as the grantor; the channel (app, or window with the clerk) comes from
        the token. 201 with the BindingCreated outcome; a refusal is problem+json with the
        contract's reason_code and the Chinese and English messages."""
        return _command_answer(await service.create_binding(who, form, idem), created=True)

    @router.post("/bindings/{binding_id}/revocation", response_model=c.CommandOutcome, tags=["bindings"],
                 summary="Revoke a binding (解除共济关系)",
                 responses={202: {"model": c.CommandAccepted, "description": "Still pending"}, **_COMMAND_ERRORS})
    async def revoke_binding(binding_id: BindingIdPath, form: c.RevocationRequest, who: Who,
                             idem: IdempotencyKey = None) -> Response:
        """Only the binding's grantor may end it (NOT_GRANTOR, 403, otherwise): an app token
        asks as its own person; a window names the grantor in `requested_by`."""
        return _command_answer(await service.revoke_binding(who, binding_id, form, idem))

    @router.put("/bindings/{binding_id}/payment-order", response_model=c.CommandOutcome, tags=["bindings"],
                summary="Change a binding's payment order (调整支付顺位)",
                responses={202: {"model": c.CommandAccepted, "description": "Still pending"}, **_COMMAND_ERRORS})
    async def change_payment_order(binding_id: BindingIdPath, form: c.PaymentOrderRequest, who: Who,
                                   idem: IdempotencyKey = None) -> Response:
        """Moving to the order the beneficiary's other grantor holds swaps the two. An app token
        asks as its own person, who must be the binding's grantor."""
        return _command_answer(await service.change_payment_order(who, binding_id, form, idem))

    @router.put("/bindings/{binding_id}/limit", response_model=c.CommandOutcome, tags=["bindings"],
                summary="Set or clear a binding's monthly limit (设置共济限额)",
                responses={**_PENDING, **_COMMAND_ERRORS})
    async def set_limit(binding_id: BindingIdPath, form: c.LimitRequest, who: Who,
                       idem: IdempotencyKey = None) -> Response:
        """How much the grantor's account may pay for this beneficiary in a calendar month (China
        time), checked in the same step that debits; `null` clears it, `"0.00"` lets it pay
        nothing. 200 with the GrantorLimitSet outcome (the limit and the one it replaced);
        INVALID_LIMIT (422) outside 0.00 to 1000000.00; NOT_GRANTOR (403) for anyone but the grantor."""
        return _command_answer(await service.set_limit(who, binding_id, form, idem))

    @router.post("/bindings/{binding_id}/pause", response_model=c.CommandOutcome, tags=["bindings"],
                 summary="Pause a binding (暂停共济)", responses={**_PENDING, **_COMMAND_ERRORS})
    async def pause_binding(binding_id: BindingIdPath, form: c.GrantorRequest, who: Who,
                           idem: IdempotencyKey = None) -> Response:
        """The binding pays nothing until resumed (the waterfall goes on to the next grantor or
        cash); it is not revoked. ALREADY_PAUSED (409) when it is paused."""
        return _command_answer(await service.pause_binding(who, binding_id, form, idem))

    @router.post("/bindings/{binding_id}/resume", response_model=c.CommandOutcome, tags=["bindings"],
                 summary="Resume a paused binding (恢复共济)", responses={**_PENDING, **_COMMAND_ERRORS})
    async def resume_binding(binding_id: BindingIdPath, form: c.GrantorRequest, who: Who,
                            idem: IdempotencyKey = None) -> Response:
        """NOT_PAUSED (409) when it is not paused; DISPUTE_OPEN (409) while a dispute of one of
        its payments awaits the bureau's decision."""
        return _command_answer(await service.resume_binding(who, binding_id, form, idem))

    @router.post("/disputes", status_code=201, response_model=c.CommandOutcome, tags=["disputes"],
                 summary="Dispute a payment: not authorised by me (非本人授权)",
                 responses={**_PENDING, **_COMMAND_ERRORS})
    async def dispute_payment(form: c.DisputeRequest, who: Who, idem: IdempotencyKey = None) -> Response:
        """The grantor names a payment by the reference its SMS printed. The binding that paid
        is paused at once and the bureau is told (FraudSuspected); the dispute is then decided
        by the bureau (GET /v1/persons/{person_id}/disputes). An app token disputes as its own
        person; a window names the grantor in `grantor_id`. 201 with DisputeOpened;
        UNKNOWN_REFERENCE (404) for no such payment from this grantor in the last 90 days;
        ALREADY_DISPUTED (409)."""
        return _command_answer(await service.dispute_payment(who, form, idem), created=True)

    @router.get("/persons/{person_id}/disputes", response_model=c.DisputesView, tags=["disputes"],
                summary="A grantor's disputes (非本人授权争议)", responses=_QUERY_ERRORS)
    async def disputes_of(person_id: PersonId, who: Who) -> Any:
        """Each dispute the person opened as grantor, open or decided (upheld: the payment is
        refunded through the institution; dismissed: the grantor may resume the binding)."""
        return disputes_view(await service.disputes_of(who, person_id))

    @router.post("/sms/inbound", status_code=202, response_model=c.SmsAccepted, tags=["sms"],
                 summary="The SMS provider's uplink callback (上行短信)",
                 responses=_problems(401, 404, 413, 422, 503),
                 openapi_extra={"security": [], "requestBody": {"required": True, "content": {
                     "application/json": {"schema": c.SmsInbound.model_json_schema()}}}})
    async def sms_inbound(request: Request, x_signature: Annotated[str | None, Header(
            alias="X-Signature", description="Hex HMAC-SHA256 of the raw body under GATEWAY_SMS_UPLINK_KEY.")
                          ] = None) -> Any:
        """A grantor's reply to a platform SMS (e.g. "BF 7K2P9QXM" disputes that payment), as
        the provider calls it in: no bearer token, the body (at most 4 KiB) signed instead.
        Put on sms.uplink for notify; 202 once the broker has it. 401 for a missing or wrong
        signature; 404 while GATEWAY_SMS_UPLINK_KEY is not set."""
        try:
            reply = await service.sms_reply(await request.body(), x_signature)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None
        return JSONResponse({"message_id": reply.message_id, "status": "accepted"}, status_code=202)

    @router.get("/persons/{person_id}/bindings", response_model=c.BindingsView, tags=["queries"],
                summary="A person's bindings, as grantor (授权者) and as beneficiary (使用者)",
                responses=_QUERY_ERRORS)
    async def bindings_of(person_id: PersonId, who: Who,
                          role: Annotated[Literal["grantor", "beneficiary"] | None,
                                          Query(description="Only this role; both by default.")] = None) -> Any:
        return bindings_view(await service.bindings_of(who, person_id, role))

    @router.get("/grantors/{person_id}/consumption", response_model=c.ConsumptionView, tags=["queries"],
                summary="A grantor's family mutual-aid spending (家庭共济消费查询)", responses=_QUERY_ERRORS)
    async def consumption_of(
            person_id: PersonId, who: Who,
            date_from: Annotated[date | None, Query(alias="from", description="First day (YYYY-MM-DD); "
                                                    "default: 29 days before `to`.")] = None,
            date_to: Annotated[date | None, Query(alias="to", description="Last day; default: today (China time) "
                                                  "or 29 days after `from`.")] = None,
            page: Annotated[int, Query(ge=1, le=10_000)] = 1,
            page_size: Annotated[int, Query(ge=1, le=paging.MAX_PAGE_SIZE)] = paging.DEFAULT_PAGE_SIZE) -> Any:
        """Every payment from the grantor's account in the range (at most 366 days), newest
        first, one page at a time; totals cover the whole range."""
        try:
            start, end = paging.date_range(date_from, date_to, envelope.china_today())
        except paging.BadRange as exc:
            raise ProblemRaised(own_refusal("INVALID_DATES", str(exc))) from None
        listed = await service.consumption_of(who, person_id, start, end)
        page_view = paging.page_of(paging.payments(listed), page, page_size)
        return {"grantor_id": listed.get("grantor_id"), "from": start, "to": end, **paging.totals(listed),
                "page": page, "page_size": page_size, "total_items": page_view.total_items,
                "total_pages": page_view.total_pages, "items": page_view.items}

    @router.get("/commands/{command_id}", response_model=c.CommandOutcome, tags=["bindings"],
                summary="The outcome of an earlier command", responses=_problems(401, 403, 404, 422, 502, 503, 504))
    async def command_outcome(command_id: Annotated[c.CommandId, Path(examples=[
            "2f0d6c1e-8b7a-4c55-9a51-0d2c9b1e7f10"])], who: Who) -> Any:
        """What binding.events carried for the command (a refusal included, as status
        `rejected`); 404 while none is recorded: the command is unknown or not decided yet."""
        decided = await service.command_outcome(who, command_id)
        return outcome_view(decided.event_type, decided.payload)

    @router.get("/me", response_model=c.MeView, tags=["window"], summary="Who the token says is asking",
                responses=_problems(401))
    async def me(who: Who) -> Any:
        """The token's role, and the clerk and region (window, supervisor) or the person (app,
        masked). The console's sign-in asks it."""
        return me_view(who)

    @router.post("/person-lookups", response_model=c.LookupView, tags=["window"],
                 summary="Look up an insured person (查询参保人)",
                 responses=_problems(401, 403, 404, 413, 422, 502, 503, 504))
    async def person_lookup(form: c.LookupRequest, who: Who) -> Any:
        """Registered or not, region, scheme; with the name printed on the ID card, whether it
        is the registered one (`name_verified`) and then, for an employee, the personal account's
        balance. The name is compared by the binding service's keyed digest and never stored,
        logged or echoed. A window or supervisor looks up persons of the clerk's region and the
        beneficiaries bound with its grantors (audited as `lookup`; anyone else 403, audited
        `forbidden`); an app token only its own person. 404 UNKNOWN_PERSON when no bureau
        registered the person."""
        return await service.lookup(who, form)

    @router.get("/audit", response_model=c.AuditView, tags=["window"],
                summary="The window clerks' audit list (操作记录)", responses=_problems(401, 403, 422, 503, 504))
    async def audit_list(
            who: Who,
            date_from: Annotated[date | None, Query(alias="from", description="First day (YYYY-MM-DD, China "
                                                    "time); default: 29 days before `to`.")] = None,
            date_to: Annotated[date | None, Query(alias="to", description="Last day; default: today (China time) "
                                                  "or 29 days after `from`.")] = None,
            clerk_id: Annotated[str | None, Query(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$",
                                                  description="One clerk only (a window token: only its own).")
                                ] = None,
            page: Annotated[int, Query(ge=1, le=10_000)] = 1,
            page_size: Annotated[int, Query(ge=1, le=paging.MAX_PAGE_SIZE)] = paging.DEFAULT_PAGE_SIZE) -> Any:
        """Window actions, newest first, over at most 366 days: a `window` token sees its own
        clerk's, a `supervisor` token every clerk's of its region and other regions' clerks'
        actions about its region's persons (`subject_region`); an app token none (403).
        A command's outcome is accepted, refused or pending (no outcome within the wait)."""
        try:
            start, end = paging.date_range(date_from, date_to, envelope.china_today())
        except paging.BadRange as exc:
            raise ProblemRaised(own_refusal("INVALID_DATES", str(exc))) from None
        return await service.audit_list(who, clerk_id, start, end, page, page_size)

    return router


def _command_answer(result: Decided | Pending, created: bool = False) -> Response:
    if isinstance(result, Pending):
        location = f"/v1/commands/{result.command_id}"
        return JSONResponse(c.CommandAccepted(command_id=result.command_id, location=location).model_dump(),
                            status_code=202, headers={"Location": location})
    if result.rejected:
        p = result.payload
        problem = refusal(str(p.get("reason_code")), str(p.get("message_zh", "")), str(p.get("message_en", "")))
        return problem_response(replace(problem, extra={"command_id": p.get("command_id")}))
    view = outcome_view(result.event_type, result.payload)
    return JSONResponse(view, status_code=201 if created else 200,
                        headers={"Location": f"/v1/commands/{view['command_id']}"} if created else None)

