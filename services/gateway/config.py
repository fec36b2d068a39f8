"""Settings of the HTTP gateway (environment variables, listed in the README)."""

from __future__ import annotations

import os
import re
import socket

from pydantic import Field, SecretStr, field_validator, model_validator

from shared.settings import ServiceSettings
from shared.tokens import MIN_KEY_BYTES

# The reply topic is `reply.gateway.<instance>`; contract.md allows `reply.` and at most 100 of
# [A-Za-z0-9._-], so the instance name keeps to that alphabet and leaves room for `gateway.`.
_INSTANCE_ALPHABET = re.compile(r"[^A-Za-z0-9._-]")
MAX_INSTANCE_LENGTH = 100 - len("gateway.")
MIN_UPLINK_KEY_BYTES = 16


def default_instance() -> str:
    """hostname-pid: two gateways on one host, or one restarted, never read each other's replies."""
    return _INSTANCE_ALPHABET.sub("-", f"{socket.gethostname()}-{os.getpid()}")[-MAX_INSTANCE_LENGTH:]


class GatewaySettings(ServiceSettings):
    gateway_jwt_key: SecretStr = Field(
        description=f"Key of the HS256 bearer tokens (shared.tokens); required, at least {MIN_KEY_BYTES} bytes. "
        "The same key mints the tokens (make run, the simulator, the app's back end).")
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
        400, ge=1, description="How long a window clerk's action stays in the audit list (GET /v1/audit), in days. "
        "Must be at least KAFKA_RETENTION_DAYS (checked at start), like every record kept from a topic.")
    gateway_audit_max_per_region: int = Field(
        100_000, ge=1, description="Most audit entries kept per region for GET /v1/audit (the newest).")

    gateway_sms_uplink_key: SecretStr | None = Field(
        None, description="Key of the SMS provider's uplink callback (POST /v1/sms/inbound): the provider signs "
        "each body with HMAC-SHA256 under it (hex, header X-Signature). Unset (the default): the endpoint "
        f"answers 404. At least {MIN_UPLINK_KEY_BYTES} bytes.")

    @model_validator(mode="after")
    def _audit_outlives_the_topic(self) -> "GatewaySettings":
        self.check_records_outlive_retention(gateway_audit_ttl_days=self.gateway_audit_ttl_days)
        return self

    @field_validator("gateway_jwt_key")
    @classmethod
    def _long_enough(cls, key: SecretStr) -> SecretStr:
        if len(key.get_secret_value().encode()) < MIN_KEY_BYTES:
            raise ValueError(f"GATEWAY_JWT_KEY must be at least {MIN_KEY_BYTES} bytes")
        return key

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

    @property
    def reply_topic(self) -> str:
        return f"reply.gateway.{self.gateway_instance}"
