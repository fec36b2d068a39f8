"""The gateway's audit projection (storage/audit.py and its Function, audit.lua) against the real
Redis: a record is one entry however often it comes, the list is bounded by time and never by
count (a busy clerk cannot push history out), an entry about a person of another region is
listed for that region too, nothing older than the TTL is kept or listed, pages and totals
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
          command: str | None = None, action: str = "lookup", subject_region: str | None = None) -> Entry:
    at = NOW - timedelta(minutes=n if minutes_ago is None else minutes_ago)
    return Entry(f"e-{n}-{outcome}", at, clerk, REGION, action, command or f"q-{n}", "610***********0018", outcome,
                 subject_region=subject_region)


@pytest.fixture
async def store(clean_redis):
    s = AuditStore(clean_redis, ttl_seconds=7 * 86_400, clock=lambda: NOW)
    await s.load_functions()
    return s


async def listed(store: AuditStore, clerk: str | None = None, offset: int = 0, count: int = 50, days: int = 30):
    return await store.page(REGION, clerk, NOW - timedelta(days=days), NOW + timedelta(minutes=1), offset, count)


async def test_a_record_is_one_entry_however_often_it_comes(store):
    assert await store.add([entry(1), entry(2)]) == 2
    assert await store.add([entry(1), entry(2)]) == 0
    page = await listed(store)
    assert page.total == 2 and [e["command_id"] for e in page.entries] == ["q-1", "q-2"]  # newest first


async def test_no_volume_of_entries_pushes_the_regions_history_out(store, clean_redis):
    """Bounded by time, not count: one clerk's 3,000 look-ups leave another's single entry listed."""
    await store.add([entry(5_000, "clerk-b")])
    await store.add([entry(n, "clerk-a") for n in range(1, 3_001)])
    everything = await listed(store, count=10_000)
    assert everything.total == 3_001 and everything.entries[-1]["clerk_id"] == "clerk-b"
    assert [e["command_id"] for e in (await listed(store, "clerk-b")).entries] == ["q-5000"]
    assert await clean_redis.zcard(clerk_key(REGION, "clerk-a")) == 3_000


async def test_an_entry_about_a_person_of_another_region_is_listed_for_both_regions(store):
    await store.add([entry(1, subject_region="610100"), entry(2, subject_region=REGION), entry(3)])
    assert [e["command_id"] for e in (await listed(store)).entries] == ["q-1", "q-2", "q-3"]
    theirs = await store.page("610100", None, NOW - timedelta(days=1), NOW + timedelta(minutes=1), 0, 50)
    assert [(e["command_id"], e["region"], e["subject_region"]) for e in theirs.entries] == [
        ("q-1", REGION, "610100")]
    assert (await store.page("610100", "clerk-a", NOW - timedelta(days=1), NOW, 0, 50)).total == 0  # not its clerk


async def test_nothing_older_than_the_ttl_is_kept_or_listed(store, clean_redis):
    assert await store.add([entry(1, minutes_ago=8 * 24 * 60)]) == 0
    await store.add([entry(2, minutes_ago=6 * 24 * 60)])
    later = AuditStore(clean_redis, ttl_seconds=7 * 86_400, clock=lambda: NOW + timedelta(days=2))
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


async def test_a_pending_entry_filed_for_two_regions_gives_way_in_both(store):
    pending = entry(1, command="c-1", action="create_binding", outcome="pending", subject_region="610100")
    decided = entry(1, command="c-1", action="create_binding", outcome="created", subject_region="610100")
    await store.add([pending])
    await store.add([decided])
    theirs = await store.page("610100", None, NOW - timedelta(days=1), NOW + timedelta(minutes=1), 0, 50)
    assert [e["outcome"] for e in theirs.entries] == ["created"]
    assert [e["outcome"] for e in (await listed(store)).entries] == ["created"]
