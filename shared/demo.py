"""Demo data for `make run`: a Xi'an employee and a parent insured in Baoji, bound by the app,
so the running platform shows a cross-region binding at once. Synthetic people only."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import date, timedelta

from aiokafka import AIOKafkaProducer

from shared.envelope import now, seal
from shared.identity import make_id_number, mask_id_number
from shared.topics import BINDING_COMMANDS, BUREAU_ACCOUNTS


def seed(bootstrap: str) -> None:
    asyncio.run(_seed(bootstrap))


async def _seed(bootstrap: str) -> None:
    grantor_id = make_id_number("610102", date(1985, 3, 14), 123)
    parent_id = make_id_number("610302", date(1956, 9, 2), 456)
    people = [
        {"person_id": grantor_id, "name": "演示甲", "region": "610100", "scheme": "employee",
         "employer": "西安演示科技有限公司", "phone": "13800000001", "balance": "3000.00"},
        {"person_id": parent_id, "name": "演示乙", "region": "610300", "scheme": "resident",
         "community": "宝鸡演示社区", "phone": "13800000002"},
    ]
    today = now().date()
    binding = {
        "grantor": {"id_number": grantor_id, "name": "演示甲", "region": "610100",
                    "employer": "西安演示科技有限公司", "phone": "13800000001"},
        "beneficiary": {"id_number": parent_id, "name": "演示乙", "region": "610300", "community": "宝鸡演示社区"},
        "relation": "father", "payment_order": 1, "start_date": today.isoformat(),
        "end_date": (today + timedelta(days=365)).isoformat(), "notice_accepted": True,
        "signature_digest": "sha256:" + hashlib.sha256(b"demo commitment").hexdigest(), "channel": "window",
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for p in people:
            await producer.send_and_wait(BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"].encode())
        await asyncio.sleep(0.5)  # demo only: lets the registry projection catch up before the binding
        await producer.send_and_wait(BINDING_COMMANDS, seal("CreateBinding", binding, event_id=str(uuid.uuid4())),
                                     key=parent_id.encode())
    finally:
        await producer.stop()
    print(f"  demo: registered {mask_id_number(grantor_id)} (Xi'an, employee) and {mask_id_number(parent_id)} "
          f"(Baoji, resident); CreateBinding sent (watch the [binding] log)", flush=True)
