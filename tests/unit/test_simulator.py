"""The simulator's generation: who the province holds and what it sends, deterministic for a seed
and valid against the contract's own models; and the pacer that spaces it out."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import date, datetime

import pytest

from shared.bureau import AccountMovement, BalanceSnapshot, PersonRegistered
from shared.envelope import CHINA_TZ
from shared.identity import is_valid_id_number
from shared.institutions import InstitutionRegistered
from shared.money import format_yuan, parse_yuan
from shared.regions import is_in_province
from tooling.devkeys import DevKeys
from services.binding.contract import CreateBinding
from services.settlement.contract import ChargeRefunded, ChargeSubmitted
from simulator.grantors import GrantorActions
from simulator.pacing import pace
from simulator.province import XIAN, build_province
from simulator.traffic import Traffic

TODAY = date(2026, 5, 22)
AT = datetime(2026, 5, 22, 9, 30, tzinfo=CHINA_TZ)


def province(seed: int = 13):
    return build_province("small", seed, TODAY)


def traffic(seed: int = 1, **kw) -> Traffic:
    return Traffic(province(), random.Random(seed), "T1", **kw)


def play(t: Traffic, n: int):
    return [t.next(AT) for _ in range(n)]


def test_the_same_seed_draws_the_same_province_and_another_seed_another():
    assert province(13) == province(13)
    assert province(13).people != province(14).people


def test_people_are_registered_with_valid_distinct_id_numbers_in_the_province():
    p = province()
    ids = [x.person_id for x in p.people]
    assert len(ids) == len(set(ids))
    for person in p.people:
        assert is_valid_id_number(person.person_id, today=TODAY)
        assert is_in_province(person.region)
        PersonRegistered.model_validate(person.registered())
    assert {x.scheme for x in p.people} == {"employee", "resident"}


def test_institutions_of_every_kind_in_several_cities(tmp_path):
    p = province()
    keys = DevKeys(tmp_path)
    for inst in p.institutions:
        registered = InstitutionRegistered.model_validate(inst.registered(keys.institution_public_keys(inst.code)))
        assert [k.key_id for k in registered.public_keys] == [f"his:{inst.code}:k1"]
    assert {i.kind for i in p.institutions} == {"hospital", "clinic", "pharmacy"}
    assert len({i.region for i in p.institutions}) >= 4
    assert len({i.code for i in p.institutions}) == len(p.institutions)


def test_bindings_follow_the_rules_and_some_cross_regions():
    p = province()
    assert p.bindings
    for b in p.bindings:
        assert b.grantor.scheme == "employee" and b.relation in {"father", "mother", "spouse", "child"}
        assert b.grantor.person_id != b.beneficiary.person_id
        CreateBinding.model_validate(b.form(TODAY) | {"channel": "app"})
    orders: dict[str, list[int]] = {}
    for b in p.bindings:
        orders.setdefault(b.beneficiary.person_id, []).append(b.payment_order)
    assert all(len(o) <= 2 and len(set(o)) == len(o) for o in orders.values())
    assert any(b.cross_region for b in p.bindings)
    demo = p.demo_grantor()
    assert demo.region == XIAN and any(b.grantor == demo and b.cross_region for b in p.bindings)


def test_the_same_seed_plays_the_same_messages():
    assert play(traffic(5), 300) == play(traffic(5), 300)
    assert play(traffic(5), 50) != play(traffic(6), 50)


def test_charges_are_valid_and_add_up_and_come_in_every_kind():
    t = traffic()
    out = play(t, 2_000)
    kinds = Counter(o.kind for o in out)
    assert {"own", "grantor", "cash", "fraud", "credit", "local_debit", "snapshot"} <= set(kinds)
    assert kinds["own"] + kinds["grantor"] + kinds["cash"] > 0.6 * len(out)
    registered = {p.person_id: p for p in t.province.people}
    institutions = {i.code: i for i in t.province.institutions}
    charge_ids = set()
    for o in out:
        if o.event_type != "ChargeSubmitted":
            continue
        c = ChargeSubmitted.model_validate(o.payload)
        assert c.fund_paid + c.individual_borne == c.total
        assert institutions[c.institution_code].region == c.institution_region
        assert c.patient_id in registered and o.key == c.patient_id
        assert (c.code_holder_id != c.patient_id) == (o.kind == "fraud")
        charge_ids.add(c.charge_id)
    assert len(charge_ids) == sum(1 for o in out if o.event_type == "ChargeSubmitted")
    assert len({o.event_id for o in out}) == len(out)


def test_refunds_only_of_settled_charges_and_never_more_than_borne():
    t = traffic()
    assert not [o for o in play(t, 500) if o.kind == "refund"]
    charges = [o for o in play(t, 200) if o.event_type == "ChargeSubmitted" and o.kind != "fraud"]
    for o in charges:
        t.settled(o.payload | {"lines": []})
    refunds = [o for o in play(t, 1_000) if o.kind == "refund"]
    assert refunds
    by_id = {o.payload["charge_id"]: o.payload for o in charges}
    for r in refunds:
        p = ChargeRefunded.model_validate(r.payload)
        charge = by_id[p.charge_id]
        assert p.institution_code == charge["institution_code"] and r.key == charge["patient_id"]
        assert 0 < p.amount <= parse_yuan(charge["individual_borne"])
    assert len({r.payload["charge_id"] for r in refunds}) == len(refunds)  # each refunded once


def test_bureau_seq_increases_per_person_above_the_base():
    t = traffic(seq_base=1_000)
    last: dict[str, int] = {}
    for o in play(t, 3_000):
        if o.topic == "bureau.accounts":
            seq = o.payload["bureau_seq"]
            assert seq > last.get(o.key, 1_000)
            last[o.key] = seq
    assert last


def test_a_snapshot_carries_the_bureaus_book_with_the_platforms_postings_in_it():
    t = traffic()
    person = t.province.employees()[0]
    pid, opening = person.person_id, person.balance_fen
    t.posted({"person_id": pid, "direction": "debit", "amount": "12.34", "account_seq": 1})
    t.posted({"person_id": pid, "direction": "credit", "amount": "2.00", "account_seq": 2})
    t.posted({"person_id": pid, "direction": "credit", "amount": "2.00", "account_seq": 2})  # redelivered
    moved = 0
    for o in play(t, 5_000):
        if o.key != pid:
            continue
        if o.event_type == "AccountCredited":
            moved += parse_yuan(AccountMovement.model_validate(o.payload).amount)
        elif o.event_type == "AccountDebitedLocally":
            moved -= parse_yuan(o.payload["amount"])
        elif o.event_type == "BalanceSnapshot":
            s = BalanceSnapshot.model_validate(o.payload)
            assert s.postings_applied_through == 2
            assert s.balance == opening - 1234 + 200 + moved
            break
    else:
        pytest.fail("no snapshot of that account")


def test_no_snapshot_of_an_account_whose_postings_were_missed():
    t = traffic()
    pid = t.province.employees()[0].person_id
    t.posted({"person_id": pid, "direction": "debit", "amount": "1.00", "account_seq": 2})  # seq 1 never seen
    assert not [o for o in play(t, 5_000) if o.event_type == "BalanceSnapshot" and o.key == pid]


def test_no_snapshot_when_the_accounts_history_is_not_ours():
    t = traffic(books_known=False)
    assert not [o for o in play(t, 2_000) if o.event_type == "BalanceSnapshot"]


async def test_pace_sends_every_item_in_order_at_about_the_rate():
    sent: list[tuple[int, float]] = []

    async def send(i: int) -> None:
        sent.append((i, time.monotonic()))

    began = time.monotonic()
    assert await pace(range(40), 400.0, send) == 40
    assert [i for i, _ in sent] == list(range(40))
    elapsed = sent[-1][1] - began
    assert 39 / 400 - 0.01 <= elapsed < 1.0
    for n, (_, at) in enumerate(sent):  # never ahead of its due time
        assert at - began >= n / 400 - 0.005


async def test_pace_stops_on_the_event_and_after_the_duration():
    stop = asyncio.Event()
    count = 0

    async def send(_: int) -> None:
        nonlocal count
        count += 1
        if count == 5:
            stop.set()

    assert await pace(iter(int, 1), 1_000.0, send, stop=stop) == 5  # an endless source

    async def ignore(_: int) -> None:
        pass

    assert await pace(iter(int, 1), 100.0, ignore, duration=0.1) == 10  # due at 0, 10, ..., 90 ms


def test_the_tally_keeps_the_latest_sms_as_notify_published_them():
    from simulator.tally import RECENT_SMS, Tally
    from tooling.launch.view import sms_line

    tally = Tally(regions={})
    for i in range(RECENT_SMS + 2):
        tally.delivery("SmsSent", {"sent_at": f"2026-11-26T10:00:0{i}+08:00", "phone": "139****5678",
                                   "recipient_role": "grantor", "template": "binding_created",
                                   "binding_id": f"BND-{i}", "ignored": "x"})
    tally.delivery("SmsFailed", {"phone": "139****0000"})
    kept = tally.as_dict()["recent_sms"]
    assert [m["binding_id"] for m in kept] == [f"BND-{i}" for i in range(2, RECENT_SMS + 2)]
    assert tally.sms == {"sent": RECENT_SMS + 2, "failed": 1}
    assert sms_line(kept[-1]) == "10:00:06 → 139****5678 (grantor) binding_created, binding BND-6"


def test_a_quote_is_settled_with_its_id_and_the_very_body_it_was_quoted_for():
    t = traffic(mix={"quote": 1, "quote_settle": 1, "quote_cancel": 1})
    asked = [o for o in play(t, 200) if o.kind == "quote"]
    assert asked and all(o.event_type == "ChargeQuoteRequested" for o in asked)
    # the HIS asks for its quote on its own reply topic (contract version 3)
    assert all(o.reply_to == f"reply.{o.payload['institution_code']}.sim" for o in asked)
    for i, o in enumerate(asked):
        ChargeSubmitted.model_validate(o.payload)  # a quote asks about exactly a charge
        t.quoted({"charge_id": o.payload["charge_id"], "quote_id": f"Q{i}"})
    later = [o for o in play(t, 400) if o.kind in ("quote_settle", "quote_cancel")]
    by_id = {o.payload["charge_id"]: o.payload for o in asked}
    settled = [o for o in later if o.kind == "quote_settle"]
    cancelled = [o for o in later if o.kind == "quote_cancel"]
    assert settled and cancelled
    for o in settled:
        assert o.event_type == "ChargeSubmitted" and o.payload["quote_id"].startswith("Q")
        assert {k: v for k, v in o.payload.items() if k != "quote_id"} == by_id[o.payload["charge_id"]]
    for o in cancelled:
        assert o.event_type == "ChargeQuoteCancelled"
        assert set(o.payload) == {"institution_code", "charge_id", "quote_id"}
    assert len({o.payload["charge_id"] for o in later}) == len(later)  # each quote ends once


def _settled(charge: str, inst: str, own: int, grantor: int, cash: int) -> dict:
    lines = [{"source": s, "amount": format_yuan(a)} for s, a in (("own", own), ("grantor", grantor), ("cash", cash))]
    return {"charge_id": charge, "institution_code": inst, "patient_id": "x", "settled_at": AT.isoformat(),
            "individual_borne": format_yuan(own + grantor + cash), "lines": lines}


def test_the_his_daily_totals_add_up_what_it_saw_settled_and_the_detail_follows_a_request():
    t = traffic(mix={"his_totals": 1})
    for i in range(6):
        t.settled(_settled(f"C{i}", "H1", 100 * i, 50, 7))
    t.refund_settled({"charge_id": "C1", "refund_id": "R1", "institution_code": "H1", "amount": "0.50",
                      "settled_at": AT.isoformat()})
    totals = [o for o in play(t, 40) if o.event_type == "InstitutionDailyTotals"]
    assert totals
    full = [o.payload for o in totals if o.payload["charge_count"] == 6]
    slipped = [o.payload for o in totals if o.payload["charge_count"] == 5]
    assert full and slipped and len(full) + len(slipped) == len(totals)
    assert full[0]["individual_borne_total"] == format_yuan(sum(100 * i + 57 for i in range(6)))
    assert full[0]["family_total"] == "3.00" and full[0]["refund_count"] == 1 and full[0]["refund_total"] == "0.50"
    assert full[0]["day"] == AT.date().isoformat()
    t.reconciled({"institution_code": "H1", "day": AT.date().isoformat(), "level": "totals",
                  "detail_requested": True})
    detail = t.next(AT)
    assert detail.event_type == "InstitutionDailyDetail" and detail.payload["parts"] == 1
    assert {r["charge_id"] for r in detail.payload["charges"]} <= {f"C{i}" for i in range(6)}
    assert detail.payload["refunds"] == [{"charge_id": "C1", "refund_id": "R1", "amount": "0.50"}]


def test_the_bureau_decides_each_dispute_once_in_the_grantors_region():
    t = traffic(mix={"dispute_decision": 1})
    assert not [o for o in play(t, 20) if o.kind == "dispute_decision"]
    t.dispute_opened({"dispute_id": "D1"}, "610300")
    t.dispute_opened({"dispute_id": "D2"}, "610100")
    decided = [o for o in play(t, 50) if o.kind == "dispute_decision"]
    assert [(o.payload["dispute_id"], o.payload["region"]) for o in decided] == [("D1", "610300"), ("D2", "610100")]
    assert all(o.topic == "bureau.disputes" and o.payload["decision"] in ("upheld", "dismissed") for o in decided)


def test_grantors_act_only_on_their_own_bindings_and_payments_and_never_resume_a_disputed_one():
    g = GrantorActions()
    rng = random.Random(3)
    assert all(g.next(rng) is None for _ in range(20))
    for i in range(10):
        g.binding_event("BindingCreated", {"binding_id": f"B{i}", "grantor_id": f"G{i}"})
    g.paid({"lines": [{"source": "grantor", "person_id": "G1", "reference": "7K2P9QXM", "binding_id": "B1"},
                      {"source": "cash", "amount": "1.00"}]})
    calls = [c for c in (g.next(rng) for _ in range(300)) if c]
    assert {c.action for c in calls} == {"limit", "pause", "dispute"}  # nothing paused yet to resume
    for c in calls:
        binding = c.path.split("/")[3] if c.action != "dispute" else "B1"
        assert c.grantor_id == g.bindings[binding]
    assert [c.body for c in calls if c.action == "dispute"] == [{"reference": "7K2P9QXM"}]
    g.binding_event("BindingPaused", {"binding_id": "B2"})
    g.binding_event("BindingPaused", {"binding_id": "B3"})
    g.binding_event("DisputeOpened", {"binding_id": "B3"})
    resumed = {c.path for c in (g.next(rng) for _ in range(300)) if c and c.action == "resume"}
    assert resumed == {"/v1/bindings/B2/resume"}


# -- contract version 3: the simulator signs as each partner and checks the platform's word ----------

def _verifier(keys: DevKeys):
    """Verifies as the platform does: bureaus' and the gateway's keys from the operator's file, the
    institutions' from their registrations."""
    from shared.signing import InstitutionKey, KeyRing, institution_keys, verify
    from simulator.partners import as_text

    ring = KeyRing.load(keys.partner_keys_file)
    his = {k.key_id: k for inst in province().institutions for k in institution_keys(
        inst.code, inst.region, [InstitutionKey.model_validate(x) for x in keys.institution_public_keys(inst.code)])}
    now = datetime.now(CHINA_TZ)
    return lambda topic, key, value, headers: verify(topic, key, value, as_text(headers),
                                                     lambda kid: his.get(kid) or ring.find(kid), now)


