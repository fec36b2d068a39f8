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

    @model_validator(mode="after")
    def _records_outlive_the_charges(self) -> "SettlementSettings":
        self.check_records_outlive_retention(settlement_record_ttl_days=self.settlement_record_ttl_days,
                                             settlement_rejection_ttl_days=self.settlement_rejection_ttl_days)
        return self
