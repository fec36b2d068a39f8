"""The gateway's audit projection (storage/audit.py and its Function, audit.lua) against the real
Redis: a record is one entry however often it comes, the list is bounded per region (the oldest
leave the clerk's list too), nothing older than the TTL is kept or listed, pages and totals
follow the range, and a pending command's entry gives way to its decided one, never the reverse."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from shared.envelope import CHINA_TZ
from services.gateway.storage.audit import AuditStore, Entry, clerk_key, region_key

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=CHINA_TZ)
REGION = "610300"


def entry(n: int, clerk: str = "clerk-a", *, minutes_ago: int | None = None, outcome: str = "answered",
          command: str | None = None, action: str = "lookup") -> Entry:
    at = NOW - timedelta(minutes=n if minutes_ago is None else minutes_ago)
    return Entry(f"e-{n}-{outcome}", at, clerk, REGION, action, command or f"q-{n}", "610***********0018", outcome)


@pytest.fixture
async def store(clean_redis):
    s = AuditStore(clean_redis, ttl_seconds=7 * 86_400, max_per_region=4, clock=lambda: NOW)
    await s.load_functions()
    return s


async def listed(store: AuditStore, clerk: str | None = None, offset: int = 0, count: int = 50, days: int = 30):
    return await store.page(REGION, clerk, NOW - timedelta(days=days), NOW + timedelta(minutes=1), offset, count)


async def test_a_record_is_one_entry_however_often_it_comes(store):
    assert await store.add([entry(1), entry(2)]) == 2
    assert await store.add([entry(1), entry(2)]) == 0
    page = await listed(store)
    assert page.total == 2 and [e["command_id"] for e in page.entries] == ["q-1", "q-2"]  # newest first


async def test_the_newest_entries_of_a_region_are_kept_and_the_oldest_leave_their_clerks_list(store, clean_redis):
    await store.add([entry(n, "clerk-a" if n % 2 else "clerk-b") for n in range(1, 7)])
    assert [e["command_id"] for e in (await listed(store)).entries] == ["q-1", "q-2", "q-3", "q-4"]
    assert [e["command_id"] for e in (await listed(store, "clerk-b")).entries] == ["q-2", "q-4"]
    assert await clean_redis.zcard(clerk_key(REGION, "clerk-b")) == 2
    assert await clean_redis.zcard(clerk_key(REGION, "clerk-a")) == 2


async def test_nothing_older_than_the_ttl_is_kept_or_listed(store, clean_redis):
    assert await store.add([entry(1, minutes_ago=8 * 24 * 60)]) == 0
    await store.add([entry(2, minutes_ago=6 * 24 * 60)])
    later = AuditStore(clean_redis, ttl_seconds=7 * 86_400, max_per_region=4, clock=lambda: NOW + timedelta(days=2))
    assert (await later.page(REGION, None, NOW - timedelta(days=30), NOW, 0, 50)).total == 0
    assert 0 < await clean_redis.pttl(region_key(REGION)) <= 7 * 86_400_000


async def test_pages_and_totals_follow_the_range(store):
    await store.add([entry(1), entry(2), entry(3, minutes_ago=3 * 24 * 60)])
    assert [e["command_id"] for e in (await listed(store, offset=1, count=1)).entries] == ["q-2"]
    recent = await listed(store, days=1)
    assert recent.total == 2 and len(recent.entries) == 2


async def test_a_pending_command_gives_way_to_its_decided_entry_never_the_reverse(store):
    pending = entry(1, command="c-1", action="create_binding", outcome="pending")
    decided = entry(1, command="c-1", action="create_binding", outcome="created")
    await store.add([pending, entry(2)])
    await store.add([decided])
    await store.add([pending])  # redelivered after the decision
    page = await listed(store)
    assert [(e["command_id"], e["outcome"]) for e in page.entries] == [("c-1", "created"), ("q-2", "answered")]
    assert [e["outcome"] for e in (await listed(store, "clerk-a")).entries] == ["created", "answered"]