def test_every_message_of_the_play_is_signed_by_the_partner_it_speaks_for(tmp_path):
    from shared.envelope import seal
    from simulator.partners import Partners

    keys = DevKeys.create(tmp_path)
    partners = Partners(keys)
    verified_by = _verifier(keys)
    t = traffic(mix={k: 1 for k in ("own", "credit", "snapshot", "quote", "dispute_decision", "his_totals")})
    t.dispute_opened({"dispute_id": "D1"}, "610300")
    for i in range(3):
        t.settled(_settled(f"C{i}", t.province.institutions[0].code, 100, 50, 7))
    seen = set()
    for o in play(t, 300):
        value = seal(o.event_type, o.payload, event_id=o.event_id)
        signer = verified_by(o.topic, o.key.encode(), value, partners.headers(o.topic, o.key.encode(), value,
                                                                                     o.payload))
        if o.topic in ("his.charges", "his.reconciliation"):
            assert (signer.owner, signer.institution) == ("his", o.payload["institution_code"])
        else:
            assert (signer.owner, signer.region) == ("bureau", o.payload["region"])
        seen.add(o.topic)
    assert seen == {"his.charges", "his.reconciliation", "bureau.accounts", "bureau.disputes"}
    # the gateway's key for what it puts on binding.commands; a registration is the bureau's
    b = province().bindings[0]
    value = seal("CreateBinding", b.form(TODAY) | {"channel": "app"})
    key = b.beneficiary.person_id.encode()
    assert verified_by("binding.commands", key, value,
                        partners.headers("binding.commands", key, value, {})).owner == "gateway"
    inst = province().institutions[0]
    payload = inst.registered(partners.institution_public_keys(inst.code))
    value = seal("InstitutionRegistered", payload)
    signer = verified_by("bureau.institutions", inst.code.encode(), value,
                          partners.headers("bureau.institutions", inst.code.encode(), value, payload))
    assert (signer.owner, signer.region) == ("bureau", inst.region)
    with pytest.raises(ValueError):
        partners.signer("settlement.results", {})


