"""Builds the HTTP gateway: a FastAPI app and the platform's Kafka broker in one process
(faststream-fastapi's FastStreamAPI starts and stops the broker with the app). Nothing connects
at import time."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from faststream_fastapi import FastStreamAPI

from shared import envelope
from shared.kafka import ensure_topics, make_broker
from shared.logs import configure_logging
from shared.observability import Observability
from shared.topics import BINDING_COMMANDS, GATEWAY_AUDIT, GATEWAY_REVOCATIONS, SETTLEMENT_QUERIES, SMS_UPLINK
from shared.tokens import TrustedIssuers
from services.gateway import console, docs_page, revocations
from services.gateway.admin import admin_routes, public_routes
from services.gateway.api import problems
from services.gateway.api.auth import COMMAND, LOOKUP, Authenticate
from services.gateway.api.limits import AccessLog, BodyLimit
from services.gateway.api.routes import make_router
from services.gateway.config import GatewaySettings
from services.gateway.handlers.subscribers import reading_from_now, register, register_audit, register_revocations
from services.gateway.metrics import GatewayMetrics
from services.gateway.replies import PendingReplies, Requests
from services.gateway.storage.admission import AdmissionStore, Rate
from services.gateway.storage.audit import AuditStore
from services.gateway.storage.idempotency import IdempotencyStore
from services.gateway.usecases import AuditProjection, GatewayService

DESCRIPTION = """The platform's HTTP API for the app's back end and the service windows
(跨统筹区职工医保个人账户家庭共济). Bearer JWTs (EdDSA or ES256) from the issuers the operator lists
(GATEWAY_TOKEN_ISSUERS), audience `fma-gateway`: role `app` (the person in `sub` only) or
`window` / `supervisor` (a clerk of a region, who acts for grantors insured there and looks up
that region's persons and the beneficiaries bound with them; every action is audited on
`gateway.audit` and listed by GET /v1/audit). Look-ups and commands are rate limited per
principal (429 with Retry-After); a command's `Idempotency-Key` makes a retry the same command.
The SMS provider's uplink (POST /v1/sms/inbound) is signed with a key of its own instead
(HMAC-SHA256, header `X-Signature`). Errors are `application/problem+json` (RFC 9457) with the
contract's `reason_code` and its Chinese and English messages."""
TITLE = "Family mutual aid API (家庭共济)"


def http_api(settings: GatewaySettings, service: GatewayService, metrics: GatewayMetrics | None = None,
             issuers: TrustedIssuers | None = None, admission: AdmissionStore | None = None) -> FastAPI:
    """The FastAPI app alone: routes, problem+json everywhere, and the edge (access log, then
    authentication with revocation and rate limit, then the body limit: outermost first, so a
    request without a valid token, or over its principal's rate, is refused before its body is read)."""
    api = FastAPI(title=TITLE, version="1", description=DESCRIPTION, docs_url=None, redoc_url=None)
    problems.install(api)
    api.include_router(make_router(service))
    api.include_router(console.router())  # the service-window console (经办窗口), static files
    api.include_router(docs_page.router(TITLE))  # /docs, Swagger UI served from here
    rates = {LOOKUP: Rate(settings.gateway_lookup_rate_per_minute, settings.gateway_lookup_burst),
             COMMAND: Rate(settings.gateway_command_rate_per_minute, settings.gateway_command_burst)}
    api.add_middleware(BodyLimit)
    api.add_middleware(Authenticate, issuers=issuers or settings.trusted_issuers(), admission=admission, rates=rates)
    api.add_middleware(AccessLog, metrics=metrics)
    return api


def create_app(settings: GatewaySettings | None = None) -> FastStreamAPI:
    settings = settings or GatewaySettings()
    configure_logging(settings.log_level, service="gateway", fmt=settings.log_format, file=settings.log_file)
    settings.apply_clock()  # CLOCK_OFFSET_SECONDS: zero but in tests and drills
    log = logging.getLogger("gateway")
    obs = Observability("gateway")
    broker = make_broker(settings, client_id="gateway", middlewares=[obs.kafka_middleware])
    redis = settings.redis()
    issuers = settings.trusted_issuers()  # a file not of the documented shape stops the start here
    audit = AuditStore(redis, ttl_seconds=settings.gateway_audit_ttl_days * 86_400, clock=envelope.now)
    admission = AdmissionStore(redis, revocation_ttl_seconds=issuers.longest_lifetime_seconds)
    pending = PendingReplies()
    reply_subscriber = register(broker, pending, settings)
    gate = register_audit(broker, AuditProjection(audit), settings)
    register_revocations(broker, revocations.RevocationProjection(admission), settings)
    # The gateway signs what it writes on partner topics; without its key it does not start.
    service = GatewayService(Requests(broker, pending, settings.reply_topic, settings.signing_key()), broker,
                             command_timeout=settings.gateway_command_timeout_ms / 1000,
                             query_timeout=settings.gateway_query_timeout_ms / 1000, audit=audit, gate=gate,
                             uplink_key=settings.uplink_key,
                             idempotency=IdempotencyStore(redis, settings.gateway_idempotency_ttl_hours * 3600))

    api = http_api(settings, service, GatewayMetrics(obs.registry), issuers, admission)
    # Public: /healthz and a /readyz that says only ready or not. The operator port has the
    # detail (broker and Redis answer, reply, audit and revocation consumers assigned, the audit
    # projection caught up), /metrics and the revocations.
    obs.watch(broker, redis=redis, gate=gate)
    api.router.routes.extend(public_routes(obs))

    async def connect(_: object) -> None:
        admin_port = await obs.serve(settings.admin_host, settings.admin_port,
                                     admin_routes(lambda asked: revocations.revoke(broker, asked)))
        log.info("operator port: /metrics /readyz /admin/revocations on http://%s:%d", settings.admin_host, admin_port)
        await redis.ping()
        await audit.load_functions()
        await admission.load_functions()
        await ensure_topics(settings, [GATEWAY_AUDIT, GATEWAY_REVOCATIONS, BINDING_COMMANDS, SETTLEMENT_QUERIES,
                                       SMS_UPLINK])
        # A reply is of use for seconds: its topic keeps a day, not the platform's retention.
        await ensure_topics(settings.model_copy(update={"kafka_retention_days": 1}), [settings.reply_topic])
        await broker.start()
        gate.close()
        await reading_from_now(reply_subscriber)
        log.info("reading replies on %s", settings.reply_topic)

    async def close() -> None:
        await obs.close()
        await gate.stop()
        await redis.aclose()

    api.router.on_shutdown.append(close)  # run by FastAPI's lifespan, after the broker stopped
    # safe_connection: a broker that cannot be started fails the start (the default only warns).
    app = FastStreamAPI(broker, application=api, safe_connection=True, connection_hook=connect)
    # __main__ logs "service ready" once the port listens and this returns (the audit projection read).
    app.caught_up = gate.caught_up  # type: ignore[attr-defined]
    return app
