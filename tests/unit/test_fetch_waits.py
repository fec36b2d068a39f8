"""The answering consumers' fetch waits (shared/fetch_waits.py): short while records come, the
quiet wait once nothing came for the quiet spell, back to short on the first record. The Fetcher
here is a stand-in with aiokafka's two attributes; tests/integration/test_fetch_waits.py drives a
real consumer through the real broker."""

from __future__ import annotations

import asyncio

from hypothesis import given, strategies as st

from shared.fetch_waits import FetchWaits, Governor, govern

WAITS = FetchWaits(short_ms=10, quiet_ms=500, quiet_after_ms=2000)


class Fetcher:
    def __init__(self, wait_ms: int) -> None:
        self._fetch_max_wait_ms = wait_ms
        self.answers: list[bool] = []

    async def _proc_fetch_request(self, assignment, node_id, request) -> bool:
        return self.answers.pop(0)


class Consumer:
    def __init__(self, fetcher: object) -> None:
        self._fetcher = fetcher


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_consumer_goes_quiet_only_after_the_quiet_spell_and_wakes_on_the_first_record():
    fetcher, clock = Fetcher(10), Clock()
    governor = Governor(fetcher, WAITS, clock)
    fetcher.answers = [False, False, True, False]

    async def fetch(after_seconds: float) -> int:
        clock.now += after_seconds
        await fetcher._proc_fetch_request(None, 0, None)
        return governor.wait_ms

    async def run() -> list[int]:
        return [await fetch(1.0), await fetch(1.5), await fetch(0.5), await fetch(2.5)]

    # 1.0 s without a record: still short; 2.5 s: quiet; a record: short; 2.5 s again: quiet
    assert asyncio.run(run()) == [10, 500, 10, 500]


def test_a_fetch_that_brings_records_always_returns_to_the_short_wait():
    fetcher, clock = Fetcher(500), Clock()
    governor = Governor(fetcher, WAITS, clock)
    clock.now += 3600
    governor.after_fetch(True)
    assert governor.wait_ms == 10


@given(st.booleans(), st.floats(min_value=0, max_value=1e7, allow_nan=False))
def test_the_next_wait_is_short_or_quiet_and_quiet_only_after_the_spell(brought, quiet_for_ms):
    wait = WAITS.next_wait(brought, quiet_for_ms)
    assert wait in (WAITS.short_ms, WAITS.quiet_ms)
    assert (wait == WAITS.quiet_ms) == (not brought and quiet_for_ms >= WAITS.quiet_after_ms)


def test_only_consumers_on_the_short_wait_are_governed_and_only_when_the_quiet_wait_is_longer():
    assert govern(Consumer(Fetcher(10)), WAITS) is not None
    assert govern(Consumer(Fetcher(500)), WAITS) is None  # a background subscription
    assert govern(Consumer(Fetcher(10)), FetchWaits(10, 10, 2000)) is None  # governing off
    assert govern(Consumer(Fetcher(10)), FetchWaits(10, 0, 2000)) is None


def test_a_consumer_without_the_expected_fetcher_is_left_alone_and_said_so(caplog):
    assert govern(Consumer(object()), WAITS) is None
    assert govern(object(), WAITS) is None
    assert "not governed" in caplog.text
