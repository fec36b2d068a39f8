"""The settlement service's Redis state, changed only through the `settlement` Function library
(storage/library.py: common.lua, waterfall.lua, quotes.lua, charges.lua, bureau.lua).

Keys this service owns (README, "Redis keys"):
- `stl:acct:{bucket}`      hash person_id -> "balance|bureau_seq|region|scheme|account_seq|watermark|held"
                           (projection of bureau.accounts, debited and credited by settlement itself;
                           held = fen held by live quotes, not available to other charges)
- `stl:pp:{person}`        list of "account_seq|signed fen": the platform's postings to the account
                           after the last snapshot's watermark (trimmed by each BalanceSnapshot)
- `stl:inst`               hash institution code -> "region|kind" (projection of bureau.institutions)
- `stl:inst:name`          hash institution code -> its registered name (the consumption query names it)
- `stl:ikeys`              hash institution code -> JSON {"region", "keys": [{key_id, public_key, not_before,
                           not_after}]}: the institution's public keys, from the same registration (contract
                           version 3; a later registration replaces the list)
- `stl:moving`             hash person_id -> the region his own bureau transferred him to (PersonTransferred),
                           until that region registers him
- `stl:charge:{institution}:{charge_id}` hash: the settled charge, its lines, refunds (idempotency)
- `stl:rej:{institution}:{event_id}` the reason a charge or refund message was refused (idempotency;
                           refusals read off a projection are never recorded)
- `stl:spent:{grantor}`    hash "{institution}:{charge_id}" -> "day|beneficiary|paid|refunded|at" (消费查询)
- `stl:posted:{region}:{day}` hash posting_id -> "direction|amount|person" (对账)
- `stl:rpt:{region}:{day}:{report_id}` hash part -> the part of a bureau's daily report (对账 in parts)
- `stl:used:{binding_id}`  hash YYYYMM -> fen a binding paid or holds in that calendar month (China time,
                           the charge's day), against its monthly limit; refunds give back in that month
- `stl:quote:{institution}:{charge_id}` hash: the charge's quote (预结算): quote_id, digest, lines (with
                           binding ids), patient, borne, month, at, until (epoch ms), state
                           held|settled|released, reason, released_at (kept as long as a charge record)
- `stl:quote:due`          zset "{institution}:{charge_id}" by until (epoch ms): held quotes to expire
- `stl:bq:{binding_id}`    set of "{institution}:{charge_id}": the held quotes a binding pays in
                           (released when the binding is paused or revoked)
- `stl:quote:outbox`       list of cjson [quote_id, "{institution}:{charge_id}", reason, lines, released_at]:
                           releases to announce as ChargeQuoteReleased, removed once published
The charge record (`stl:charge:...`) also keeps `month` (YYYYMM of the limits used) and each line's
binding id (8th field of a line).
It reads `bnd:pay:{beneficiary}`, owned by the binding service (shared/binding_index.py).
Institution codes hold no ':', so `{institution}:{...}` keys and fields never collide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import lru_cache
from datetime import datetime

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.envelope import CHINA_TZ
from shared.durability import Durability, ReplicaMissing
from shared.state import calling_functions
from services.settlement.storage.layouts import (INSTITUTION_KEYS, INSTITUTION_NAMES, OUTBOX, SCHEMES,
                                                  AccountEntry, OutboxItem, account_key, decode_lines, decode_posting,
                                                  decode_spent, encode_institution_keys, postings_key, spent_key)
from services.settlement.storage.library import load, source
from services.settlement.storage.parts import keep_part
from services.settlement.domain.consumption import Spent
from services.settlement.domain.ids import posting_prefix, reversal_prefix
from services.settlement.domain.lines import Line

_dumps = orjson.dumps  # the Function reads it with cjson; bytes go to Redis as they are
LIBRARY = source  # the library's source, read on first use


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
    quote_id: str = ""  # the quote the charge names ('' when none; a live quote is posted either way)
    op: str = "S"  # S settle (ChargeSubmitted), Q quote (ChargeQuoteRequested), C cancel (ChargeQuoteCancelled)


@dataclass(frozen=True)
class RefundToApply:
    event_id: str
    institution_code: str
    charge_id: str
    refund_id: str
    digest: str
    amount: int
    settled_at: str  # the platform's clock: it dates the credit postings and the 对账 day
    lines: str = ""  # the payer lines named (contract.ChargeRefunded.named_lines), '' for last paid first


@dataclass(frozen=True)
class Registration:
    """A PersonRegistered believed (its bureau may register him): scheme e|r, opening balance fen."""

    person_id: str
    region: str
    scheme: str
    balance: int | None


@dataclass(frozen=True)
class Transfer:
    """A PersonTransferred believed: `to_region` may register the person next."""

    person_id: str
    to_region: str


@dataclass(frozen=True)
class PersonState:
    """What settlement's projection says of a person: where he is registered, where he may move."""

    region: str | None
    moving_to: str | None


