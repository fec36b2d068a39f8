"""The SMS provider's uplink callback (I-6): whether a body is the provider's, by its HMAC-SHA256
with GATEWAY_SMS_UPLINK_KEY (lower-case hex in the X-Signature header, over the raw bytes), and the
id a reply travels under. Pure."""

from __future__ import annotations

import hashlib
import hmac
import uuid

MAX_BODY_BYTES = 4 * 1024
# A resent callback (same message_id) is the same event on sms.uplink, so notify acts on it once.
_EVENT_NAMESPACE = uuid.UUID("8f4f6d52-6a0e-4d3b-9b1c-5e2a7c9d0f31")


def signature(key: bytes, body: bytes) -> str:
    """What the provider puts in X-Signature: the hex HMAC-SHA256 of the raw body."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def signed(key: bytes, body: bytes, given: str | None) -> bool:
    """Whether `given` is the body's signature, compared in constant time (case aside)."""
    if given is None:
        return False
    return hmac.compare_digest(signature(key, body).encode(), given.strip().lower().encode("utf-8", "replace"))


def event_id(message_id: str) -> str:
    """The SmsReplyReceived event id of a provider message id: the same id each time."""
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"sms-uplink:{message_id}"))
