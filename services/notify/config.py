"""Settings of the notify service (environment variables, listed in the README)."""

from pydantic import Field

from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    notify_group_id: str = Field("notify", description="Consumer group prefix of the notify service.")
    sms_provider: str = Field("sink", description="`sink` (records in Redis and prints) or `http` (a real gateway).")
    sms_gateway_url: str = Field("", description="The HTTP gateway's SendSms URL (sms_provider=http).")
    sms_access_key_id: str = Field("", description="Gateway credential id (from the environment, never committed).")
    sms_access_key_secret: str = Field("", description="Gateway credential secret, signs each request (HMAC-SHA256).")
    sms_sign_name: str = Field("陕西医保", description="The SMS signature (签名) registered with the gateway.")
    sms_timeout_seconds: float = Field(5.0, gt=0, description="Timeout of one gateway request.")
    sms_retry_attempts: int = Field(3, ge=1, description="Attempts per message before it is recorded as failed.")
    sms_retry_base_ms: int = Field(200, ge=0, description="Back-off before the 2nd attempt; doubles after each.")
    quiet_hours: str = Field("22:00-07:00", description="Non-urgent SMS wait until this window ends (China time).")
    notify_expiry_check_seconds: float = Field(
        3600, gt=0, description="How often bindings ending within 7 days are looked for (each is told once).")
    notify_release_check_seconds: float = Field(
        30, gt=0, description="How often messages held for quiet hours are looked at.")
    notify_record_ttl_days: int = Field(90, ge=1, description="How long a message's outcome is kept for dedupe.")
