"""The settlement service's Redis state, changed only through the Functions in settlement.lua.

Keys this service owns (README, "Redis keys"):
- `stl:acct:{bucket}`      hash person_id -> "balance|bureau_seq|region|scheme|account_seq|watermark"
                           (projection of bureau.accounts, debited and credited by settlement itself)
- `stl:pp:{person}`        list of "account_seq|signed fen": the platform's postings to the account
                           after the last snapshot's watermark (trimmed by each BalanceSnapshot)
- `stl:inst`               hash institution code -> "region|kind" (projection of bureau.institutions)
- `stl:charge:{institution}:{charge_id}` hash: the settled charge, its lines, refunds (idempotency)
- `stl:rej:{institution}:{event_id}` the reason a charge or refund message was refused (idempotency;
                           refusals read off a projection are never recorded)
- `stl:spent:{grantor}`    hash "{institution}:{charge_id}" -> "day|beneficiary|paid|refunded|at" (消费查询)
- `stl:posted:{region}:{day}` hash posting_id -> "direction|amount|person" (对账)
- `stl:rpt:{region}:{day}:{report_id}` hash part -> the part of a bureau's daily report (对账 in parts)
It reads `bnd:pay:{beneficiary}`, owned by the binding service (shared/binding_index.py).
Institution codes hold no ':', so `{institution}:{...}` keys and fields never collide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.envelope import CHINA_TZ
from shared.state import person_bucket
from services.settlement.domain.consumption import Spent
from services.settlement.domain.ids import posting_prefix
from services.settlement.domain.waterfall import Line

LIBRARY = files("services.settlement.storage").joinpath("settlement.lua").read_text


@dataclass(frozen=True)
class ChargeToSettle:
    event_id: str
    institution_code: str
    institution_region: str
    charge_id: str
    digest: str
    borne: int
    patient_id: str
    day: int  # YYYYMMDD of the charge, China time
    settled_at: str  # the platform's clock
    charged_at: str = ""  # as the HIS sent it, for the outcome


@dataclass(frozen=True)
class RefundToApply:
    event_id: str
    institution_code: str
    charge_id: str
    refund_id: str
    digest: str
    amount: int
    settled_at: str  # the platform's clock: it dates the credit postings and the 对账 day


@dataclass(frozen=True)
class Movement:
    """A bureau event on an account: credit | debit | snapshot (amount = the snapshot's balance)."""

    person_id: str
    kind: str
    amount: int
    bureau_seq: int
    region: str
    applied_through: int = 0


def _china_day(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(CHINA_TZ).strftime("%Y%m%d")


@dataclass(frozen=True)
class Applied:
    """What a Function answered: SETTLED/REFUNDED with lines, REJECTED with a code, CONFLICT, or
    ERROR (the call failed: a defect)."""

    status: str
    lines: list[Line]
    at: str = ""
    reason: str = ""
    replay: bool = False
    patient_id: str = ""


def _decode_lines(encoded: str) -> list[Line]:
    lines = []
    for part in filter(None, encoded.split(";")):
        source, person, region, order, amount, after, seq = (part.split(",") + [""])[:7]
        lines.append(Line(source, int(amount), person or None, region or None, int(order) if order else None,
                          int(after) if after else None, int(seq) if seq else None))
    return lines


def _applied(reply: list | Exception) -> Applied:
    if isinstance(reply, Exception):
        # One charge's Function call failed (a defect, not the connection): the others in the
        # pipeline have been applied; this one is reported so the caller can dead-letter it.
        return Applied("ERROR", [], reason=f"{reply.__class__.__name__}: {str(reply)[:200]}")
    status = reply[0].decode()
    if status in ("SETTLED", "REFUNDED"):
        patient = reply[4].decode() if len(reply) > 4 else ""
        return Applied(status, _decode_lines(reply[1].decode()), reply[2].decode(), replay=reply[3] == b"1",
                       patient_id=patient)
    if status == "REJECTED":
        return Applied(status, [], reason=reply[1].decode())
    return Applied(status, [])


def _spent_field(institution_code: str, charge_id: str) -> str:
    return f"{institution_code}:{charge_id}"


class SettlementStore:
    def __init__(self, redis: Redis, provinces: list[str], rejection_ttl: int, record_ttl: int,
                 report_ttl: int = 7 * 86_400) -> None:
        self._redis = redis
        self._provinces = ",".join(provinces)
        self._rejection_ttl = rejection_ttl
        self._record_ttl = record_ttl
        self._report_ttl = report_ttl

    async def load_functions(self) -> None:
        """Once at start-up; REPLACE so a new release's library takes over."""
        await self._redis.function_load(LIBRARY(), replace=True)

    async def settle(self, charges: list[ChargeToSettle]) -> list[Applied]:
        """One round trip for the whole batch; each charge is atomic on its own."""
        return await self._run(self._settle_pipeline, charges)

    async def refund(self, refunds: list[RefundToApply]) -> list[Applied]:
        return await self._run(self._refund_pipeline, refunds)

    async def _run(self, build, items) -> list[Applied]:
        if not items:
            return []
        replies = await build(items).execute(raise_on_error=False)
        if any(isinstance(r, ResponseError) and "function not found" in str(r).lower() for r in replies):
            # The library is gone (a Redis replaced or flushed under us): load it again and redo
            # the batch. Safe, because each call is idempotent: what was applied answers as a replay.
            await self.load_functions()
            replies = await build(items).execute(raise_on_error=False)
        return [_applied(r) for r in replies]

    def _settle_pipeline(self, charges: list[ChargeToSettle]):
        pipe = self._redis.pipeline(transaction=False)
        for c in charges:
            inst = c.institution_code
            pipe.fcall("settle", 2, f"stl:charge:{inst}:{c.charge_id}", f"stl:rej:{inst}:{c.event_id}",
                       _spent_field(inst, c.charge_id), c.digest, c.borne, c.patient_id, c.day, c.settled_at,
                       self._provinces, self._rejection_ttl, self._record_ttl, _china_day(c.settled_at),
                       inst, c.institution_region, posting_prefix(inst, c.charge_id))
        return pipe

    def _refund_pipeline(self, refunds: list[RefundToApply]):
        pipe = self._redis.pipeline(transaction=False)
        for r in refunds:
            inst = r.institution_code
            pipe.fcall("refund", 2, f"stl:charge:{inst}:{r.charge_id}", f"stl:rej:{inst}:{r.event_id}",
                       _spent_field(inst, r.charge_id), r.refund_id, r.amount, r.settled_at, r.digest,
                       self._rejection_ttl, _china_day(r.settled_at), self._record_ttl,
                       posting_prefix(inst, r.charge_id, r.refund_id))
        return pipe

    async def register(self, people: list[tuple[str, str, str, int | None]]) -> None:
        """(person_id, region, scheme e|r, opening balance) for a batch of registrations."""
        pipe = self._redis.pipeline(transaction=False)
        for person_id, region, scheme, balance in people:
            pipe.fcall("register_person", 0, person_id, region, scheme, "" if balance is None else balance)
        await pipe.execute()

    async def register_institutions(self, institutions: list[tuple[str, str, str]]) -> None:
        """(institution code, region, kind) for a batch of InstitutionRegistered."""
        pipe = self._redis.pipeline(transaction=False)
        for code, region, kind in institutions:
            pipe.fcall("register_institution", 0, code, region, kind)
        await pipe.execute()

    async def bureau_movements(self, moves: list[Movement]) -> list[tuple[str, int]]:
        """Each movement's outcome (APPLIED, NEGATIVE, STALE or a refusal) and the balance after."""
        pipe = self._redis.pipeline(transaction=False)
        for m in moves:
            pipe.fcall("bureau_movement", 0, m.person_id, m.kind, m.amount, m.bureau_seq, m.region,
                       m.applied_through)
        return [(r[0].decode(), int(r[1])) for r in await pipe.execute()]

    async def report_part(self, region: str, day: str, report_id: str, part: int, parts: int,
                          body: dict) -> list[dict] | None:
        """Keep one part of a bureau's daily report; every part's body once all `parts` are in
        (parts that disagree on how many there are never complete), else None."""
        key = f"stl:rpt:{region}:{day}:{report_id}"
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(key, str(part), json.dumps({"parts": parts, **body}, separators=(",", ":")))
        pipe.expire(key, self._report_ttl)
        pipe.hgetall(key)
        stored = {int(k): json.loads(v) for k, v in (await pipe.execute())[-1].items()}
        if set(stored) != set(range(1, parts + 1)) or any(p["parts"] != parts for p in stored.values()):
            return None
        return [stored[i] for i in range(1, parts + 1)]

    async def spending(self, grantor_id: str) -> list[Spent]:
        """Every payment from the grantor's account, with what has been refunded of it."""
        rows = []
        for field, value in (await self._redis.hgetall(f"stl:spent:{grantor_id}")).items():
            institution, charge_id = field.decode().split(":", 1)
            day, beneficiary, paid, refunded, at = value.decode().split("|")
            rows.append(Spent(charge_id, datetime.strptime(day, "%Y%m%d").date(), beneficiary, int(paid),
                              int(refunded), at, institution))
        return rows

    async def postings_of(self, region: str, day: str) -> dict[str, tuple[str, int, str]]:
        """What the platform posted to `region`'s book on `day` (YYYYMMDD): id -> (direction, fen, person)."""
        rows = {}
        for posting_id, value in (await self._redis.hgetall(f"stl:posted:{region}:{day}")).items():
            direction, amount, person = value.decode().split("|")
            rows[posting_id.decode()] = (direction, int(amount), person)
        return rows

    async def balance(self, person_id: str) -> int | None:
        """For tests and operators: the cached balance in fen."""
        raw = await self._redis.hget(f"stl:acct:{person_bucket(person_id)}", person_id)
        return int(raw.split(b"|")[0]) if raw else None

    async def account_seq(self, person_id: str) -> int | None:
        """For tests and operators: the last platform posting's account_seq."""
        raw = await self._redis.hget(f"stl:acct:{person_bucket(person_id)}", person_id)
        return int(raw.split(b"|")[4]) if raw else None