@dataclass(frozen=True)
class InstitutionRegistration:
    """An InstitutionRegistered as stored: its public keys as `InstitutionKey.model_dump(mode="json")`."""

    code: str
    region: str
    kind: str
    public_keys: list[dict]
    signer_region: str
    name: str = ""


@dataclass(frozen=True)
class Movement:
    """A bureau event on an account: credit | debit | snapshot (amount = the snapshot's balance)."""

    person_id: str
    kind: str
    amount: int
    bureau_seq: int
    region: str
    applied_through: int = 0


@lru_cache(maxsize=256)
def _china_day(iso: str) -> str:
    # A batch's charges share the platform's clock to the second: parse each instant once.
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
    until_ms: int = 0  # QUOTED: held until (epoch ms)
    quote_id: str = ""  # QUOTED: the quote's id (a quote made again after a release: quote_id.2, .3, ...)


@dataclass(frozen=True)
class Reversal:
    """An upheld dispute to apply: the grantor line of the charge to give back (reverse_payment)."""

    dispute_id: str
    institution_code: str
    charge_id: str
    grantor_id: str
    binding_id: str
    at: str  # the platform's clock: it dates the credit posting and the 对账 day


@dataclass(frozen=True)
class Reversed:
    """reverse_payment's answer: REVERSED with the credit line (none when refunds had returned the
    whole line already), what the line paid and what refunds had returned of it; or UNKNOWN_CHARGE
    / UNKNOWN_LINE (nothing changed)."""

    status: str
    lines: list[Line] = field(default_factory=list)
    at: str = ""
    replay: bool = False
    patient_id: str = ""
    paid: int = 0
    refunded_before: int = 0


@dataclass(frozen=True)
class MovementApplied:
    """bureau_movement's answer; for a snapshot that found the cache drifted (or its redelivery),
    what the platform held before and what its postings after the watermark explain (对账 per
    account, services/settlement/usecases/his_reconciliation.py)."""

    outcome: str
    balance: int
    platform_balance: int | None = None
    in_flight: int | None = None


@dataclass(frozen=True)
class Account:
    """A person's account as settlement keeps it: balance in fen (may be below zero), region, scheme."""

    balance: int
    region: str
    scheme: str  # employee | resident
    held: int = 0  # held by live quotes


@dataclass(frozen=True)
class Release(OutboxItem):
    """A quote released by the sweep or a binding's pause/revocation, waiting in the outbox."""

    raw: bytes = b""  # the outbox item as stored, to remove it once published


# SETTLED's reason when a quote of the charge was released on the way (announced through the outbox)
RELEASED_ON_THE_WAY = "QUOTE_RELEASED"


