"""What happens in the province, one message at a time: HIS charges and refunds, the occasional
fraud attempt, and the bureaus' credits, local spending and balance snapshots.

Pure: `Traffic.next(at)` says what to send; nothing here publishes. The generator is
deterministic for its random stream and what it is told (`settled`, `posted`), so a unit test can
replay it. It keeps each bureau's book of its employees' accounts the way a bureau would: opening
balance, its own credits and local debits, and the platform's postings in `account_seq` order
(read off bureau.postings). A BalanceSnapshot then carries that book's balance and the last
posting it includes, which is exactly what the platform checks (contract version 2).
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from shared.money import format_yuan, parse_yuan
from shared.topics import BUREAU_ACCOUNTS, HIS_CHARGES
from simulator.province import Institution, Person, Province

# How often each kind of message is sent, per hundred.
MIX = {"own": 38, "grantor": 30, "cash": 8, "fraud": 1, "refund": 5, "credit": 8, "local_debit": 6, "snapshot": 4}
CHARGE_KINDS = frozenset({"own", "grantor", "cash", "fraud"})


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: the envelope's parts and where it goes."""

    kind: str            # a key of MIX
    topic: str
    key: str
    event_type: str
    payload: dict
    event_id: str


@dataclass
class Book:
    """A bureau's book of one personal account."""

    balance_fen: int
    through: int = 0        # the last platform posting (account_seq) included, in order
    in_order: bool = True   # false once a posting was missed: no snapshot can then be right


