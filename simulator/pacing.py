"""Publishing at a steady rate: the simulator's plays and `make bench`'s latency loads.

Item n (from 0) is due `n / rate` seconds after the start. Whatever is due is sent at once (a
pacer that fell behind catches up instead of drifting), then the pacer sleeps until the next item
is due. `send` is awaited for each item in order; it should only hand the item to a producer
(not wait for the broker's ack), or the rate becomes the round trip's.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


async def pace(items: Iterable[T], rate: float, send: Callable[[T], Awaitable[object]], *,
               duration: float | None = None, stop: asyncio.Event | None = None,
               clock: Callable[[], float] = time.monotonic) -> int:
    """Send `items` at `rate` per second until they run out, the items due within `duration`
    seconds are sent, or `stop` is set; returns how many were sent."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    source = iter(items)
    # with a duration, exactly the items due before it ends: a late wake-up sends them, not fewer
    last = math.ceil(duration * rate - 1e-9) if duration is not None else math.inf
    started = clock()
    sent = 0
    while True:
        elapsed = clock() - started
        due = min(int(elapsed * rate) + 1, last)
        while sent < due:
            if stop is not None and stop.is_set():  # checked per item: a pacer catching up stops too
                return sent
            item = next(source, _END)
            if item is _END:
                return sent
            await send(item)
            sent += 1
        if sent >= last or (stop is not None and stop.is_set()):
            return sent
        wait = max(0.0, started + sent / rate - clock())
        if stop is None:
            await asyncio.sleep(wait)
        else:
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                pass


_END = object()
