"""The `settlement` Function library: its Lua files, in the order they are loaded as one library.

Each file is a named home of settlement rules; a file may use the locals of the files before it:
the payer index's reader (shared/binding_index.lua), then common.lua (account entries, lines,
postings, which refusals are recorded), waterfall.lua (who pays), quotes.lua (预结算 holds),
charges.lua (charges, refunds, reversals), bureau.lua (the bureaus' events).
"""

from __future__ import annotations

from functools import cache

from shared.binding_index import LUA_READER
from shared.function_library import library

NAME = "settlement"
FILES = ("common.lua", "waterfall.lua", "quotes.lua", "charges.lua", "bureau.lua")


@cache
def source() -> str:
    """The library's source, read on first use (no file I/O at import)."""
    return library(NAME, LUA_READER, *(("services.settlement.storage", f) for f in FILES))
