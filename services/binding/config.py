"""Settings of the binding service (environment variables, listed in the README)."""

from pydantic import Field, SecretStr, model_validator

from shared.settings import ServiceSettings

# A digest made with a published or guessable key is as weak as a bare hash (a dictionary of
# names reverses it): there is no default, and a short key is refused.
MIN_NAME_DIGEST_KEY_LENGTH = 16


class BindingSettings(ServiceSettings):
    http_port: int = Field(8081, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics.")
    binding_group_id: str = Field("binding", description="Consumer group of the binding service.")
    binding_outcome_ttl_days: int = Field(
        90, ge=1, description="How long a command's recorded outcome is kept to answer redeliveries the same way. "
        "Must be at least KAFKA_RETENTION_DAYS (checked at start): a command still on binding.commands is always "
        "answered with its recorded outcome.")
    name_digest_key: SecretStr = Field(
        min_length=MIN_NAME_DIGEST_KEY_LENGTH, description="Secret key of the HMAC-SHA256 digest of names "
        "(NAME_MISMATCH), at least 16 characters (e.g. `openssl rand -hex 32`). Required: the service refuses to "
        "start without it (`make run` and the tests make one). Changing it needs the bureau.accounts projection "
        "rebuilt (the binding.bureau.accounts consumer group reset to the earliest offset).")
    binding_sweep_seconds: float = Field(
        3600.0, gt=0, description="How often bindings that have ended are removed from the payer index.")
    binding_payer_grace_days: int = Field(
        7, ge=0, description="Days an ended binding stays in the payer index, so a charge dated while it was in "
        "force (settlement accepts charges up to 7 days old by default) still finds its grantor.")

    binding_dispute_window_days: int = Field(
        90, ge=1, le=3650, description="How long after a charge its grantor may dispute the payment by its reference "
        "(DisputePayment; UNKNOWN_REFERENCE after). The reference projection keeps each payment this long.")
    binding_reference_wait_seconds: float = Field(
        30.0, gt=0, description="Longest a DisputePayment whose reference is not found waits for the reference "
        "projection to catch up with settlement.results before it is answered UNKNOWN_REFERENCE; when it cannot "
        "catch up in time the batch is retried (an answer off a projection that is behind would be wrong).")

    binding_batch_size: int = Field(
        500, ge=1, description="Most commands decided in one batch (a few Redis round trips whatever its size).")
    binding_batch_timeout_ms: int = Field(
        20, ge=0, description="How long a batch of commands waits to fill.")

    @model_validator(mode="after")
    def _outcomes_outlive_the_commands(self) -> "BindingSettings":
        self.check_records_outlive_retention(binding_outcome_ttl_days=self.binding_outcome_ttl_days)
        return self

    def name_key(self) -> bytes:
        """The HMAC key for names."""
        return self.name_digest_key.get_secret_value().encode()