def _applied(reply: list[str | bool]) -> Applied:
    """One item of a batch Function's cjson answer (strings; false for a missing field)."""
    status = reply[0]
    if status in ("SETTLED", "REFUNDED"):
        return Applied(status, decode_lines(reply[1]), reply[2], replay=reply[3] == "1",
                       patient_id=(reply[4] or "") if len(reply) > 4 else "",
                       reason=RELEASED_ON_THE_WAY if len(reply) > 5 and reply[5] == "R" else "")
    if status == "QUOTED":
        return Applied(status, decode_lines(reply[1]), reply[2], replay=reply[4] == "1", until_ms=int(reply[3]),
                       quote_id=(reply[5] or "") if len(reply) > 5 else "")
    if status == "RELEASED":
        return Applied(status, decode_lines(reply[1]), reply[2], reason=reply[3], replay=reply[4] == "1")
    if status == "REJECTED":
        return Applied(status, [], reason=reply[1])
    if status == "ERROR":
        # One charge's settlement failed inside the batch (a defect): the others have been
        # applied; this one is reported so the caller can dead-letter it.
        return Applied(status, [], reason=str(reply[1]))
    return Applied(status, [])


def _failed(error: Exception, count: int) -> list[Applied]:
    """The whole call failed (a defect, not the connection): each of its items is an ERROR."""
    failed = Applied("ERROR", [], reason=f"{error.__class__.__name__}: {str(error)[:200]}")
    return [failed] * count


# Most items in one Function call: the call holds Redis for its whole run (some 50 µs an item),
# so a large batch goes as a few calls in one pipeline (still one round trip) and other clients
# of the same Redis wait at most one call.
CALL_ITEMS = 250
MOVING = "stl:moving"
DURABLE = "stl:durable"  # written before each wait for the replicas (shared/durability.py)
log = logging.getLogger("settlement")


