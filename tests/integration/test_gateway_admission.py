"""The gateway's admission Function (storage/admission.lua) against the real Redis, called
directly with the clock given: the token bucket of a principal, its Retry-After, buckets of
look-ups and commands apart, and revoked tokens and clerks (which take nothing from the bucket)."""

from __future__ import annotations

import pytest

from shared.tokens import Principal
from services.gateway.storage.admission import AdmissionStore, Rate, Verdict, bucket_key

pytestmark = pytest.mark.integration

CLERK = Principal("window", clerk_id="clerk-1", region="610300", jti="t-1", issued_at=1_000)
PERSON = Principal("app", person_id="610102198503150018", jti="t-2", issued_at=1_000)
RATE = Rate(per_minute=60, burst=3)  # one a second, three at once
T0 = 1_700_000_000_000


@pytest.fixture
async def store(clean_redis):
    s = AdmissionStore(clean_redis, revocation_ttl_seconds=3600)
    await s.load_functions()
    return s


async def verdicts(store, who, times_ms, kind="lookup", rate=RATE):
    return [await store.admit(who, kind, rate, now_ms=t) for t in times_ms]


async def test_a_principal_makes_its_burst_at_once_then_one_per_refill(store):
    answers = await verdicts(store, CLERK, [T0, T0, T0, T0])
    assert [a.verdict for a in answers] == [Verdict.ADMITTED] * 3 + [Verdict.LIMITED]
    assert answers[3].wait_ms == 1000 and answers[3].retry_after_seconds == 1
    assert (await store.admit(CLERK, "lookup", RATE, now_ms=T0 + 400)).wait_ms == 600  # a refused try costs nothing
    assert (await store.admit(CLERK, "lookup", RATE, now_ms=T0 + 1000)).verdict is Verdict.ADMITTED
    assert (await store.admit(CLERK, "lookup", RATE, now_ms=T0 + 1001)).verdict is Verdict.LIMITED


async def test_retry_after_is_whole_seconds_for_a_slow_rate(store):
    slow = Rate(per_minute=2, burst=1)
    first, second = await verdicts(store, PERSON, [T0, T0 + 100], kind="command", rate=slow)
    assert first.verdict is Verdict.ADMITTED and second.verdict is Verdict.LIMITED
    assert second.wait_ms == 29_900 and second.retry_after_seconds == 30


async def test_frequent_calls_still_refill_a_slow_bucket(store):
    """Every refused call moves the bucket's clock: the fraction earned meanwhile is kept, not lost."""
    slow = Rate(per_minute=1, burst=1)
    await store.admit(PERSON, "command", slow, now_ms=T0)
    refused = await verdicts(store, PERSON, range(T0 + 1_000, T0 + 60_000, 1_000), kind="command", rate=slow)
    assert {a.verdict for a in refused} == {Verdict.LIMITED}
    assert (await store.admit(PERSON, "command", slow, now_ms=T0 + 60_000)).verdict is Verdict.ADMITTED


async def test_look_ups_and_commands_and_principals_have_buckets_of_their_own(store):
    await verdicts(store, CLERK, [T0] * 3)
    assert (await store.admit(CLERK, "command", RATE, now_ms=T0)).verdict is Verdict.ADMITTED
    assert (await store.admit(PERSON, "lookup", RATE, now_ms=T0)).verdict is Verdict.ADMITTED
    other_clerk_same_id = Principal("window", clerk_id="clerk-1", region="610100", issued_at=1_000)
    assert (await store.admit(other_clerk_same_id, "lookup", RATE, now_ms=T0)).verdict is Verdict.ADMITTED


async def test_an_idle_bucket_expires_once_full_again(store, clean_redis):
    await store.admit(CLERK, "lookup", RATE, now_ms=T0)
    ttl = await clean_redis.pttl(bucket_key("lookup", CLERK.key))
    assert 1_000 < ttl <= 2_000  # one token to earn back (1 s), plus a second


async def test_a_person_is_never_named_in_clear_in_a_key(store, clean_redis):
    await store.admit(PERSON, "lookup", RATE, now_ms=T0)
    assert [k for k in await clean_redis.keys("gw:*") if PERSON.person_id.encode() in k] == []


async def test_a_revoked_token_is_refused_and_takes_nothing(store, clean_redis):
    await store.revoke_token("t-1")
    assert (await store.admit(CLERK, "lookup", RATE, now_ms=T0)).verdict is Verdict.TOKEN_REVOKED
    assert await clean_redis.exists(bucket_key("lookup", CLERK.key)) == 0
    assert 3_500_000 < await clean_redis.pttl("gw:rv:jti:t-1") <= 3_600_000
    assert (await store.admit(PERSON, "lookup", RATE, now_ms=T0)).verdict is Verdict.ADMITTED


async def test_a_revoked_clerks_tokens_issued_until_then_are_refused_later_ones_admitted(store):
    await store.revoke_clerk("clerk-1", revoked_at=1_000)
    await store.revoke_clerk("clerk-1", revoked_at=900)  # an older one redelivered moves nothing back
    assert (await store.admit(CLERK, "lookup", RATE, now_ms=T0)).verdict is Verdict.CLERK_REVOKED
    reissued = Principal("window", clerk_id="clerk-1", region="610300", jti="t-9", issued_at=1_001)
    assert (await store.admit(reissued, "lookup", RATE, now_ms=T0)).verdict is Verdict.ADMITTED
    assert (await store.admit(PERSON, "lookup", RATE, now_ms=T0)).verdict is Verdict.ADMITTED


async def test_the_function_library_comes_back_when_redis_lost_it(store, clean_redis):
    await clean_redis.function_flush()
    assert (await store.admit(CLERK, "lookup", RATE)).verdict is Verdict.ADMITTED  # the server's own clock
