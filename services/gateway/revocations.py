"""Revocation of bearer tokens and clerks (contract version 3), effective on every gateway
instance within seconds:

- an operator asks one instance, on its operator port (POST /admin/revocations), which puts a
  TokenRevoked or ClerkRevoked on `gateway.revocations`;
- every instance reads that topic in one shared consumer group (`<GATEWAY_GROUP_ID>.gateway.revocations`)
  and writes what it reads to Redis (storage/admission.py), where every instance's admission of
  every request looks (the same Function call that takes from the rate bucket).

Kafka keeps the revocation (a Redis replaced is filled again by resetting the group's offsets);
Redis keeps it only as long as a token it refuses could still be valid."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared import envelope
from shared.logs import shown
from shared.topics import GATEWAY_REVOCATIONS
from services.gateway import contract as c
from services.gateway.storage.admission import AdmissionStore

log = logging.getLogger("gateway.revocations")
_TYPES = frozenset({c.TOKEN_REVOKED, c.CLERK_REVOKED})
TokenOrClerk = c.TokenRevoked | c.ClerkRevoked


async def revoke(broker: KafkaBroker, request: c.AccessRevocation, at: datetime | None = None) -> dict[str, str]:
    """Publish the revocation; returns what was published (its event id, type and subject)."""
    at = at or envelope.now()
    event_id = str(uuid.uuid4())
    if request.jti is not None:
        event: TokenOrClerk = c.TokenRevoked(jti=request.jti, revoked_at=at)
        event_type, key = c.TOKEN_REVOKED, request.jti
    else:
        event = c.ClerkRevoked(clerk_id=request.clerk_id or "", revoked_at=at)
        event_type, key = c.CLERK_REVOKED, request.clerk_id or ""
    await broker.publish(envelope.seal(event_type, event, event_id=event_id), GATEWAY_REVOCATIONS, key=key.encode())
    log.info("%s %s published (%s)", event_type, shown(key), event_id)
    return {"event_id": event_id, "event_type": event_type, "revoked_at": at.isoformat()}


class RevocationProjection:
    """gateway.revocations into Redis. Idempotent (a redelivery sets the same state); a record that
    cannot be read is logged (never its content) and skipped: the gateway is the topic's only writer."""

    def __init__(self, store: AdmissionStore) -> None:
        self._store = store

    async def project(self, values: list[bytes]) -> int:
        applied = 0
        for value in values:
            readable = envelope.read(value, _TYPES)
            if isinstance(readable, envelope.Unreadable):
                log.warning("unreadable revocation record skipped: %s", readable.error)
                continue
            try:
                if readable.event_type == c.TOKEN_REVOKED:
                    token = c.TokenRevoked.model_validate(readable.body.get("payload"))
                    await self._store.revoke_token(token.jti)
                else:
                    clerk = c.ClerkRevoked.model_validate(readable.body.get("payload"))
                    await self._store.revoke_clerk(clerk.clerk_id, int(clerk.revoked_at.timestamp()))
            except ValidationError:
                log.warning("revocation record %s skipped: not a %s", shown(readable.event_id), readable.event_type)
                continue
            applied += 1
        return applied
