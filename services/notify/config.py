"""Settings of the notify service (environment variables, listed in the README)."""

from pydantic import Field, field_validator, model_validator

from shared.settings import ServiceSettings
from services.notify.domain.templates import catalogue


class NotifySettings(ServiceSettings):
    http_port: int = Field(8083, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics.")
    notify_group_id: str = Field("notify", description="Consumer group prefix of the notify service.")
    sms_provider: str = Field("sink", description="`sink` (records in Redis and prints) or `http` (a real gateway).")
    sms_gateway_url: str = Field("", description="The HTTP gateway's SendSms URL (sms_provider=http).")
    sms_access_key_id: str = Field("", description="Gateway credential id (from the environment, never committed).")
    sms_access_key_secret: str = Field("", description="Gateway credential secret, signs each request (HMAC-SHA256).")
    sms_sign_name: str = Field("陕西医保", description="The SMS signature (签名) registered with the gateway.")
    sms_template_codes: dict[str, str] = Field(
        default_factory=dict, description="JSON object: template name -> the gateway's template code "
                                          "(TemplateCode); a template not listed uses its own name.")
    sms_timeout_seconds: float = Field(5.0, gt=0, description="Timeout of one gateway request.")
    sms_retry_attempts: int = Field(3, ge=1, description="Attempts per message before it is recorded as failed "
                                                         "(only when the gateway surely did not send it).")
    notify_send_concurrency: int = Field(
        100, ge=1, description="How many SMS of a batch are claimed and sent at once (one Redis round trip "
                               "for their claims, one request each to the gateway, concurrently).")
    sms_retry_base_ms: int = Field(200, ge=0, description="Back-off before the 2nd attempt; doubles after each.")
    quiet_hours: str = Field("22:00-07:00", description="Non-urgent SMS wait until this window ends (China time).")
    notify_expiry_check_seconds: float = Field(
        3600, gt=0, description="How often bindings ending within 7 days are looked for (each is told once).")
    notify_release_check_seconds: float = Field(
        5, gt=0, description="How often held messages (quiet hours, unknown person) and expired claims are "
                             "looked at.")
    notify_unknown_person_wait_seconds: float = Field(
        600, ge=0, description="How long a message for a person notify does not know yet waits for the "
                               "registration before SmsFailed `no_phone`.")
    notify_unknown_person_retry_seconds: float = Field(
        10, gt=0, description="How long a message for an unknown person waits between two looks.")
    notify_claim_lease_seconds: float = Field(
        60, gt=0, description="How long a claim on a message is its sender's; a claim still pending after it "
                              "was left by a crashed instance and is recorded SmsFailed `outcome_unknown`.")
    notify_record_ttl_days: int = Field(
        400, ge=1, description="How long a message's outcome is kept for dedupe; at least settlement's "
                               "SETTLEMENT_RECORD_TTL_DAYS, so a late redelivery never sends a second SMS.")

    @field_validator("sms_template_codes")
    @classmethod
    def _known_templates(cls, codes: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(codes) - set(catalogue()["templates"]))
        if unknown:
            raise ValueError(f"SMS_TEMPLATE_CODES names no such template: {', '.join(unknown)}")
        return codes

    @model_validator(mode="after")
    def _records_outlive_the_events(self) -> "NotifySettings":
        self.check_records_outlive_retention(notify_record_ttl_days=self.notify_record_ttl_days)
        return self

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> "NotifySettings":
        # A live sender must never be taken over: that would give its message two outcomes.
        longest = (self.sms_retry_attempts * self.sms_timeout_seconds
                   + self.sms_retry_base_ms / 1000 * (2 ** (self.sms_retry_attempts - 1) - 1))
        if self.notify_claim_lease_seconds <= longest:
            raise ValueError(f"NOTIFY_CLAIM_LEASE_SECONDS must exceed the longest send ({longest:.1f} s: "
                             "attempts x timeout + back-off)")
        return self
