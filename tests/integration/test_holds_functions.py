"""Quotes (预结算), holds, limits and pause in the settlement Functions (storage/settlement.lua),
called directly against a real Valkey server (issue 15). The clock is passed in, as the service
passes the platform's: these tests decide expiry by the time they give.

Payer index entries are written in the I-1 layout (`bind` of test_settlement_functions)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import orjson
import pytest

from services.settlement.storage.accounts import ChargeToSettle, Movement
from tests.ledger_calls import AT, BAOJI, DAY, HOSPITAL, XIAN, bind, bureau_movements, new_person, refund

# The same private Valkey, store and clean slate per test as the settlement Function tests.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_store")]

HOLD_MS = 15 * 60_000  # SettlementStore's default hold, as the store fixture makes it
T0 = 1_780_000_000_000  # the platform's clock, epoch ms
MONTH = str(DAY // 100)


def charge(patient: str, borne: int, charge_id: str | None = None, digest: str = "d1", op: str = "S",
           quote_id: str = "") -> ChargeToSettle:
    charge_id = charge_id or f"C{uuid.uuid4().hex[:12]}"
    if op == "Q":
        quote_id = quote_id or f"Q-{charge_id}"
    return ChargeToSettle(str(uuid.uuid4()), HOSPITAL, XIAN, charge_id, digest, borne, patient, DAY, AT,
                          quote_id=quote_id, op=op)


def quote_of(c: ChargeToSettle) -> ChargeToSettle:
    return replace(c, event_id=str(uuid.uuid4()), op="Q", quote_id=f"Q-{c.charge_id}")


def cancel_of(c: ChargeToSettle, quote_id: str | None = None) -> ChargeToSettle:
    return ChargeToSettle(str(uuid.uuid4()), HOSPITAL, "", c.charge_id, "", 0, "", 0, AT,
                          quote_id=quote_id or f"Q-{c.charge_id}", op="C")


def amounts(applied) -> list[tuple]:
    return [(l.source, l.person_id, l.amount, l.balance_after) for l in applied.lines]


async def account(store, person) -> tuple[int, int]:
    a = await store.account(person)
    return a.balance, a.held


class Family:
    """A resident patient (no own account) with grantor 1 (Xi'an) and grantor 2 (Baoji)."""

    async def make(self, store, client, first=10_000, second=10_000, limit1=None, paused1=False,
                   own: int | None = None) -> Family:
        self.patient, self.father, self.sister = new_person(), new_person(), new_person()
        await store.register([(self.patient, XIAN, "r" if own is None else "e", own),
                              (self.father, XIAN, "e", first), (self.sister, BAOJI, "e", second)])
        self.b1 = await bind(client, self.patient, self.father, 1, XIAN, limit=limit1, paused=paused1)
        self.b2 = await bind(client, self.patient, self.sister, 2, BAOJI)
        return self


async def outbox(client) -> list[list]:
    return [orjson.loads(x) for x in await client.lrange("stl:quote:outbox", 0, -1)]


# --- quote, then settle ----------------------------------------------------------------------

async def test_a_quote_holds_the_whole_split_and_settling_posts_exactly_it_after_the_balance_fell(store, client):
    f = await Family().make(store, client, first=6_000, second=10_000)
    c = charge(f.patient, 9_000)
    [q] = await store.settle([quote_of(c)], now_ms=T0)
    assert q.status == "QUOTED" and q.until_ms == T0 + HOLD_MS
    # balance_after of a quote: what is left to spend
    assert amounts(q) == [("grantor", f.father, 6_000, 0), ("grantor", f.sister, 3_000, 7_000), ("cash", None, 0, None)]
    assert [l.binding_id for l in q.lines] == [f.b1, f.b2, None]
    assert await account(store, f.father) == (6_000, 6_000)
    assert await account(store, f.sister) == (10_000, 3_000)
    assert await store.used(f.b1, MONTH) == 6_000

    # The bureau debits the father's account meanwhile (spending at a local pharmacy).
    assert await bureau_movements(store, [Movement(f.father, "debit", 5_000, 1, XIAN)]) == [("APPLIED", 1_000)]

    [s] = await store.settle([c], now_ms=T0 + 1_000)      # no quote_id named: the live quote is posted
    assert s.status == "SETTLED"
    assert amounts(s) == [("grantor", f.father, 6_000, -5_000), ("grantor", f.sister, 3_000, 7_000),
                          ("cash", None, 0, None)]
    assert await account(store, f.father) == (-5_000, 0)    # never clamped
    assert await account(store, f.sister) == (7_000, 0)
    assert await store.used(f.b1, MONTH) == 6_000            # counted once, when held
    assert await client.hget(f"stl:quote:{HOSPITAL}:{c.charge_id}", "state") == b"settled"
    assert not await client.zcard("stl:quote:due") and not await client.exists(f"stl:bq:{f.b1}")


async def test_held_money_cannot_be_spent_by_another_charge(store, client):
    f = await Family().make(store, client, first=6_000, second=1_000)
    c = charge(f.patient, 5_000)
    [q] = await store.settle([quote_of(c)], now_ms=T0)
    assert amounts(q)[0] == ("grantor", f.father, 5_000, 1_000)
    [other] = await store.settle([charge(f.patient, 4_000)], now_ms=T0)
    assert amounts(other) == [("grantor", f.father, 1_000, 5_000), ("grantor", f.sister, 1_000, 0),
                              ("cash", None, 2_000, None)]
    [s] = await store.settle([replace(c, quote_id=f"Q-{c.charge_id}")], now_ms=T0 + 10)
    assert amounts(s)[0] == ("grantor", f.father, 5_000, 0)
    assert await account(store, f.father) == (0, 0)


async def test_two_charges_naming_one_quote_post_it_once(store, client):
    f = await Family().make(store, client)
    c = charge(f.patient, 3_000)
    await store.settle([quote_of(c)], now_ms=T0)
    named = replace(c, quote_id=f"Q-{c.charge_id}")
    first, second = await store.settle([named, replace(named, event_id=str(uuid.uuid4()))], now_ms=T0 + 1)
    assert (first.status, first.replay, second.status, second.replay) == ("SETTLED", False, "SETTLED", True)
    assert second.lines == first.lines
    assert await account(store, f.father) == (7_000, 0)
    # another charge naming this charge's quote is not its quote
    [wrong] = await store.settle([charge(f.patient, 3_000, quote_id=f"Q-{c.charge_id}")], now_ms=T0 + 2)
    assert (wrong.status, wrong.reason) == ("REJECTED", "QUOTE_UNKNOWN")


async def test_a_resent_quote_request_answers_the_same_quote_and_a_different_body_is_refused(store, client):
    f = await Family().make(store, client)
    c = charge(f.patient, 3_000)
    [q1] = await store.settle([quote_of(c)], now_ms=T0)
    [q2] = await store.settle([quote_of(c)], now_ms=T0 + 5)
    assert (q2.status, q2.replay, q2.lines, q2.at, q2.until_ms) == ("QUOTED", True, q1.lines, q1.at, q1.until_ms)
    assert await account(store, f.father) == (10_000, 3_000)        # held once
    [other] = await store.settle([replace(quote_of(c), digest="d2")], now_ms=T0 + 5)
    assert (other.status, other.reason) == ("REJECTED", "QUOTE_MISMATCH")
    [mismatch] = await store.settle([replace(c, digest="d2")], now_ms=T0 + 5)
    assert (mismatch.status, mismatch.reason) == ("REJECTED", "QUOTE_MISMATCH")
    assert await account(store, f.father) == (10_000, 3_000)


async def test_a_quote_request_redelivered_after_its_quote_was_settled_released_or_expired_is_answered_the_same(
        store, client):
    """Redelivery is normal: a quote request's answer is its quote, whatever became of it since."""
    f = await Family().make(store, client)
    settled, cancelled, expired = (charge(f.patient, 1_000) for _ in range(3))
    first = {c.charge_id: (await store.settle([quote_of(c)], now_ms=T0))[0] for c in (settled, cancelled, expired)}
    await store.settle([replace(settled, quote_id=f"Q-{settled.charge_id}")], now_ms=T0 + 1)
    await store.settle([cancel_of(cancelled)], now_ms=T0 + 1)
    for c, now in ((settled, T0 + 2), (cancelled, T0 + 2), (expired, T0 + HOLD_MS + 1)):
        [again] = await store.settle([quote_of(c)], now_ms=now)
        q = first[c.charge_id]
        assert (again.status, again.replay, again.lines, again.at, again.until_ms) == \
            ("QUOTED", True, q.lines, q.at, q.until_ms)
    assert await account(store, f.father) == (9_000, 0)  # the settled one posted; nothing held any more
    assert [x[2] for x in await outbox(client)] == ["expired"]  # the one past its time, released whole


async def test_a_settled_charge_cannot_be_quoted(store, client):
    f = await Family().make(store, client)
    c = charge(f.patient, 3_000)
    await store.settle([c], now_ms=T0)
    [q] = await store.settle([quote_of(c)], now_ms=T0)
    assert (q.status, q.reason) == ("REJECTED", "ALREADY_SETTLED")
    assert await account(store, f.father) == (7_000, 0)


async def test_an_unknown_quote_is_refused_and_nothing_moves(store, client):
    f = await Family().make(store, client)
    [s] = await store.settle([charge(f.patient, 3_000, quote_id="Q-none")], now_ms=T0)
    assert (s.status, s.reason) == ("REJECTED", "QUOTE_UNKNOWN")
    [x] = await store.settle([cancel_of(charge(f.patient, 1))], now_ms=T0)
    assert (x.status, x.reason) == ("REJECTED", "QUOTE_UNKNOWN")
    assert await account(store, f.father) == (10_000, 0)


# --- cancel, expiry ------------------------------------------------------------------------

async def test_cancel_releases_every_hold_together_and_answers_the_same_again(store, client):
    f = await Family().make(store, client, first=2_000, limit1=5_000, own=1_000)
    c = charge(f.patient, 4_000)
    [q] = await store.settle([quote_of(c)], now_ms=T0)
    assert [l.amount for l in q.lines] == [1_000, 2_000, 1_000, 0]
    [r] = await store.settle([cancel_of(c)], now_ms=T0 + 1)
    assert (r.status, r.reason, r.replay, r.lines) == ("RELEASED", "cancelled", False, q.lines)
    for person, balance in ((f.patient, 1_000), (f.father, 2_000), (f.sister, 10_000)):
        assert await account(store, person) == (balance, 0)
    assert await store.used(f.b1, MONTH) == 0 and await store.used(f.b2, MONTH) == 0
    [again] = await store.settle([cancel_of(c)], now_ms=T0 + 2)      # redelivered
    assert (again.status, again.reason, again.replay, again.at) == ("RELEASED", "cancelled", True, AT)
    assert await account(store, f.father) == (2_000, 0)
    [named] = await store.settle([replace(c, quote_id=f"Q-{c.charge_id}")], now_ms=T0 + 3)
    assert (named.status, named.reason) == ("REJECTED", "QUOTE_RELEASED")
    # the refusal is that message's answer for good; a new message without the quote is a charge as today
    [refused_again] = await store.settle([c], now_ms=T0 + 3)
    assert (refused_again.status, refused_again.reason) == ("REJECTED", "QUOTE_RELEASED")
    [plain] = await store.settle([replace(c, event_id=str(uuid.uuid4()))], now_ms=T0 + 3)
    assert plain.status == "SETTLED" and [l.amount for l in plain.lines] == [1_000, 2_000, 1_000, 0]
    assert await outbox(client) == []                                # a cancel is answered, not swept


async def test_a_quote_expiring_while_it_is_settled_is_all_or_nothing_by_the_platform_clock(store, client):
    f = await Family().make(store, client, first=2_000, limit1=5_000)
    late, in_time = charge(f.patient, 4_000), charge(f.patient, 4_000)
    [q1] = await store.settle([quote_of(late)], now_ms=T0)
    [q2] = await store.settle([quote_of(in_time)], now_ms=T0 + 1)
    assert [(l.person_id, l.amount) for l in q1.lines] == [(f.father, 2_000), (f.sister, 2_000), (None, 0)]
    assert [(l.person_id, l.amount) for l in q2.lines] == [(f.sister, 4_000), (None, 0)]   # the rest of it
    # One millisecond before its end the quote still posts; at its end it is released whole.
    named_in_time = replace(in_time, quote_id=f"Q-{in_time.charge_id}")
    named_late = replace(late, quote_id=f"Q-{late.charge_id}")
    s_late, s_in_time = await store.settle([named_late, named_in_time], now_ms=T0 + HOLD_MS)
    assert (s_late.status, s_late.reason) == ("REJECTED", "QUOTE_EXPIRED")
    assert s_in_time.status == "SETTLED" and [l.amount for l in s_in_time.lines] == [l.amount for l in q2.lines]
    assert await account(store, f.father) == (2_000, 0)
    assert await account(store, f.sister) == (10_000 - 4_000, 0)
    assert await store.used(f.b1, MONTH) == 0
    [[quote_id, member, reason, lines, at]] = await outbox(client)
    assert (quote_id, member, reason) == (f"Q-{late.charge_id}", f"{HOSPITAL}:{late.charge_id}", "expired")
    # redelivered: the same answer, nothing released twice
    [again] = await store.settle([named_late], now_ms=T0 + HOLD_MS + 5)
    assert (again.status, again.reason) == ("REJECTED", "QUOTE_EXPIRED")
    assert len(await outbox(client)) == 1
    assert await account(store, f.sister) == (6_000, 0)


async def test_the_sweep_releases_due_quotes_whole_once_and_the_outbox_keeps_the_announcement(store, client):
    f = await Family().make(store, client, first=2_000, limit1=5_000)
    c, later = charge(f.patient, 3_000), charge(f.patient, 1_000)
    await store.settle([quote_of(c)], now_ms=T0)
    await store.settle([quote_of(later)], now_ms=T0 + 10_000)
    assert await store.release_due(T0 + HOLD_MS - 1, AT) == 0
    assert await store.release_due(T0 + HOLD_MS, AT) == 1
    assert await store.release_due(T0 + HOLD_MS, AT) == 0          # called twice (a crash, a second instance)
    assert await account(store, f.father) == (2_000, 0)             # later's split: own nothing, sister only
    assert await account(store, f.sister) == (10_000, 1_000)
    [release] = await store.outbox()
    assert (release.quote_id, release.charge_id, release.reason) == (f"Q-{c.charge_id}", c.charge_id, "expired")
    assert [l.amount for l in release.lines] == [2_000, 1_000, 0]
    await store.announced([release])
    await store.announced([release])
    assert await store.outbox() == []
    [s] = await store.settle([replace(c, quote_id=f"Q-{c.charge_id}")], now_ms=T0 + HOLD_MS + 1)
    assert (s.status, s.reason) == ("REJECTED", "QUOTE_EXPIRED")


# --- bindings paused or revoked ------------------------------------------------------------

async def test_a_binding_paused_or_revoked_releases_its_quotes_whole(store, client):
    f = await Family().make(store, client, first=2_000)
    c = charge(f.patient, 5_000)
    await store.settle([quote_of(c)], now_ms=T0)
    # still in force (a late event after a resume): the hold stands
    assert await store.release_binding(f.b1, f.patient, "binding_paused", AT) == 0
    await bind(client, f.patient, f.father, 1, XIAN, paused=True, binding_id=f.b1)
    assert await store.release_binding(f.b1, f.patient, "binding_paused", AT) == 1
    assert await store.release_binding(f.b1, f.patient, "binding_paused", AT) == 0    # redelivered
    assert await account(store, f.father) == (2_000, 0) and await account(store, f.sister) == (10_000, 0)
    [release] = await store.outbox()
    assert (release.reason, [l.amount for l in release.lines]) == ("binding_paused", [2_000, 3_000, 0])

    d = charge(f.patient, 5_000)
    [q] = await store.settle([quote_of(d)], now_ms=T0)              # the paused binding pays nothing
    assert [(l.person_id, l.amount) for l in q.lines] == [(f.sister, 5_000), (None, 0)]
    await client.hdel(f"bnd:pay:{f.patient}", f.b2)                 # revoked
    assert await store.release_binding(f.b2, f.patient, "binding_revoked", AT) == 1
    assert await account(store, f.sister) == (10_000, 0)


async def test_settling_a_quote_whose_binding_was_paused_since_releases_it_whole(store, client):
    f = await Family().make(store, client, first=2_000)
    c = charge(f.patient, 5_000)
    await store.settle([quote_of(c)], now_ms=T0)
    await bind(client, f.patient, f.sister, 2, BAOJI, paused=True, binding_id=f.b2)   # no event seen yet
    [s] = await store.settle([replace(c, quote_id=f"Q-{c.charge_id}")], now_ms=T0 + 1)
    assert (s.status, s.reason) == ("REJECTED", "QUOTE_RELEASED")
    assert await account(store, f.father) == (2_000, 0) and await account(store, f.sister) == (10_000, 0)
    [release] = await store.outbox()
    assert release.reason == "binding_paused"
    await client.hdel(f"bnd:pay:{f.patient}", f.b1)
    e = charge(f.patient, 1_000)
    await store.settle([quote_of(e)], now_ms=T0)
    # nothing held by the paused or the revoked binding: cash
    [s] = await store.settle([e], now_ms=T0 + 1)
    assert [l.source for l in s.lines] == ["cash"]


# --- limits ----------------------------------------------------------------------------------

async def test_concurrent_charges_of_two_beneficiaries_never_exceed_the_grantors_limit(store, client):
    grantor, kids = new_person(), [new_person(), new_person()]
    limit = 50_000
    await store.register([(grantor, XIAN, "e", 1_000_000)] + [(k, XIAN, "r", None) for k in kids])
    bindings = {k: await bind(client, k, grantor, 1, XIAN, limit=limit) for k in kids}
    charges = [charge(kids[i % 2], 700 + (i * 53) % 1_300) for i in range(200)]
    quotes = [quote_of(charge(kids[i % 2], 900 + i)) for i in range(30)]   # held, not settled
    batches = [charges[i:i + 10] for i in range(0, len(charges), 10)] + [quotes]
    results = [a for b in await asyncio.gather(*(store.settle(x, now_ms=T0) for x in batches)) for a in b]
    assert all(a.status in ("SETTLED", "QUOTED", "REJECTED") for a in results)
    paid = {k: 0 for k in kids}
    for a in results:
        for l in a.lines:
            if l.source == "grantor":
                paid[next(k for k in kids if l.binding_id == bindings[k])] += l.amount if a.status == "SETTLED" else 0
    for k in kids:
        used = await store.used(bindings[k], MONTH)
        assert used == limit                 # reached, never exceeded
        held = sum(l.amount for a in results if a.status == "QUOTED" for l in a.lines if l.binding_id == bindings[k])
        assert used == paid[k] + held        # sum of used == sum of grantor lines, posted or held
    balance, held_total = await account(store, grantor)
    assert balance == 1_000_000 - sum(paid.values()) and held_total == sum(
        l.amount for a in results if a.status == "QUOTED" for l in a.lines if l.source == "grantor")


async def test_a_refund_gives_the_limit_back_in_the_month_of_the_payment(store, client):
    f = await Family().make(store, client, limit1=5_000)
    c = charge(f.patient, 4_000)
    [s] = await store.settle([c], now_ms=T0)
    assert await store.used(f.b1, MONTH) == 4_000
    # kept as long as a charge record after the binding's last payment: a refund finds its month
    assert 0 < await client.ttl(f"stl:used:{f.b1}") <= 3600  # make_store's record_ttl
    await client.hset(f"stl:used:{f.b1}", "202607", 1_234)          # next month's use stays as it is
    [r] = await store.refund([refund(c.charge_id, 1_500)])           # refunded in July
    assert r.status == "REFUNDED" and [l.binding_id for l in r.lines] == [f.b1]
    assert await store.used(f.b1, MONTH) == 2_500
    assert await store.used(f.b1, "202607") == 1_234
    r_id = "R-again"
    [same] = await store.refund([replace(refund(c.charge_id, 1_500), refund_id=r_id)])
    [redelivered] = await store.refund([replace(refund(c.charge_id, 1_500), refund_id=r_id)])
    assert (same.status, redelivered.replay) == ("REFUNDED", True)
    assert await store.used(f.b1, MONTH) == 1_000                    # given back once


async def test_a_paused_binding_pays_nothing_and_the_waterfall_goes_on(store, client):
    f = await Family().make(store, client, paused1=True)
    [s] = await store.settle([charge(f.patient, 4_000)], now_ms=T0)
    assert [(l.person_id, l.amount) for l in s.lines] == [(f.sister, 4_000), (None, 0)]
    assert await store.used(f.b1, MONTH) == 0 and await store.used(f.b2, MONTH) == 4_000


# --- one answer per message (issue 21) --------------------------------------------------------

async def test_a_plain_charge_whose_quote_a_pause_released_settles_plain_and_alike_when_redelivered(store, client):
    f = await Family().make(store, client, first=2_000)
    c = charge(f.patient, 5_000)
    await store.settle([quote_of(c)], now_ms=T0)                    # father 2000, sister 3000 held
    await bind(client, f.patient, f.father, 1, XIAN, paused=True, binding_id=f.b1)   # no event seen yet

    first, redelivered = await store.settle([c], now_ms=T0 + 1), await store.settle([c], now_ms=T0 + 2)

    assert first[0].status == "SETTLED" and not first[0].replay
    assert [(l.person_id, l.amount) for l in first[0].lines] == [(f.sister, 5_000), (None, 0)]
    assert (redelivered[0].status, redelivered[0].replay, redelivered[0].lines) == ("SETTLED", True, first[0].lines)
    assert await account(store, f.father) == (2_000, 0) and await account(store, f.sister) == (5_000, 0)
    [[_, _, reason, _, _]] = await outbox(client)                   # the quote's release is still announced
    assert reason == "binding_paused"


async def test_a_charge_naming_a_released_quote_is_refused_alike_every_time(store, client):
    f = await Family().make(store, client)
    c = charge(f.patient, 3_000)
    await store.settle([quote_of(c)], now_ms=T0)
    await store.settle([cancel_of(c)], now_ms=T0 + 1)
    named = replace(c, quote_id=f"Q-{c.charge_id}")
    answers = [(a.status, a.reason) for a in await store.settle([named, named], now_ms=T0 + 2)]
    assert answers == [("REJECTED", "QUOTE_RELEASED")] * 2
    assert await client.get(f"stl:rej:{HOSPITAL}:{named.event_id}") == b"QUOTE_RELEASED"


async def test_a_cancelled_quote_is_quoted_again_with_new_amounts_under_a_new_id(store, client):
    f = await Family().make(store, client)
    c = charge(f.patient, 3_000)
    [q1] = await store.settle([quote_of(c)], now_ms=T0)
    await store.settle([cancel_of(c)], now_ms=T0 + 1)
    corrected = replace(c, digest="d2", borne=2_500)

    [q2] = await store.settle([quote_of(corrected)], now_ms=T0 + 2)
    [resent] = await store.settle([quote_of(corrected)], now_ms=T0 + 3)

    assert (q1.quote_id, q2.status, q2.quote_id) == (f"Q-{c.charge_id}", "QUOTED", f"Q-{c.charge_id}.2")
    assert [l.amount for l in q2.lines] == [2_500, 0] and not q2.replay
    assert (resent.status, resent.replay, resent.quote_id) == ("QUOTED", True, q2.quote_id)
    assert await account(store, f.father) == (10_000, 2_500)
    # the old quote's id is not this quote; the new one settles the corrected charge
    [old] = await store.settle([replace(corrected, quote_id=q1.quote_id, event_id=str(uuid.uuid4()))],
                               now_ms=T0 + 4)
    assert (old.status, old.reason) == ("REJECTED", "QUOTE_UNKNOWN")
    [s] = await store.settle([replace(corrected, quote_id=q2.quote_id, event_id=str(uuid.uuid4()))], now_ms=T0 + 5)
    assert s.status == "SETTLED" and await account(store, f.father) == (7_500, 0)


async def test_an_expired_quote_is_quoted_again_but_a_held_one_is_not(store, client):
    f = await Family().make(store, client)
    c = charge(f.patient, 3_000)
    await store.settle([quote_of(c)], now_ms=T0)
    [held] = await store.settle([quote_of(replace(c, digest="d2"))], now_ms=T0 + 1)
    assert (held.status, held.reason) == ("REJECTED", "QUOTE_MISMATCH")
    [again] = await store.settle([quote_of(replace(c, digest="d2", borne=1_000))], now_ms=T0 + HOLD_MS)
    assert (again.status, again.quote_id, [l.amount for l in again.lines]) == (
        "QUOTED", f"Q-{c.charge_id}.2", [1_000, 0])
    assert await account(store, f.father) == (10_000, 1_000)


async def test_only_projection_refusals_are_provisional_in_the_function(store, client):
    """The refusals a Function never records (a resend may change them): the projection refusals.
    The signature refusals are provisional too, decided before any Function runs."""
    from services.settlement.domain.reasons import PROJECTION_REFUSALS, PROVISIONAL, Reason
    assert sorted(x.decode() for x in await client.fcall_ro("provisional_refusals", 0)) == sorted(PROJECTION_REFUSALS)
    assert PROVISIONAL == {Reason.UNKNOWN_PATIENT, Reason.UNKNOWN_INSTITUTION, Reason.UNSIGNED,
                           Reason.UNKNOWN_SIGNER, Reason.BAD_SIGNATURE, Reason.NOT_SIGNERS}
    unknown = charge(new_person(), 1_000)
    [refused] = await store.settle([unknown], now_ms=T0)
    assert (refused.status, refused.reason) == ("REJECTED", "UNKNOWN_PATIENT")
    assert await client.get(f"stl:rej:{HOSPITAL}:{unknown.event_id}") is None      # not recorded
    await store.register([(unknown.patient_id, XIAN, "e", 5_000)])
    [changed] = await store.settle([unknown], now_ms=T0 + 1)        # the same message, once the projection knows him
    assert changed.status == "SETTLED" and not changed.replay
    unlisted = replace(charge(new_person(), 1_000), institution_code="H610300999999")
    [no_inst] = await store.settle([unlisted], now_ms=T0 + 2)
    assert (no_inst.status, no_inst.reason) == ("REJECTED", "UNKNOWN_INSTITUTION")
    assert await client.get(f"stl:rej:H610300999999:{unlisted.event_id}") is None
    outside = new_person()
    await store.register([(outside, "110100", "e", 1_000)])
    beijing = charge(outside, 1_000)
    [far] = await store.settle([beijing], now_ms=T0)
    assert (far.status, far.reason) == ("REJECTED", "OUTSIDE_PROVINCE")
    assert await client.get(f"stl:rej:{HOSPITAL}:{beijing.event_id}") == b"OUTSIDE_PROVINCE"
