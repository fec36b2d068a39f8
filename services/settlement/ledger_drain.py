"""`python -m services.settlement.ledger_drain`: run once when upgrading from the release that kept
the HIS ledger as a projection of settlement.results (consumer group `<SETTLEMENT_GROUP_ID>.ledger`).

That release added an outcome to the ledger only after it was published, so when its settlement
processes stopped, the outcomes of their last batches may not be in the ledger. This reads
settlement.results in that group from its committed offsets to where the topic ends now, adds
those outcomes to the ledger (`ledger_record`: the entries and rules of the settling Functions,
so an entry already there changes nothing), commits, and exits. A group that never committed (a
new installation) has nothing to drain. Run it after the old processes stopped and before the new
ones start (docs/operations.md, "Upgrades")."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from shared.kafka import received
from shared.kafka_security import client_kwargs
from shared.topics import SETTLEMENT_RESULTS
from services.settlement.config import SettlementSettings
from services.settlement.metrics import ReconciliationMetrics
from services.settlement.storage.ledger import LedgerStore
from services.settlement.usecases.his_reconciliation import Ledger

log = logging.getLogger("settlement")


def ledger_group(settings: SettlementSettings) -> str:
    """The retired projection's consumer group."""
    return f"{settings.settlement_group_id}.ledger"


async def drain(settings: SettlementSettings, batch: int = 500) -> int:
    """Add to the ledger what the retired group had not read; returns how many outcomes it read."""
    redis = settings.redis()
    ttl = settings.settlement_record_ttl_days * 86_400
    ledger = Ledger(LedgerStore(redis, ledger_ttl=ttl, report_ttl=ttl), broker=None,  # type: ignore[arg-type]
                    keep_days=settings.settlement_record_ttl_days, metrics=ReconciliationMetrics(CollectorRegistry()))
    # Assigned, never subscribed: the group is not joined, only its committed offsets read and moved.
    consumer = AIOKafkaConsumer(**client_kwargs(settings.kafka_bootstrap_servers, settings.kafka_security(),
                                                group_id=ledger_group(settings), enable_auto_commit=False,
                                                # a committed offset retention has passed: from the oldest kept
                                                auto_offset_reset="earliest"))
    await consumer.start()
    read = 0
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(SETTLEMENT_RESULTS, p)
                      for p in sorted(consumer.partitions_for_topic(SETTLEMENT_RESULTS) or ())]
        ends = await consumer.end_offsets(partitions) if partitions else {}
        left = {}
        for tp in partitions:
            committed = await consumer.committed(tp)
            if committed is not None and committed < ends[tp]:
                left[tp] = committed
        consumer.assign(list(left))
        for tp, offset in left.items():
            consumer.seek(tp, offset)
        while left:
            for tp, records in (await consumer.getmany(*left, timeout_ms=1_000, max_records=batch)).items():
                records = [r for r in records if r.offset < ends[tp]]
                if records:
                    await ledger.project([received(r) for r in records])
                    read += len(records)
                    await consumer.commit({tp: OffsetAndMetadata(records[-1].offset + 1, "")})
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:  # offsets may have gaps: the position says
                    del left[tp]
        return read
    finally:
        await consumer.stop()
        await redis.aclose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = SettlementSettings()
    read = asyncio.run(drain(settings))
    log.info("ledger drain: %d outcomes of group %s read into the ledger; the group can be deleted", read,
             ledger_group(settings))


if __name__ == "__main__":
    main()
