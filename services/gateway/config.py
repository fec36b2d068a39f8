"""Settings of the HTTP gateway (environment variables, listed in the README)."""

from __future__ import annotations

import os
import re
import socket

from pydantic import Field, SecretStr, field_validator

from shared.settings import ServiceSettings
from shared.tokens import MIN_KEY_BYTES

# The reply topic is `reply.gateway.<instance>`; contract.md allows `reply.` and at most 100 of
# [A-Za-z0-9._-], so the instance name keeps to that alphabet and leaves room for `gateway.`.
_INSTANCE_ALPHABET = re.compile(r"[^A-Za-z0-9._-]")
MAX_INSTANCE_LENGTH = 100 - len("gateway.")


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
        5000, ge=1, le=60_000, description="How long a query (bindings, consumption, a command's outcome) waits "
        "for its answer before 504.")

    @field_validator("gateway_jwt_key")
    @classmethod
    def _long_enough(cls, key: SecretStr) -> SecretStr:
        if len(key.get_secret_value().encode()) < MIN_KEY_BYTES:
            raise ValueError(f"GATEWAY_JWT_KEY must be at least {MIN_KEY_BYTES} bytes")
        return key

    @property
    def reply_topic(self) -> str:
        return f"reply.gateway.{self.gateway_instance}"
