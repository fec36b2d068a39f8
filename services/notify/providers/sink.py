"""The local provider for `make run` and development: keeps each message in Redis
(`ntf:sink`, newest first, capped) and prints it, phone masked. Nothing leaves the machine."""

from __future__ import annotations

import json
import logging

from redis.asyncio import Redis

from shared.identity import mask_phone
from services.notify.providers.base import Outgoing, Receipt

log = logging.getLogger("notify.sink")
KEEP = 10_000


class SinkProvider:
    name = "sink"

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def send(self, sms: Outgoing) -> Receipt:
        record = {"message_id": sms.message_id, "phone": mask_phone(sms.phone), "template": sms.template,
                  "params": sms.params, "text": sms.text}
        pipe = self._redis.pipeline(transaction=False)
        pipe.lpush("ntf:sink", json.dumps(record, ensure_ascii=False))
        pipe.ltrim("ntf:sink", 0, KEEP - 1)
        await pipe.execute()
        log.info("SMS to %s: %s", record["phone"], sms.text)
        return Receipt(self.name, f"sink-{sms.message_id}")

    async def close(self) -> None:
        pass
