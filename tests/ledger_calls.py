"""The settlement Functions as their integration tests call them, through SettlementStore on a
private Valkey: the regions and day the tests use, and builders of charges, refunds and payer-index
entries (written as the binding service writes them, shared/binding_index.py)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from itertools import count

from redis.asyncio import Redis

from services.settlement.storage.accounts import ChargeToSettle, Movement, RefundToApply, SettlementStore
from shared.identity import make_id_number

PROVINCES = ["610100", "610300"]
XIAN, BAOJI, BEIJING = "610100", "610300", "110100"
DAY = 20260601
AT = "2026-06-01T10:00:00+08:00"
REFUND_AT = "2026-06-02T09:00:00+08:00"
HOSPITAL = "H610100-01"
_n = count(1)


def new_person() -> str:
    n = next(_n)
    return make_id_number("610102", date(1980, 1, 1) + timedelta(days=n), n % 1000)


def make_store(client: Redis) -> SettlementStore:
    return SettlementStore(client, provinces=PROVINCES, rejection_ttl=3600, record_ttl=3600)


def charge(patient: str, borne: int, charge_id: str | None = None, digest: str = "digest-1",
           day: int = DAY, event_id: str | None = None, institution: str = HOSPITAL,
           institution_region: str = XIAN) -> ChargeToSettle:
    return ChargeToSettle(event_id or str(uuid.uuid4()), institution, institution_region,
                          charge_id or str(uuid.uuid4()), digest, borne, patient, day, AT)


def refund(charge_id: str, amount: int, refund_id: str | None = None, digest: str = "refund-digest",
           event_id: str | None = None, institution: str = HOSPITAL, lines: str = "") -> RefundToApply:
    return RefundToApply(event_id or str(uuid.uuid4()), institution, charge_id, refund_id or str(uuid.uuid4()),
                         digest, amount, REFUND_AT, lines)


async def bind(client: Redis, patient: str, grantor: str, order: int, region: str,
               start: int = 20260101, end: int = 20261231, limit: int | None = None, paused: bool = False,
               binding_id: str | None = None) -> str:
    """A payer index entry as the binding service writes it (I-1: with limit and pause when given,
    else the old 5-field value)."""
    binding_id = binding_id or str(uuid.uuid4())
    value = f"{grantor}|{order}|{start}|{end}|{region}"
    if limit is not None or paused:
        value += f"|{'' if limit is None else limit}|{'p' if paused else ''}"
    await client.hset("bnd:pay:" + patient, binding_id, value)
    return binding_id


async def bureau_movements(store: SettlementStore, moves: list[Movement]) -> list[tuple[str, int]]:
    """Each movement's outcome and the balance after."""
    return [(a.outcome, a.balance) for a in await store.movements_applied(moves)]