@dataclass
class Traffic:
    province: Province
    rng: random.Random
    tag: str                     # makes charge ids unique to one run: a HIS never reuses one
    seq_base: int = 0            # bureau_seq starts above it (a later run's events stay newer)
    books_known: bool = True     # false when the accounts' history is not ours (--no-seed)
    mix: dict[str, int] = field(default_factory=lambda: dict(MIX))
    count: int = 0
    _settled: deque = field(default_factory=lambda: deque(maxlen=2_000))  # (patient, institution, charge, fen)
    _seq: dict[str, int] = field(default_factory=dict)
    books: dict[str, Book] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p = self.province
        self._employees = p.employees()
        self._beneficiaries = p.beneficiaries()
        self._grantors = {b.person_id: p.grantors_of(b.person_id) for b in self._beneficiaries}
        self._by_region: dict[str, list[Institution]] = {}
        for inst in p.institutions:
            self._by_region.setdefault(inst.region, []).append(inst)
        if self.books_known:
            self.books = {e.person_id: Book(e.balance_fen) for e in self._employees}
        self._kinds, self._weights = list(self.mix), list(self.mix.values())

    # -- what the platform said back (fed by the I/O side) --------------------------------------

    def settled(self, payload: dict) -> None:
        """A ChargeSettled: the charge may be refunded later."""
        fen = parse_yuan(payload["individual_borne"])
        if fen > 0 and "institution_code" in payload:
            self._settled.append((payload["patient_id"], payload["institution_code"], payload["charge_id"], fen))

    def posted(self, payload: dict) -> None:
        """A Posting on bureau.postings: the bureau applies it to its book, in account_seq order."""
        book = self.books.get(payload.get("person_id", ""))
        seq = payload.get("account_seq")
        if book is None or not isinstance(seq, int) or seq <= book.through:
            return  # not an account we keep, or a redelivered posting
        if seq != book.through + 1:
            book.in_order = False
        fen = parse_yuan(payload["amount"])
        book.balance_fen += fen if payload.get("direction") == "credit" else -fen
        book.through = seq

    # -- what to send next -----------------------------------------------------------------------

    def next(self, at: datetime) -> Outgoing:
        self.count += 1
        kind = self.rng.choices(self._kinds, self._weights)[0]
        made = getattr(self, f"_{kind}")(at)
        return made or self._own(at)  # nothing to refund or snapshot yet: a charge instead

    def _event_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _out(self, kind: str, topic: str, key: str, event_type: str, payload: dict) -> Outgoing:
        return Outgoing(kind, topic, key, event_type, payload, self._event_id())

    def _institution(self, patient: Person) -> Institution:
        # most visits are near home; some are where the patient happens to be
        local = self._by_region.get(patient.region)
        if local and self.rng.random() < 0.8:
            return self.rng.choice(local)
        return self.rng.choice(self.province.institutions)

    def _amounts(self, kind: str) -> tuple[str, int, int, int]:
        """(visit kind, total, fund paid, individually borne) in fen."""
        if kind == "pharmacy":
            total = self.rng.randrange(1_500, 30_000)
            fund = 0 if self.rng.random() < 0.7 else total * self.rng.randrange(20, 50) // 100
            return kind, total, fund, total - fund
        if kind == "hospital" and self.rng.random() < 0.15:
            total = self.rng.randrange(200_000, 3_000_000)
            fund = total * self.rng.randrange(65, 86) // 100
            return "inpatient", total, fund, total - fund
        total = self.rng.randrange(3_000, 80_000)
        fund = total * self.rng.randrange(30, 61) // 100
        return "outpatient", total, fund, total - fund

    def _charge(self, kind: str, at: datetime, patient: Person, code_holder: Person | None = None) -> Outgoing:
        inst = self._institution(patient)
        visit, total, fund, borne = self._amounts(inst.kind)
        young_or_old = patient.age(at.date()) < 16 or patient.phone is None
        payload = {
            "charge_id": f"{self.tag}-{self.count:07d}", "institution_code": inst.code,
            "institution_region": inst.region, "patient_id": patient.person_id, "patient_name": patient.name,
            "code_holder_id": (code_holder or patient).person_id,
            "presented_via": "family_account" if young_or_old and code_holder is None else "own_device",
            "visit_kind": visit, "total": format_yuan(total), "fund_paid": format_yuan(fund),
            "individual_borne": format_yuan(borne), "charged_at": at.isoformat(timespec="seconds")}
        return self._out(kind, HIS_CHARGES, patient.person_id, "ChargeSubmitted", payload)

    def _own(self, at: datetime) -> Outgoing:
        return self._charge("own", at, self.rng.choice(self._employees))

    def _grantor(self, at: datetime) -> Outgoing | None:
        if not self._beneficiaries:
            return None
        return self._charge("grantor", at, self.rng.choice(self._beneficiaries))

    def _cash(self, at: datetime) -> Outgoing | None:
        if not self.province.unbound_residents:
            return None
        return self._charge("cash", at, self.rng.choice(self.province.unbound_residents))

    def _fraud(self, at: datetime) -> Outgoing | None:
        """A relative settles with the grantor's code (冒用医保码): refused and reported."""
        if not self._beneficiaries:
            return None
        patient = self.rng.choice(self._beneficiaries)
        return self._charge("fraud", at, patient, code_holder=self._grantors[patient.person_id][0])

    def _refund(self, at: datetime) -> Outgoing | None:
        if not self._settled:
            return None
        patient, institution, charge_id, fen = self._settled.popleft()
        amount = fen if self.rng.random() < 0.6 else self.rng.randrange(1, fen + 1)
        payload = {"charge_id": charge_id, "institution_code": institution, "refund_id": f"{charge_id}-R1",
                   "amount": format_yuan(amount), "refunded_at": at.isoformat(timespec="seconds")}
        return self._out("refund", HIS_CHARGES, patient, "ChargeRefunded", payload)

    def _bureau_seq(self, person_id: str) -> int:
        seq = self._seq.get(person_id, self.seq_base) + 1
        self._seq[person_id] = seq
        return seq

    def _movement(self, kind: str, event_type: str, person: Person, fen: int) -> Outgoing:
        book = self.books.get(person.person_id)
        if book is not None:
            book.balance_fen += fen if kind == "credit" else -fen
        payload = {"person_id": person.person_id, "region": person.region, "amount": format_yuan(fen),
                   "bureau_seq": self._bureau_seq(person.person_id)}
        return self._out(kind, BUREAU_ACCOUNTS, person.person_id, event_type, payload)

    def _credit(self, at: datetime) -> Outgoing:
        """The monthly contribution into a personal account (个账划入)."""
        return self._movement("credit", "AccountCredited", self.rng.choice(self._employees),
                              self.rng.randrange(5_000, 60_000))

    def _local_debit(self, at: datetime) -> Outgoing | None:
        """Spent at the bureau's own counters: never more than a third of what its book shows."""
        person = self.rng.choice(self._employees)
        book = self.books.get(person.person_id)
        room = book.balance_fen // 3 if book is not None else 5_000
        if room < 100:
            return None
        return self._movement("local_debit", "AccountDebitedLocally", person, self.rng.randrange(100, room + 1))

    def _snapshot(self, at: datetime) -> Outgoing | None:
        person = self.rng.choice(self._employees)
        book = self.books.get(person.person_id)
        if book is None or not book.in_order or book.balance_fen < 0:
            return None
        payload = {"person_id": person.person_id, "region": person.region,
                   "balance": format_yuan(book.balance_fen), "bureau_seq": self._bureau_seq(person.person_id),
                   "postings_applied_through": book.through}
        return self._out("snapshot", BUREAU_ACCOUNTS, person.person_id, "BalanceSnapshot", payload)