def test_a_signed_message_keeps_the_headers_it_was_asked_to_carry(tmp_path):
    from simulator.partners import Partners

    partners = Partners(DevKeys.create(tmp_path))
    headers = dict(partners.headers("his.charges", b"k", b"{}", {"institution_code": "H610100001"},
                                    {"reply_to": "reply.H610100001.sim", "correlation_id": "E1"}))
    assert headers["reply_to"] == b"reply.H610100001.sim" and headers["correlation_id"] == b"E1"
    assert headers["x-signer"] == b"his:H610100001:k1" and headers["x-signature-alg"] == b"ed25519"


def test_a_bureau_believes_only_postings_the_settlement_service_signed_and_the_tally_counts_the_rest(tmp_path):
    from shared.signing import KeyRing
    from simulator.partners import PlatformCheck
    from simulator.tally import Tally

    keys = DevKeys.create(tmp_path)
    check = PlatformCheck(KeyRing.load(keys.partner_keys_file))
    topic, key, value = "bureau.postings.610100", b"610100", b'{"event_type":"Posting"}'
    now = datetime.now(CHINA_TZ)

    def headers(signer):
        return [(k, v.encode()) for k, v in signer.headers(topic, key, value).items()]

    assert check.check(topic, key, value, headers(keys.service("settlement")), now) is None
    assert check.check(topic, key, value, [], now) == "UNSIGNED"
    assert check.check(topic, key, value + b" ", headers(keys.service("settlement")), now) == "BAD_SIGNATURE"
    assert check.check(topic, key, value, headers(keys.service("notify")), now) == "NOT_SIGNERS"
    assert check.check(topic, key, value, headers(keys.bureau("610100")), now) == "NOT_SIGNERS"
    stranger = [(k, v.encode()) for k, v in DevKeys.create(tmp_path / "other").service("settlement")
                .headers(topic, key, value).items()]
    assert check.check(topic, key, value, stranger, now) == "BAD_SIGNATURE"  # same key id, another key
    tally = Tally(regions={})
    tally.platform_message(topic, None)
    tally.platform_message(topic, "UNSIGNED")
    tally.platform_message("reply.H610100001.sim", "BAD_SIGNATURE")
    assert tally.platform_verified == 1 and tally.failures == 2
    assert tally.as_dict()["unverified"] == {"postings:UNSIGNED": 1, "reply:BAD_SIGNATURE": 1}
