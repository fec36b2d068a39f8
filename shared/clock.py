"""How far the platform's clock is set from the host's: zero in production, moved for tests and drills.

`shared.envelope.now()` (and so `china_today()`) is the host's clock plus this offset; every China
date or time a service decides with comes from there. A service applies its CLOCK_OFFSET_SECONDS
setting once at start (`set_offset`, from its app factory), never at import, so a test can start a
platform a little before China midnight without waiting for one.

Some times stay on the host's real clock on purpose, because the instant they are compared with was
set by someone outside the platform in real time: the validity window of a partner's signing key
(`real_time` below, used by shared.signing), the `iat`/`exp` of an API bearer token (shared.tokens),
and what Redis and Kafka keep time with themselves (key TTLs, the gateway's rate buckets, message
timestamps).
"""

from __future__ import annotations

from datetime import datetime, timedelta

# A year and a month each way reaches any day of the coming year (the last day of any month, a
# leap day) and refuses a value given in milliseconds by mistake.
MAX_OFFSET_SECONDS = 400 * 86_400

_offset = timedelta(0)


def set_offset(seconds: float) -> None:
    """Move the platform's clock `seconds` from the host's (negative: back). Called once at start."""
    global _offset
    if not -MAX_OFFSET_SECONDS <= seconds <= MAX_OFFSET_SECONDS:
        raise ValueError(f"a clock offset is at most {MAX_OFFSET_SECONDS} seconds either way, not {seconds}")
    _offset = timedelta(seconds=seconds)


def offset() -> timedelta:
    """How far the platform's clock is from the host's now."""
    return _offset


def real_time(platform_time: datetime) -> datetime:
    """The host's real instant of a moment read off the platform's clock (the offset taken back out)."""
    return platform_time - _offset
