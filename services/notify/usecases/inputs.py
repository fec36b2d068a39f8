"""What notify's input jobs share: how a defective record is set aside, and how a refused
payload is named in its dead letter."""

from __future__ import annotations

import logging

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared.kafka import Received, dead_letter

log = logging.getLogger("notify")


async def defect(broker: KafkaBroker, msg: Received, exc: BaseException) -> None:
    """A platform defect while answering: the record goes to the DLQ for the operators (a
    message it left claimed is recorded `outcome_unknown` after its lease)."""
    log.error("defect while answering %s[%d]@%d", msg.topic, msg.partition, msg.offset, exc_info=exc)
    await dead_letter(broker, msg, f"unhandled {exc.__class__.__name__}")


def invalid_fields(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {e['type']}" for e in exc.errors()[:5])
