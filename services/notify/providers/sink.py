"""The local provider for `make run` and development: keeps each message in Redis
(`ntf:sink`, newest first, capped) and logs it at DEBUG, phone masked. Nothing leaves the machine."""

from __future__ import annotations

import json
import logging
import uuid

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError, TimeoutError as RedisTimeout

from shared.identity import mask_phone
from services.notify.providers.base import Outgoing, ProviderError, Receipt

log = logging.getLogger("notify.sink")
KEEP = 10_000


class SinkProvider:
    name = "sink"

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def send_many(self, batch: list[Outgoing]) -> list[Receipt | Exception]:
        """The whole batch in one pipelined round trip."""
        records = [{"message_id": sms.message_id, "phone": mask_phone(sms.phone), "template": sms.template,
                    "params": sms.params, "text": sms.text} for sms in batch]
        pipe = self._redis.pipeline(transaction=False)
        pipe.lpush("ntf:sink", *(json.dumps(r, ensure_ascii=False) for r in records))
        pipe.ltrim("ntf:sink", 0, KEEP - 1)
        try:
            await pipe.execute()
        except (RedisConnectionError, RedisTimeout) as exc:
            # The batch may or may not have been kept: as with a gateway that did not answer.
            return [ProviderError(f"no answer: {exc.__class__.__name__}", ambiguous=True) for _ in batch]
        if log.isEnabledFor(logging.DEBUG):
            for r in records:
                log.debug("SMS to %s: %s", r["phone"], r["text"])
        # A short receipt of its own: the message id is in the outcome already.
        return [Receipt(self.name, f"sink-{uuid.uuid4().hex[:12]}") for _ in batch]

    async def close(self) -> None:
        pass
