"""What happens in the province, one message at a time: HIS charges and refunds, the occasional
fraud attempt, and the bureaus' credits, local spending and balance snapshots; pre-settlement
quotes (预结算) settled or cancelled, the HIS's daily totals and detail (对总账/对明细账), and the
bureaus' decisions on payments a grantor disputed (非本人授权).

Pure: `Traffic.next(at)` says what to send; nothing here publishes. The generator is
deterministic for its random stream and what it is told (`settled`, `posted`), so a unit test can
replay it. It keeps each bureau's book of its employees' accounts the way a bureau would: opening
balance, its own credits and local debits, and the platform's postings in `account_seq` order
(read off its region's bureau.postings.<region>). A BalanceSnapshot then carries that book's balance and the last
posting it includes, which is exactly what the platform checks (contract version 2).
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from shared.money import format_yuan, parse_yuan
from shared.envelope import CHINA_TZ
from shared.topics import BUREAU_ACCOUNTS, BUREAU_DISPUTES, HIS_CHARGES, HIS_RECONCILIATION
from simulator.partners import reply_topic
from simulator.province import Institution, Person, Province

# How often each kind of message is sent, per hundred.
MIX = {"own": 34, "grantor": 24, "cash": 8, "fraud": 1, "refund": 5, "credit": 8, "local_debit": 6, "snapshot": 4,
       "quote": 5, "quote_settle": 4, "quote_cancel": 1, "his_totals": 1, "dispute_decision": 1}
CHARGE_KINDS = frozenset({"own", "grantor", "cash", "fraud"})
# Of the HIS's daily totals, this share leaves one charge out, as a HIS whose books lost one
# would: the platform answers that the totals differ and asks for the detail (对明细账).
HIS_SLIP = 0.25
LEDGER_MAX = 20_000  # charges a simulated HIS keeps for its daily totals (the oldest day goes first)


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: the envelope's parts and where it goes."""

    kind: str            # a key of MIX
    topic: str
    key: str
    event_type: str
    payload: dict
    event_id: str
    reply_to: str | None = None  # the HIS's own reply topic, when it asks for its answer there


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
    # 预结算: quote requests sent (charge id -> the charge), quotes held (answered ChargeQuoted)
    _asked: dict = field(default_factory=dict)
    _quoted: deque = field(default_factory=lambda: deque(maxlen=500))
    # the HIS's own books of what the platform settled: (institution, day) -> charge id -> amounts
    _ledger: dict = field(default_factory=dict)
    _refunds: dict = field(default_factory=dict)   # (institution, day) -> (charge, refund) -> fen
    _details: deque = field(default_factory=lambda: deque(maxlen=50))  # detail the platform asked for
    _disputes: deque = field(default_factory=lambda: deque(maxlen=200))  # DisputeOpened to decide

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
        """A ChargeSettled: the charge may be refunded later, and the HIS books it for the day."""
        fen = parse_yuan(payload["individual_borne"])
        if fen > 0 and "institution_code" in payload:
            self._settled.append((payload["patient_id"], payload["institution_code"], payload["charge_id"], fen))
        if "institution_code" in payload:
            by = {"own": 0, "grantor": 0, "cash": 0}
            for line in payload.get("lines", []):
                by[line["source"]] = by.get(line["source"], 0) + parse_yuan(line["amount"])
            self._book(payload)[payload["charge_id"]] = (fen, by["own"], by["grantor"], by["cash"])

    def refund_settled(self, payload: dict) -> None:
        """A RefundSettled, booked by the HIS on the day the platform settled it."""
        if "institution_code" in payload:
            self._book(payload, self._refunds)[(payload["charge_id"], payload["refund_id"])] = \
                parse_yuan(payload["amount"])

    def _book(self, payload: dict, books: dict | None = None) -> dict:
        books = self._ledger if books is None else books
        at = payload.get("settled_at") or payload["charged_at"]
        day = datetime.fromisoformat(at).astimezone(CHINA_TZ).date().isoformat()
        if sum(len(b) for b in books.values()) >= LEDGER_MAX:
            books.pop(min(books, key=lambda k: k[1]))
        return books.setdefault((payload["institution_code"], day), {})

    def quoted(self, payload: dict) -> None:
        """A ChargeQuoted: the HIS will settle it (or, now and then, cancel it)."""
        charge = self._asked.pop(payload.get("charge_id"), None)
        if charge is not None and payload.get("quote_id"):
            self._quoted.append((charge, payload["quote_id"]))

    def reconciled(self, payload: dict) -> None:
        """An InstitutionReconciled: when the platform asks for the detail, the HIS sends it."""
        if payload.get("detail_requested") and payload.get("level") == "totals":
            self._details.append((payload["institution_code"], payload["day"]))

    def dispute_opened(self, payload: dict, region: str) -> None:
        """A DisputeOpened: the grantor's bureau will decide it."""
        self._disputes.append((payload["dispute_id"], region))

    def posted(self, payload: dict) -> None:
        """A Posting on its region's postings topic, signed by the platform: the bureau applies it
        to its book, in account_seq order."""
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

    def _quote(self, at: datetime) -> Outgoing | None:
        """预结算: the HIS asks what a beneficiary's charge would take from whom, and holds it."""
        if not self._beneficiaries:
            return None
        out = self._charge("quote", at, self.rng.choice(self._beneficiaries))
        if len(self._asked) < 1_000:
            self._asked[out.payload["charge_id"]] = out.payload
        # the HIS needs the quote's id to settle with it: it asks on its own reply topic
        return Outgoing(out.kind, out.topic, out.key, "ChargeQuoteRequested", out.payload, out.event_id,
                        reply_topic(out.payload["institution_code"]))

    def _quote_settle(self, at: datetime) -> Outgoing | None:
        """The patient pays: the charge settles with the quote's id, exactly the held split."""
        if not self._quoted:
            return None
        charge, quote_id = self._quoted.popleft()
        return self._out("quote_settle", HIS_CHARGES, charge["patient_id"], "ChargeSubmitted",
                         charge | {"quote_id": quote_id})

    def _quote_cancel(self, at: datetime) -> Outgoing | None:
        """The patient walks away: the quote is cancelled and every hold of it released."""
        if not self._quoted:
            return None
        charge, quote_id = self._quoted.popleft()
        return self._out("quote_cancel", HIS_CHARGES, charge["patient_id"], "ChargeQuoteCancelled",
                         {"institution_code": charge["institution_code"], "charge_id": charge["charge_id"],
                          "quote_id": quote_id})

    def _his_totals(self, at: datetime) -> Outgoing | None:
        """对总账 (or, when the platform asked for it, 对明细账) of one institution's day."""
        if self._details:
            institution, day = self._details.popleft()
            return self._detail(institution, day)
        if not self._ledger:
            return None
        institution, day = self.rng.choice(sorted(self._ledger))
        charges = self._his_view(institution, day)
        refunds = self._refunds.get((institution, day), {})
        payload = {"institution_code": institution, "day": day, "charge_count": len(charges),
                   "individual_borne_total": format_yuan(sum(c[0] for c in charges.values())),
                   "own_total": format_yuan(sum(c[1] for c in charges.values())),
                   "family_total": format_yuan(sum(c[2] for c in charges.values())),
                   "cash_total": format_yuan(sum(c[3] for c in charges.values())),
                   "refund_count": len(refunds), "refund_total": format_yuan(sum(refunds.values()))}
        return self._out("his_totals", HIS_RECONCILIATION, institution, "InstitutionDailyTotals", payload)

    def _his_view(self, institution: str, day: str) -> dict:
        """The HIS's book of the day; now and then it has lost one charge (the newest)."""
        charges = dict(self._ledger.get((institution, day), {}))
        if charges and self.rng.random() < HIS_SLIP:
            charges.pop(next(reversed(charges)))
        return charges

    def _detail(self, institution: str, day: str) -> Outgoing:
        charges = self._his_view(institution, day)
        rows = [{"charge_id": cid, "individual_borne": format_yuan(b), "own": format_yuan(o),
                 "family": format_yuan(f), "cash": format_yuan(c)} for cid, (b, o, f, c) in charges.items()][:1000]
        refunds = [{"charge_id": cid, "refund_id": rid, "amount": format_yuan(fen)}
                   for (cid, rid), fen in self._refunds.get((institution, day), {}).items()][:1000]
        payload = {"institution_code": institution, "day": day, "part": 1, "parts": 1, "charges": rows,
                   "refunds": refunds}
        return self._out("his_totals", HIS_RECONCILIATION, institution, "InstitutionDailyDetail", payload)

    def _dispute_decision(self, at: datetime) -> Outgoing | None:
        """The grantor's bureau decides a disputed payment: mostly upheld (the money comes back
        through the institution's refund), sometimes dismissed (the grantor may resume)."""
        if not self._disputes:
            return None
        dispute_id, region = self._disputes.popleft()
        decision = "upheld" if self.rng.random() < 0.7 else "dismissed"
        payload = {"dispute_id": dispute_id, "region": region, "decision": decision,
                   "decided_at": at.isoformat(timespec="seconds")}
        return self._out("dispute_decision", BUREAU_DISPUTES, dispute_id, "DisputeDecided", payload)

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