class SettlementStore:
    def __init__(self, redis: Redis, provinces: list[str], rejection_ttl: int, record_ttl: int,
                 report_ttl: int = 7 * 86_400, quote_hold_ms: int = 15 * 60_000,
                 durability: Durability | None = None) -> None:
        self._redis = redis
        # what a batch's writes wait for before anything of it is acknowledged (issue 23)
        self._durability = durability or Durability(key=DURABLE)
        self._provinces = ",".join(provinces)
        self._rejection_ttl = rejection_ttl
        self._record_ttl = record_ttl
        self._report_ttl = report_ttl
        # What every item of a batch call shares (charges.lua, settle_batch / refund_batch).
        self._settle_common = [self._provinces, str(rejection_ttl), str(record_ttl)]
        self._quote_hold_ms = str(quote_hold_ms)
        self._now_ms = "0"  # the platform's clock of the batch being encoded (settle)
        self._refund_common = [str(rejection_ttl), str(record_ttl)]

    async def load_functions(self) -> None:
        await load(self._redis)

    async def settle(self, charges: list[ChargeToSettle], now_ms: int = 0) -> list[Applied]:
        """One round trip for the whole batch, one Function call per CALL_ITEMS charges; each
        charge (or quote request, or cancellation) is applied under its own pcall (charges.lua,
        settle_batch). `now_ms`, the platform's clock, decides whether a quote has expired."""
        common = [*self._settle_common, str(now_ms), self._quote_hold_ms]
        return await self._run("settle_batch", lambda items: self._settle_args(items, common), charges)

    async def refund(self, refunds: list[RefundToApply]) -> list[Applied]:
        return await self._run("refund_batch", self._refund_args, refunds)

    async def _run(self, function: str, encode, items) -> list[Applied]:
        if not items:
            return []
        calls = [encode(items[i:i + CALL_ITEMS]) for i in range(0, len(items), CALL_ITEMS)]
        # each charge is idempotent: redone after a reload, what was applied answers as a replay
        replies = await calling_functions(lambda: self._call(function, calls), self.load_functions)
        answers: list[Applied] = []
        for i, reply in enumerate(replies):
            if isinstance(reply, Exception):
                answers += _failed(reply, min(CALL_ITEMS, len(items) - i * CALL_ITEMS))
            else:
                answers += map(_applied, orjson.loads(reply.decode("utf-8", "replace")))
        return answers

    async def _call(self, function: str, calls: list[str]) -> list:
        if len(calls) == 1 and not self._durability.waits:
            try:
                return [await self._redis.fcall(function, 0, calls[0])]
            except ResponseError as e:
                return [e]
        pipe = self._redis.pipeline(transaction=False)
        for arg in calls:
            pipe.fcall(function, 0, arg)
        return await self._durability.execute(pipe, raise_on_error=False)

    async def durability_probe(self) -> None:
        """At start, with replicas required: a server that cannot wait for them (AOF off) stops the
        start with its error, instead of failing batch by batch; missing replicas are only logged
        (the first batch waits for them)."""
        if not self._durability.waits:
            return
        pipe = self._redis.pipeline(transaction=False)
        self._durability.add_wait(pipe)
        try:
            self._durability.check(await pipe.execute())
        except ReplicaMissing as exc:
            log.error("at start: %s", exc)

    @property
    def durability(self) -> Durability:
        return self._durability

    def _settle_args(self, charges: list[ChargeToSettle], common: list[str]) -> bytes:
        return _dumps([common, [
            [c.institution_code, c.charge_id, c.event_id, c.digest, c.borne, c.patient_id, c.day, c.settled_at,
             _china_day(c.settled_at), c.institution_region, posting_prefix(c.institution_code, c.charge_id)]
            if c.op == "S" and not c.quote_id else
            [c.institution_code, c.charge_id, c.event_id, c.digest, c.borne, c.patient_id, c.day, c.settled_at,
             _china_day(c.settled_at), c.institution_region, posting_prefix(c.institution_code, c.charge_id),
             c.quote_id, c.op]
            for c in charges]])

    async def reverse(self, reversals: list[Reversal]) -> list[Reversed]:
        """Apply upheld disputes in order, one pipeline (charges.lua, reverse_payment)."""
        if not reversals:
            return []

        async def run() -> list:
            pipe = self._redis.pipeline(transaction=False)
            for r in reversals:
                pipe.fcall("reverse_payment", 0, f"{r.institution_code}:{r.charge_id}", r.dispute_id,
                           r.grantor_id, r.binding_id, r.at, _china_day(r.at), self._record_ttl,
                           reversal_prefix(r.institution_code, r.charge_id, r.dispute_id))
            return await self._durability.execute(pipe, raise_on_error=False)

        out = []
        for reply in await calling_functions(run, self.load_functions):
            if isinstance(reply, Exception):
                raise reply
            status = reply[0].decode()
            if status != "REVERSED":
                out.append(Reversed(status))
                continue
            out.append(Reversed(status, decode_lines(reply[1].decode()), reply[2].decode(), reply[3] == b"1",
                                reply[4].decode(), int(reply[5]), int(reply[6])))
        return out

    # -- quotes (预结算) ------------------------------------------------------------------------
    async def release_due(self, now_ms: int, at: str, most: int = 500) -> int:
        """Release, whole, every quote held until `now_ms` or earlier; each release is queued in the
        outbox. Answers how many were due."""
        return await self._call_one("release_due", str(now_ms), at, str(most))

    async def release_binding(self, binding_id: str, beneficiary_id: str, reason: str, at: str) -> int:
        """Release every quote the binding holds for (unless the payer index shows it in force and
        not paused); each release is queued in the outbox."""
        return await self._call_one("release_binding", binding_id, beneficiary_id, reason, at)

    async def _call_one(self, function: str, *args: str) -> int:
        async def run() -> list:
            pipe = self._redis.pipeline(transaction=False)
            pipe.fcall(function, 0, *args)
            return await self._durability.execute(pipe, raise_on_error=False)
        [reply] = await calling_functions(run, self.load_functions)
        if isinstance(reply, Exception):
            raise reply
        return int(reply)

    async def outbox(self, most: int = 500) -> list[Release]:
        """The oldest releases not yet announced."""
        out = []
        for raw in await self._redis.lrange(OUTBOX, 0, most - 1):
            out.append(replace(Release.decode(raw), raw=raw))
        return out

    async def announced(self, releases: list[Release]) -> None:
        """Remove published releases from the outbox (each item is unique: a quote is released once)."""
        if releases:
            pipe = self._redis.pipeline(transaction=False)
            for r in releases:
                pipe.lrem(OUTBOX, 1, r.raw)
            await pipe.execute()

    async def used(self, binding_id: str, month: str) -> int:
        """What the binding paid or holds in `month` (YYYYMM) against its monthly limit."""
        return int(await self._redis.hget(f"stl:used:{binding_id}", month) or 0)

    async def used_many(self, binding_ids: list[str], month: str) -> dict[str, int]:
        if not binding_ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for b in binding_ids:
            pipe.hget(f"stl:used:{b}", month)
        return {b: int(v or 0) for b, v in zip(binding_ids, await pipe.execute())}

    async def payers(self, beneficiary_id: str) -> dict[str, str]:
        """The payer index entries of a beneficiary (binding_id -> I-1 value), as the Function reads them."""
        return {k.decode(): v.decode() for k, v in (await self._redis.hgetall(f"bnd:pay:{beneficiary_id}")).items()}

    def _refund_args(self, refunds: list[RefundToApply]) -> bytes:
        return _dumps([self._refund_common, [
            [r.institution_code, r.charge_id, r.event_id, r.refund_id, r.amount, r.settled_at, r.digest,
             _china_day(r.settled_at), posting_prefix(r.institution_code, r.charge_id, r.refund_id), r.lines]
            for r in refunds]])

    async def register(self, people: list[tuple[str, str, str, int | None]]) -> None:
        """(person_id, region, scheme e|r, opening balance) for a batch of registrations."""
        await self.bureau_events([Registration(*p) for p in people])

    async def people(self, person_ids: list[str]) -> dict[str, PersonState]:
        """Each person's registered region and pending transfer, one round trip: what a bureau's
        registration or transfer of him is judged by (shared/bureau.py)."""
        if not person_ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for pid in person_ids:
            pipe.hget(account_key(pid), pid)
            pipe.hget(MOVING, pid)
        found = await pipe.execute()
        return {pid: PersonState(AccountEntry.decode(raw).region if raw else None, moving.decode() if moving else None)
                for pid, raw, moving in zip(person_ids, found[::2], found[1::2])}

    async def bureau_events(self, events: list[Registration | Transfer | Movement]) -> list[MovementApplied | None]:
        """Apply a batch of bureau.accounts events in their order, one pipeline: a movement's
        answer (APPLIED, NEGATIVE, STALE or a refusal, with a snapshot's drift figures from the
        same atomic step that applies it); None for a registration or a transfer."""
        if not events:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for e in events:
            if isinstance(e, Registration):
                pipe.fcall("register_person", 0, e.person_id, e.region, e.scheme, "" if e.balance is None else e.balance)
            elif isinstance(e, Transfer):
                pipe.fcall("transfer_person", 0, e.person_id, e.to_region)
            else:
                pipe.fcall("bureau_movement", 0, e.person_id, e.kind, e.amount, e.bureau_seq, e.region,
                           e.applied_through)
        replies = await self._durability.execute(pipe)
        out: list[MovementApplied | None] = []
        for e, r in zip(events, replies):
            if not isinstance(e, Movement):
                out.append(None)
                continue
            drift = (int(r[2]), int(r[3])) if len(r) > 3 else (None, None)
            out.append(MovementApplied(r[0].decode(), int(r[1]), *drift))
        return out

    async def register_institutions(self, institutions: list[tuple[str, str, str]]) -> None:
        """(institution code, region, kind), registered by their own region's bureau without keys
        (tests and the raw bench: such an institution signs nothing)."""
        await self.institutions_registered([InstitutionRegistration(code, region, kind, [], region)
                                            for code, region, kind in institutions])

    async def institutions_registered(self, registrations: list[InstitutionRegistration]) -> list[str]:
        """A batch of InstitutionRegistered, in order, one pipeline: each one's answer, OK or
        NOT_SIGNERS (registered in another region than its signer's: nothing changed)."""
        pipe = self._redis.pipeline(transaction=False)
        for r in registrations:
            pipe.fcall("register_institution", 0, r.code, r.region, r.kind,
                       encode_institution_keys(r.region, r.public_keys), r.signer_region, r.name)
        replies = await self._durability.execute(pipe)
        return [a.decode() if isinstance(a, bytes) else str(a) for a in replies]

    async def institution_names(self, codes: list[str]) -> dict[str, str]:
        """The registered name of each institution that has one (`stl:inst:name`), one HMGET."""
        if not codes:
            return {}
        return {code: raw.decode() for code, raw in zip(codes, await self._redis.hmget(INSTITUTION_NAMES, codes)) if raw}

    async def institution_keys(self, codes: list[str]) -> dict[str, bytes | None]:
        """The public keys each institution registered (as `institutions_registered` stored them),
        one HMGET for a batch's distinct signers."""
        if not codes:
            return {}
        return dict(zip(codes, await self._redis.hmget(INSTITUTION_KEYS, codes)))

    async def movements_applied(self, moves: list[Movement]) -> list[MovementApplied]:
        """Apply bureau events through bureau_movement, one pipeline: each one's outcome (APPLIED,
        NEGATIVE, STALE or a refusal) and the balance after; a snapshot's drift figures come back
        from the same atomic step that applies it."""
        return await self.bureau_events(moves)  # type: ignore[return-value]  # movements answer

    async def report_part(self, region: str, day: str, report_id: str, part: int, parts: int,
                          body: dict) -> list[dict] | None:
        """Keep one part of a bureau's daily report; every part's body once all `parts` are in
        (parts that disagree on how many there are never complete), else None."""
        stored = await keep_part(self._redis, f"stl:rpt:{region}:{day}:{report_id}", self._report_ttl, part,
                                 {"parts": parts, **body})
        if set(stored) != set(range(1, parts + 1)) or any(p["parts"] != parts for p in stored.values()):
            return None
        return [stored[i] for i in range(1, parts + 1)]

    async def spending(self, grantor_id: str) -> list[Spent]:
        """Every payment from the grantor's account, with what has been refunded of it."""
        return [decode_spent(f, v) for f, v in (await self._redis.hgetall(spent_key(grantor_id))).items()]

    async def postings_of(self, region: str, day: str) -> dict[str, tuple[str, int, str]]:
        """What the platform posted to `region`'s book on `day` (YYYYMMDD): id -> (direction, fen, person)."""
        return {posting_id.decode(): decode_posting(value)
                for posting_id, value in (await self._redis.hgetall(postings_key(region, day))).items()}

    async def account(self, person_id: str) -> Account | None:
        """The account entry as the settle Function reads it (one HGET, so consistent): its first
        field is the balance a charge would pay from, the platform's balance (the bureau's last
        balance with the platform's later postings already applied; stl:pp only remembers those
        postings for the next snapshot). None for a person settlement has not registered."""
        raw = await self._redis.hget(account_key(person_id), person_id)
        if not raw:
            return None
        entry = AccountEntry.decode(raw)
        return Account(entry.balance, entry.region, SCHEMES[entry.scheme], entry.held)

    async def balance(self, person_id: str) -> int | None:
        """For tests and operators: the cached balance in fen."""
        account = await self.account(person_id)
        return account.balance if account else None

    async def account_seq(self, person_id: str) -> int | None:
        """For tests and operators: the last platform posting's account_seq."""
        raw = await self._redis.hget(account_key(person_id), person_id)
        return AccountEntry.decode(raw).account_seq if raw else None
