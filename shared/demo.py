"""Demo data for `make run`: a Xi'an employee and a parent insured in Baoji, bound at a window,
then a pharmacy bill in Baoji paid from the Xi'an account, so the running platform shows a
cross-region binding, its settlement and the grantor's SMS at once. Synthetic people only."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import date, timedelta

from aiokafka import AIOKafkaProducer

from shared.envelope import now, seal
from shared.identity import make_id_number, mask_id_number
from shared.institutions import INSTITUTION_REGISTERED
from shared.topics import BINDING_COMMANDS, BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, HIS_CHARGES


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
    pharmacy = {"institution_code": "H61030001", "name": "宝鸡演示大药房", "region": "610300", "kind": "pharmacy"}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(BUREAU_INSTITUTIONS, seal(INSTITUTION_REGISTERED, pharmacy),
                                     key=pharmacy["institution_code"].encode())
        for p in people:
            await producer.send_and_wait(BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"].encode())
        await asyncio.sleep(0.5)  # demo only: lets the registry projection catch up before the binding
        await producer.send_and_wait(BINDING_COMMANDS, seal("CreateBinding", binding, event_id=str(uuid.uuid4())),
                                     key=parent_id.encode())
        await asyncio.sleep(0.5)  # demo only: the binding before the parent's pharmacy bill
        charge = {"charge_id": f"DEMO-{uuid.uuid4().hex[:10]}", "institution_code": "H61030001",
                  "institution_region": "610300", "patient_id": parent_id, "patient_name": "演示乙",
                  "code_holder_id": parent_id, "presented_via": "family_account", "visit_kind": "pharmacy",
                  "total": "168.00", "fund_paid": "39.50", "individual_borne": "128.50",
                  "charged_at": now().isoformat(timespec="seconds")}
        await producer.send_and_wait(HIS_CHARGES, seal("ChargeSubmitted", charge), key=parent_id.encode())
    finally:
        await producer.stop()
    print(f"  demo: registered {mask_id_number(grantor_id)} (Xi'an, employee) and {mask_id_number(parent_id)} "
          f"(Baoji, resident); CreateBinding and a Baoji pharmacy bill of 128.50 sent (watch the [binding], "
          f"[settlement] and [notify] lines; the local sink keeps the SMS texts in Redis `ntf:sink`, and "
          f"prints them with LOG_LEVEL=DEBUG)", flush=True)
