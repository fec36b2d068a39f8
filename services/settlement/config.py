"""Settings of the settlement service (environment variables, listed in the README)."""

from pydantic import Field, model_validator

from shared.settings import ServiceSettings


class SettlementSettings(ServiceSettings):
    http_port: int = Field(8082, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics.")
    settlement_group_id: str = Field("settlement", description="Consumer group of the settlement service.")
    settlement_batch_size: int = Field(1000, ge=1, description="Most charges settled in one batch (one round trip).")
    settlement_batch_timeout_ms: int = Field(20, ge=1, description="How long a batch waits to fill.")
    settlement_record_ttl_days: int = Field(
        400, ge=1, description="How long a settled charge is kept to answer resends and refunds.")
    settlement_rejection_ttl_days: int = Field(
        30, ge=1, description="How long a refusal is kept to answer a redelivery the same way.")
    settlement_max_charge_age_days: int = Field(
        7, ge=1, description="Oldest charged_at/refunded_at accepted, in days before the platform's clock "
                             "(contract version 2); older is refused INVALID_CHARGE.")

    settlement_quote_hold_minutes: int = Field(
        15, ge=1, le=24 * 60, description="How long a quote (预结算) holds its split before it expires.")
    settlement_quote_hold_seconds: int | None = Field(
        None, ge=1, le=24 * 3600, description="When set, the hold in seconds instead (tests, drills).")
    settlement_quote_sweep_seconds: float = Field(
        5.0, gt=0, le=3600, description="How often expired quotes are released and announced.")

    @property
    def quote_hold_ms(self) -> int:
        if self.settlement_quote_hold_seconds is not None:
            return self.settlement_quote_hold_seconds * 1000
        return self.settlement_quote_hold_minutes * 60_000

    @model_validator(mode="after")
    def _records_outlive_the_charges(self) -> "SettlementSettings":
        self.check_records_outlive_retention(settlement_record_ttl_days=self.settlement_record_ttl_days,
                                             settlement_rejection_ttl_days=self.settlement_rejection_ttl_days)
        return self
