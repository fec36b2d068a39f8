"""Redis state of 对账 with the HIS and of the drift check (the settlement service).

Keys (README, "Redis keys"):
- `stl:ild:{institution}:{YYYYMMDD}` hash: the platform's ledger of the institution-day, written only
                           by the settlement library's Functions as they settle, refund and reverse
                           (ledger.lua); read here
- `stl:ihr:{institution}:{YYYYMMDD}:{report_id}` hash part -> one part of an InstitutionDailyDetail
- `stl:ird:{event_id}`     digest of a HIS report's payload, so a reused event_id with another body is refused
                           DUPLICATE_REPORT_CONFLICT (issue 21)
- `stl:irc:{event_id}`     an InstitutionReconciled answer's messages as published (a redelivery answers
                           them again)
- `stl:drift:{person}`     hash bureau_seq -> "platform|in_flight|snapshot" fen of a BalanceSnapshot that
                           found the cache drifted (bureau.lua, bureau_movement), to announce it again
                           when the snapshot is redelivered
It reads `stl:inst` (designated institutions, storage/accounts.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from shared.state import calling_functions
from services.settlement.storage.library import load
from services.settlement.storage.parts import keep_part
from services.settlement.domain.his_reconciliation import Book, ChargeAmounts, Totals

_TOTALS = (b"t:charges", b"t:borne", b"t:own", b"t:family", b"t:cash", b"t:refunds", b"t:refunded")


@dataclass(frozen=True)
class LedgerItem:
    """One ChargeSettled (refund_id None, amounts), RefundSettled (refund_id, refunded) or
    PaymentReversed (dispute_id, refunded: the amount reversed) as a ledger entry (ledger.lua)."""

    institution_code: str
    day: str  # YYYYMMDD, China date of settled_at
    charge_id: str
    refund_id: str | None = None
    amounts: ChargeAmounts | None = None
    refunded: int = 0
    dispute_id: str | None = None  # a PaymentReversed: `refunded` is then the amount reversed

    def encoded(self) -> list:
        """As `ledger_record` takes it: institution, day, field, value, kind, amounts."""
        where = [self.institution_code, self.day]
        if self.dispute_id is not None:
            return [*where, f"v:{self.charge_id}:{self.dispute_id}", str(self.refunded), "v", self.refunded]
        if self.refund_id is not None:
            return [*where, f"r:{self.charge_id}:{self.refund_id}", str(self.refunded), "r", self.refunded]
        a = self.amounts
        assert a is not None
        return [*where, f"c:{self.charge_id}", f"{a.borne}|{a.own}|{a.family}|{a.cash}", "c", a.borne, a.own,
                a.family, a.cash]


class LedgerStore:
    def __init__(self, redis: Redis, ledger_ttl: int, report_ttl: int) -> None:
        self._redis = redis
        self._ledger_ttl = ledger_ttl
        self._report_ttl = report_ttl

    async def load_functions(self) -> None:
        await load(self._redis)

    async def record(self, items: list[LedgerItem]) -> tuple[int, int]:
        """Add a batch of entries in one call, as the Functions add them (the upgrade's drain):
        (new, conflicting)."""
        if not items:
            return 0, 0
        arg = orjson.dumps([i.encoded() for i in items])

        async def run() -> list:
            try:
                return [await self._redis.fcall("ledger_record", 0, self._ledger_ttl, arg)]
            except Exception as exc:  # noqa: BLE001 - handed to calling_functions, re-raised below
                return [exc]

        [reply] = await calling_functions(run, self.load_functions)
        if isinstance(reply, Exception):
            raise reply
        return int(reply[0]), int(reply[1])

    async def totals(self, institution_code: str, day: str) -> Totals:
        values = await self._redis.hmget(f"stl:ild:{institution_code}:{day}", _TOTALS)
        return Totals(*(int(v or 0) for v in values))

    async def book(self, institution_code: str, day: str) -> Book:
        charges: dict[str, ChargeAmounts] = {}
        refunds: dict[tuple[str, str], int] = {}
        for field, value in (await self._redis.hgetall(f"stl:ild:{institution_code}:{day}")).items():
            kind, _, rest = field.decode().partition(":")
            if kind == "c":
                charges[rest] = ChargeAmounts(*map(int, value.split(b"|")))
            elif kind == "r":
                charge_id, refund_id = rest.split(":")
                refunds[charge_id, refund_id] = int(value)
        return Book(charges, refunds)

    async def reversals(self, institution_code: str, day: str) -> tuple[int, int, list[tuple[str, str, int]]]:
        """The day's upheld disputes reversed (owed by the institution to the fund): count, fen, and
        each (charge_id, dispute_id, fen) in id order."""
        raw = await self._redis.hgetall(f"stl:ild:{institution_code}:{day}")
        rows = sorted((*k.decode()[2:].split(":"), int(v)) for k, v in raw.items() if k.startswith(b"v:"))
        return int(raw.get(b"t:reversals") or 0), int(raw.get(b"t:reversed") or 0), rows

    async def same_report(self, event_id: str, digest: str) -> bool:
        """Whether a report with this event_id, if one came before, had this body (its digest is kept
        as long as answers are): a corrected report must not get the old report's answer."""
        earlier = await self._redis.set(f"stl:ird:{event_id}", digest, nx=True, get=True, ex=self._report_ttl)
        return earlier is None or earlier.decode() == digest

    async def is_designated(self, institution_code: str) -> bool:
        return bool(await self._redis.hexists("stl:inst", institution_code))

    async def detail_part(self, institution_code: str, day: str, report_id: str, part: int, parts: int,
                          body: dict) -> list[dict] | None:
        """Keep one part of a detail; every part once all `parts` are in, else None. Raises
        PartsInconsistent when the parts kept disagree on how many there are."""
        stored = await keep_part(self._redis, f"stl:ihr:{institution_code}:{day}:{report_id}", self._report_ttl,
                                 part, {"parts": parts, **body})
        if any(p["parts"] != parts for p in stored.values()):
            raise PartsInconsistent(sorted({p["parts"] for p in stored.values()}))
        if set(stored) != set(range(1, parts + 1)):
            return None
        return [stored[i] for i in range(1, parts + 1)]

    async def answered(self, event_id: str, values: list[bytes]) -> list[bytes]:
        """Record an answer's messages unless an answer is recorded for this event id; the recorded
        one is returned."""
        encoded = orjson.dumps([v.decode() for v in values])
        earlier = await self._redis.set(f"stl:irc:{event_id}", encoded, nx=True, get=True, ex=self._report_ttl)
        return values if earlier is None else _messages(earlier)

    async def recorded(self, event_id: str) -> list[bytes] | None:
        raw = await self._redis.get(f"stl:irc:{event_id}")
        return None if raw is None else _messages(raw)


def _messages(raw: bytes) -> list[bytes]:
    return [v.encode() for v in orjson.loads(raw)]


class PartsInconsistent(ValueError):
    pass
