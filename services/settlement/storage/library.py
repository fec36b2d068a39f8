"""The `settlement` Function library: its Lua files, in the order they are loaded as one library.

Each file is a named home of settlement rules; a file may use the locals of the files before it:
the payer index's reader (shared/binding_index.lua), then common.lua (account entries, lines,
postings, which refusals are recorded), ledger.lua (the HIS ledger), waterfall.lua (who pays), quotes.lua (预结算 holds),
charges.lua (charges, refunds, reversals), bureau.lua (the bureaus' events).
"""

from __future__ import annotations

from functools import cache

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.binding_index import LUA_READER
from shared.function_library import library

NAME = "settlement"
FILES = ("common.lua", "ledger.lua", "waterfall.lua", "quotes.lua", "charges.lua", "bureau.lua")
# The release before ledger.lua joined this library kept the HIS ledger's Function, `ledger_record`,
# in a library of its own: two libraries cannot register one name, so that one goes first.
RETIRED = "settlement_ledger"


@cache
def source() -> str:
    """The library's source, read on first use (no file I/O at import)."""
    return library(NAME, LUA_READER, *(("services.settlement.storage", f) for f in FILES))


async def load(redis: Redis) -> None:
    """Once at start-up (and when a replaced Redis lost it); REPLACE so a new release's library
    takes over."""
    try:
        await redis.function_delete(RETIRED)
    except ResponseError as exc:
        if "library not found" not in str(exc).lower():
            raise
    await redis.function_load(source(), replace=True)
