"""The books as a hypothesis state machine: charges, refunds, bureau movements and snapshots
(with their watermarks) against a plain in-memory model of both books, calling the settlement
Functions on a real Valkey.

The model keeps, per account, the platform's true balance (opening, plus the bureau's own
credits and debits, minus the platform's debits, plus its refunds), and the bureau's book, which
applies the platform's postings late, in account_seq order. A BalanceSnapshot carries the
bureau's book and how far it has applied the platform's postings; after any step the cached
balance must be the true one, to the fen, and each account's postings numbered 1, 2, 3, ...
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test
from redis.asyncio import Redis

from tests.oracle.waterfall import Account, Line, refund_plan, split
from services.settlement.storage.accounts import Movement
from tests.ledger_calls import HOSPITAL, XIAN, bind, bureau_movements, charge, make_store, new_person, refund

amounts = st.one_of(st.integers(0, 5_000), st.integers(0, 10**9))


@dataclass
class Book:
    """One account in the model: what is true, and what the bureau's book says."""

    true: int
    bureau: int
    postings: list[int] = field(default_factory=list)  # signed, index = account_seq - 1
    bureau_applied: int = 0   # the bureau has applied postings 1..bureau_applied
    bureau_seq: int = 0
    last_event: Movement | None = None


@dataclass
class Settled:
    charge_id: str
    lines: list[Line]
    back: list[int]


class Books(RuleBasedStateMachine):
    run = None    # set by the test: runs a coroutine on the test's private loop
    store = None
    client = None

    @initialize(opening=st.tuples(amounts, amounts, amounts))
    def open_accounts(self, opening):
        self.run(self.client.flushdb())
        self.run(self.store.register_institutions([(HOSPITAL, XIAN, "hospital")]))
        self.patients = [new_person(), new_person()]
        self.grantor = new_person()
        people = [*self.patients, self.grantor]
        self.books = {p: Book(o, o) for p, o in zip(people, opening)}
        self.run(self.store.register([(p, XIAN, "e", o) for p, o in zip(people, opening)]))
        self.bindings = {patient: self.run(bind(self.client, patient, self.grantor, 1, XIAN))
                         for patient in self.patients}
        self.settled: list[Settled] = []

    def _apply_platform(self, person: str, signed: int) -> int:
        book = self.books[person]
        book.true += signed
        book.postings.append(signed)
        return len(book.postings)

    @rule(which=st.integers(0, 1), borne=amounts)
    def charge(self, which, borne):
        patient = self.patients[which]
        todo = charge(patient, borne)
        [applied] = self.run(self.store.settle([todo]))
        plan = split(borne, Account(patient, XIAN, self.books[patient].true),
                     [Account(self.grantor, XIAN, self.books[self.grantor].true, 1,
                              binding_id=self.bindings[patient])])
        expected = [line if line.source == "cash" else
                    replace(line, account_seq=self._apply_platform(line.person_id, -line.amount)) for line in plan]
        assert (applied.status, applied.lines) == ("SETTLED", expected)
        self.settled.append(Settled(todo.charge_id, expected, [0] * len(expected)))

    @precondition(lambda self: self.settled)
    @rule(data=st.data())
    def refund(self, data):
        paid = data.draw(st.sampled_from(self.settled))
        room = sum(l.amount - b for l, b in zip(paid.lines, paid.back))
        amount = data.draw(st.one_of(st.integers(0, room), st.just(room), st.just(room + 1)))
        [applied] = self.run(self.store.refund([refund(paid.charge_id, amount)]))
        if amount > room:
            assert (applied.status, applied.reason) == ("REJECTED", "REFUND_EXCEEDS_PAID")
            return
        expected = []
        for i, give in enumerate(refund_plan(paid.lines, paid.back, amount)):
            if give:
                paid.back[i] += give
                line = paid.lines[i]
                if line.source != "cash":
                    seq = self._apply_platform(line.person_id, give)
                    line = replace(line, balance_after=self.books[line.person_id].true, account_seq=seq)
                expected.append(replace(line, amount=give))
        assert (applied.status, applied.lines) == ("REFUNDED", expected)

    @precondition(lambda self: self.settled)
    @rule(data=st.data())
    def resend_a_charge(self, data):
        paid = data.draw(st.sampled_from(self.settled))
        [applied] = self.run(self.store.settle([charge(self.patients[0], 0, charge_id=paid.charge_id)]))
        assert (applied.status, applied.replay, applied.lines) == ("SETTLED", True, paid.lines)

    def _bureau(self, person: str, kind: str, amount: int, through: int = 0) -> tuple[str, int]:
        book = self.books[person]
        book.bureau_seq += 1
        book.last_event = Movement(person, kind, amount, book.bureau_seq, XIAN, through)
        [answer] = self.run(bureau_movements(self.store, [book.last_event]))
        return answer

    @rule(who=st.integers(0, 2), amount=amounts, credit=st.booleans())
    def bureau_moves_money(self, who, amount, credit):
        person = [*self.patients, self.grantor][who]
        signed = amount if credit else -amount
        self.books[person].true += signed
        self.books[person].bureau += signed
        outcome, balance = self._bureau(person, "credit" if credit else "debit", amount)
        assert (outcome, balance) == ("NEGATIVE" if balance < 0 else "APPLIED", self.books[person].true)

    @rule(who=st.integers(0, 2), data=st.data())
    def bureau_applies_platform_postings(self, who, data):
        book = self.books[[*self.patients, self.grantor][who]]
        upto = data.draw(st.integers(book.bureau_applied, len(book.postings)))
        book.bureau += sum(book.postings[book.bureau_applied:upto])
        book.bureau_applied = upto

    @rule(who=st.integers(0, 2))
    def bureau_sends_a_snapshot(self, who):
        person = [*self.patients, self.grantor][who]
        book = self.books[person]
        outcome, balance = self._bureau(person, "snapshot", book.bureau, book.bureau_applied)
        assert balance == book.true and outcome in ("APPLIED", "NEGATIVE")

    @rule(who=st.integers(0, 2))
    def bureau_event_redelivered(self, who):
        book = self.books[[*self.patients, self.grantor][who]]
        if book.last_event is not None:
            [(outcome, balance)] = self.run(bureau_movements(self.store, [book.last_event]))
            assert (outcome, balance) == ("STALE", book.true)

    @invariant()
    def every_balance_and_sequence_is_true(self):
        if not hasattr(self, "books"):
            return
        for person, book in self.books.items():
            assert self.run(self.store.balance(person)) == book.true
            assert self.run(self.store.account_seq(person)) == len(book.postings)
            pending = self.run(self.client.llen(f"stl:pp:{person}"))
            assert pending <= len(book.postings)


def run_machine(machine: type[Books], valkey_url: str, max_examples: int) -> None:
    """Run `machine` against the Functions on the Valkey at `valkey_url`, on a private event loop
    (the session's loop belongs to pytest-asyncio)."""
    loop = asyncio.new_event_loop()
    client = Redis.from_url(valkey_url)
    store = make_store(client)
    loop.run_until_complete(store.load_functions())
    machine.run, machine.store, machine.client = staticmethod(loop.run_until_complete), store, client
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=max_examples, stateful_step_count=40, deadline=None, database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
