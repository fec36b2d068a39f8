"""Settings of the HTTP gateway (environment variables, listed in the README)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from shared.settings import ServiceSettings
from shared.tokens import DEFAULT_CLOCK_SKEW_SECONDS, MAX_CLOCK_SKEW_SECONDS, TrustedIssuers

# The reply topic is `reply.gateway.<instance>`; contract.md allows `reply.` and at most 100 of
# [A-Za-z0-9._-], so the instance name keeps to that alphabet and leaves room for `gateway.`.
_INSTANCE_ALPHABET = re.compile(r"[^A-Za-z0-9._-]")
MAX_INSTANCE_LENGTH = 100 - len("gateway.")
MIN_UPLINK_KEY_BYTES = 16


def default_instance() -> str:
    """hostname-pid: two gateways on one host, or one restarted, never read each other's replies."""
    return _INSTANCE_ALPHABET.sub("-", f"{socket.gethostname()}-{os.getpid()}")[-MAX_INSTANCE_LENGTH:]


class GatewaySettings(ServiceSettings):
    gateway_token_issuers: Path = Field(
        description="JSON file of the token issuers the gateway believes (shared/tokens.py, docs/operations.md): "
        '{"issuers": [{"iss", "jwks": {"keys": [JWK, ...]}, "roles", "max_lifetime_seconds"}, ...]}, public '
        "keys only (Ed25519 or P-256). Required; read once at start.")
    gateway_token_clock_skew_seconds: int = Field(
        DEFAULT_CLOCK_SKEW_SECONDS, ge=0, le=MAX_CLOCK_SKEW_SECONDS,
        description="How far the issuers' clocks may be from the gateway's when `iat` and `exp` are checked.")
    admin_host: str = Field(
        "127.0.0.1", description="Address of the gateway's operator port (/metrics, the detailed /readyz, "
        "POST /admin/revocations); loopback by default: never expose it to callers of the API.")
    admin_port: int = Field(
        8090, ge=0, le=65535, description="The gateway's operator port (0: any free port, logged at start).")
    gateway_lookup_rate_per_minute: int = Field(
        120, ge=1, description="Look-ups (GET /v1/..., POST /v1/person-lookups) a principal (a person's app "
        "token, a clerk) may make per minute on average, across every gateway instance; more is 429.")
    gateway_lookup_burst: int = Field(
        30, ge=1, description="Look-ups a principal may make at once before GATEWAY_LOOKUP_RATE_PER_MINUTE applies.")
    gateway_command_rate_per_minute: int = Field(
        30, ge=1, description="Commands (POST/PUT of /v1 bindings and disputes) a principal may send per minute "
        "on average, across every gateway instance; more is 429.")
    gateway_command_burst: int = Field(
        10, ge=1, description="Commands a principal may send at once before GATEWAY_COMMAND_RATE_PER_MINUTE applies.")
    gateway_idempotency_ttl_hours: int = Field(
        24, ge=1, le=24 * 30, description="How long an Idempotency-Key is remembered: a command retried with "
        "the same key within this time is the same command (same id, same answer).")
    gateway_instance: str = Field(
        default_factory=default_instance, min_length=1, max_length=MAX_INSTANCE_LENGTH,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Names this instance's reply topic, reply.gateway.<instance> (default: hostname-pid).")
    gateway_command_timeout_ms: int = Field(
        5000, ge=1, le=60_000, description="How long a command waits for its outcome before the answer is 202 "
        "with a link to poll (GET /v1/commands/{id}).")
    gateway_query_timeout_ms: int = Field(
        5000, ge=1, le=60_000, description="How long a query (bindings, consumption, a person, a command's outcome) waits "
        "for its answer before 504.")

    gateway_group_id: str = Field(
        "gateway", description="Consumer group prefix of the gateway's audit projection (group "
        "<GATEWAY_GROUP_ID>.gateway.audit, shared by every gateway instance).")
    gateway_audit_ttl_days: int = Field(
        400, ge=1, description="How long a window clerk's action stays in the audit list (GET /v1/audit), in days: "
        "older entries are trimmed by time, never by count (no clerk can push history out by volume). Must be "
        "at least KAFKA_RETENTION_DAYS (checked at start), like every record kept from a topic.")

    gateway_sms_uplink_key: SecretStr | None = Field(
        None, description="Key of the SMS provider's uplink callback (POST /v1/sms/inbound): the provider signs "
        "each body with HMAC-SHA256 under it (hex, header X-Signature). Unset (the default): the endpoint "
        f"answers 404. At least {MIN_UPLINK_KEY_BYTES} bytes.")

    @model_validator(mode="after")
    def _audit_outlives_the_topic(self) -> "GatewaySettings":
        self.check_records_outlive_retention(gateway_audit_ttl_days=self.gateway_audit_ttl_days)
        return self

    @field_validator("gateway_sms_uplink_key")
    @classmethod
    def _uplink_key_long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value().encode()) < MIN_UPLINK_KEY_BYTES:
            raise ValueError(f"GATEWAY_SMS_UPLINK_KEY must be at least {MIN_UPLINK_KEY_BYTES} bytes")
        return key

    @property
    def uplink_key(self) -> bytes | None:
        """The uplink key's bytes, or None when the uplink is off."""
        return self.gateway_sms_uplink_key.get_secret_value().encode() if self.gateway_sms_uplink_key else None

    def trusted_issuers(self) -> TrustedIssuers:
        """The issuers file, read and checked (IssuersFileError when it is not of the documented shape)."""
        return TrustedIssuers.load(self.gateway_token_issuers, self.gateway_token_clock_skew_seconds)

    @property
    def reply_topic(self) -> str:
        return f"reply.gateway.{self.gateway_instance}"
