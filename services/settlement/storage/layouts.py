"""The settlement Redis layouts the Python side reads or writes, one codec each (the Functions
read and write the same in Lua: common.lua holds the account entry, the lines and the postings,
waterfall.lua the consumption rows, quotes.lua the outbox). tests/integration/
test_settlement_layouts.py writes through these codecs, runs the Functions, and reads back.

The payer index (`bnd:pay:{beneficiary}`) is the binding service's layout: shared/binding_index.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from shared.state import person_bucket
from services.settlement.domain.consumption import Spent
from services.settlement.domain.lines import Line

# -- account entry: hash stl:acct:{bucket}, field person_id ----------------------------------
# "balance|bureau_seq|region|scheme|account_seq|watermark|held"; entries written before quotes
# have six fields (held 0). scheme e = employee with an account, r = resident without one.

SCHEMES = {"e": "employee", "r": "resident"}


def account_key(person_id: str) -> str:
    return f"stl:acct:{person_bucket(person_id)}"


@dataclass(frozen=True)
class AccountEntry:
    balance: int  # fen, may be below zero (never clamped)
    bureau_seq: int  # the last bureau event applied
    region: str
    scheme: str  # e | r
    account_seq: int = 0  # the last platform posting's place in the account's sequence
    watermark: int = 0  # postings_applied_through of the last snapshot applied
    held: int = 0  # fen held by live quotes

    def encode(self) -> str:
        return (f"{self.balance}|{self.bureau_seq}|{self.region}|{self.scheme}|{self.account_seq}|"
                f"{self.watermark}|{self.held}")

    @classmethod
    def decode(cls, raw: str | bytes) -> AccountEntry:
        text = raw.decode() if isinstance(raw, bytes) else raw
        balance, bureau_seq, region, scheme, *rest = text.split("|")
        account_seq, watermark, held = ([int(f) if f else 0 for f in rest] + [0, 0, 0])[:3]
        return cls(int(balance), int(bureau_seq), region, scheme, account_seq, watermark, held)


# -- lines of a charge, a refund, a reversal or a quote ----------------------------------------
# "source,person,region,order,amount,after,account_seq,binding" joined by ';' (the charge record's
# `lines`, the quote's `lines`, the outbox's and the Functions' answers); empty fields for what a
# line has not (cash: no person; a held line: no account_seq).

def encode_lines(lines: list[Line]) -> str:
    def text(value: object) -> str:
        return "" if value is None else str(value)
    return ";".join(",".join((line.source, text(line.person_id), text(line.region), text(line.payment_order),
                              str(line.amount), text(line.balance_after), text(line.account_seq),
                              text(line.binding_id)))
                    for line in lines)


def decode_lines(encoded: str) -> list[Line]:
    lines = []
    for part in filter(None, encoded.split(";")):
        source, person, region, order, amount, after, seq, binding = (part.split(",") + ["", ""])[:8]
        lines.append(Line(source, int(amount), person or None, region or None,  # type: ignore[arg-type]
                          int(order) if order else None, int(after) if after else None,
                          int(seq) if seq else None, binding or None))
    return lines


# -- consumption rows: hash stl:spent:{grantor}, field "{institution}:{charge_id}" -------------
# "day|beneficiary|paid|refunded|at": day YYYYMMDD (China, the charge's), fen paid and refunded.

def spent_key(grantor_id: str) -> str:
    return f"stl:spent:{grantor_id}"


def encode_spent(row: Spent) -> tuple[str, str]:
    return (f"{row.institution_code}:{row.charge_id}",
            f"{row.day:%Y%m%d}|{row.beneficiary_id}|{row.paid}|{row.refunded}|{row.settled_at}")


def decode_spent(field: str | bytes, value: str | bytes) -> Spent:
    institution, charge_id = _text(field).split(":", 1)
    day, beneficiary, paid, refunded, at = _text(value).split("|")
    return Spent(charge_id, datetime.strptime(day, "%Y%m%d").date(), beneficiary, int(paid), int(refunded), at,
                 institution)


# -- 对账 postings: hash stl:posted:{region}:{YYYYMMDD}, field posting_id -------------------------
# "direction|amount|person": debit or credit, fen.

def postings_key(region: str, day: str) -> str:
    return f"stl:posted:{region}:{day}"


def encode_posting(direction: str, amount: int, person_id: str) -> str:
    return f"{direction}|{amount}|{person_id}"


def decode_posting(value: str | bytes) -> tuple[str, int, str]:
    direction, amount, person = _text(value).split("|")
    return direction, int(amount), person


# -- the quote outbox: list stl:quote:outbox, cjson items ---------------------------------------
# [quote_id, "{institution}:{charge_id}", reason, lines, released_at]

OUTBOX = "stl:quote:outbox"


@dataclass(frozen=True)
class OutboxItem:
    quote_id: str
    institution_code: str
    charge_id: str
    reason: str
    lines: list[Line]
    released_at: str

    def encode(self) -> bytes:
        return orjson.dumps([self.quote_id, f"{self.institution_code}:{self.charge_id}", self.reason,
                             encode_lines(self.lines), self.released_at])

    @classmethod
    def decode(cls, raw: str | bytes) -> OutboxItem:
        quote_id, member, reason, lines, at = orjson.loads(raw)
        institution, charge_id = member.split(":", 1)
        return cls(quote_id, institution, charge_id, reason, decode_lines(lines), at)


# -- institutions: stl:inst (code -> "region|kind"), stl:ikeys (code -> JSON), stl:inst:name ----

INSTITUTIONS = "stl:inst"
INSTITUTION_KEYS = "stl:ikeys"
INSTITUTION_NAMES = "stl:inst:name"


def decode_institution(value: str | bytes) -> tuple[str, str]:
    """stl:inst's value: (region, kind)."""
    region, kind = _text(value).split("|")
    return region, kind


def encode_institution_keys(region: str, public_keys: list[dict]) -> bytes:
    """stl:ikeys's value: the registration's region and its keys (InstitutionKey.model_dump(mode="json"))."""
    return orjson.dumps({"region": region, "keys": public_keys})


def decode_institution_keys(raw: str | bytes) -> tuple[str, list[dict]]:
    stored = orjson.loads(raw)
    return stored["region"], stored["keys"]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
