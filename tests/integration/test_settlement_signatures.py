"""Contract version 3 in settlement, through the real broker (TLS) and Redis: every partner message
proves who sent it, and what settlement tells partners is signed.

A HIS message (charge, refund, quote, reconciliation) is believed only for the institution whose
key signed it; refusals are answered on settlement.results, never recorded, and never replied to a
sender that proved nothing. A bureau message is believed only from the bureau of its region;
refusals are dead-lettered naming the code. Institutions' keys come from their bureau-signed
registration, which a later registration replaces."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from shared import topics as t
from shared.envelope import seal
from shared.kafka import ensure_topics
from shared.signing import KeyRing, Signer, SigningKey, verify
from shared.state import person_bucket
from tests.support import (AUTO, TopicView, Watcher, body, charge_submitted, china_today, command, dev_keys, eventually,
                           fen, institution_registered, payload_of, person_registered, yuan)

pytestmark = pytest.mark.integration

XIAN, BAOJI = "610100", "610300"
# Each test registers its institutions afresh (clean_redis empties the projection).
HOSPITALS = {XIAN: "HSIG-XIAN", BAOJI: "HSIG-BAOJI"}
REFUSALS = ["UNSIGNED", "UNKNOWN_SIGNER", "BAD_SIGNATURE", "NOT_SIGNERS"]


@pytest.fixture(scope="module")
def services(infra, platform_pool):
    """Settlement alone: every dead letter on the bureau topics is then settlement's (binding
    reads them too, and would dead-letter the same refusals in its own words)."""
    with platform_pool.alone(("settlement",), {**infra.env(), "LOG_LEVEL": "INFO"}) as services:
        yield services


@pytest.fixture(scope="module")
async def replies(infra, bus):
    """Each hospital's reply topic, watched by the bus (created first, as a HIS creates its own)."""
    topics = {region: f"reply.{code}.sig" for region, code in HOSPITALS.items()}
    await ensure_topics(infra.settings(), list(topics.values()))
    watcher = Watcher(infra.kafka_bootstrap, list(topics.values()), infra.security)
    await watcher.start()
    bus.watchers.update({topic: TopicView(watcher, topic) for topic in topics.values()})
    yield topics
    await watcher.stop()


def signing(refusal: str, own: SigningKey, other: SigningKey, topic: str, key: str, value: bytes):
    """(signer, headers) for Bus.send that make a message refused `refusal`: unsigned, signed by a
    key nobody registered, with a signature of other bytes, or signed by another partner."""
    if refusal == "UNSIGNED":
        return None, {}
    if refusal == "UNKNOWN_SIGNER":
        return SigningKey.generate(own.key_id.rsplit(":", 1)[0] + ":k9"), {}
    if refusal == "BAD_SIGNATURE":
        return own, {"x-signature": own.sign(topic, key.encode(), value + b" ")}
    return other, {}


def signed_by_settlement(record) -> bool:
    """The record carries settlement:k1's signature, checked with the operator's keys file."""
    ring = KeyRing.load(dev_keys().partner_keys_file)
    signer = verify(record.topic, record.key, record.value, {k: v.decode() for k, v in record.headers}, ring.find,
                    datetime.now(timezone.utc))
    return isinstance(signer, Signer) and (signer.key_id, signer.service) == ("settlement:k1", "settlement")


class Partners:
    """The bureaus and the HIS of two hospitals, reduced to what these tests need."""

    def __init__(self, bus, redis, services) -> None:
        self.bus, self.redis, self.services = bus, redis, services

    async def institution(self, code: str, region: str, public_keys: list[dict] | None = None,
                          signer=AUTO) -> None:
        """Register (signed by the region's bureau unless told) and wait until the keys are in."""
        payload = institution_registered(code, region) | ({"public_keys": public_keys} if public_keys else {})
        await self.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", payload), key=code, signer=signer)
        ids = [k["key_id"] for k in payload["public_keys"]]
        await eventually(lambda: self._keys_are(code, ids), 30, f"{code} registered with {ids}")

    async def _keys_are(self, code: str, ids: list[str]) -> bool:
        raw = await self.redis.hget("stl:ikeys", code)
        return bool(raw) and [k["key_id"] for k in json.loads(raw)["keys"]] == ids

    async def hospitals(self) -> None:
        for region, code in HOSPITALS.items():
            await self.institution(code, region)

    async def person(self, region: str = XIAN, balance: str = "10.00") -> dict:
        p = person_registered(region, balance=balance)
        await self.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
        await eventually(lambda: self.account(p), 30, "the person registered")
        return p

    async def account(self, person: dict) -> list[str] | None:
        raw = await self.redis.hget(f"stl:acct:{person_bucket(person['person_id'])}", person["person_id"])
        return raw.decode().split("|") if raw else None

    async def outcome(self, event_id: str) -> dict:
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("source_event_id") == event_id or payload_of(r).get("report_for") == event_id)
        return body(r)

    async def settled(self, charge_id: str, event_type: str = "ChargeSettled") -> dict:
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge_id and body(r)["event_type"] == event_type)
        return body(r)

    async def dead(self, topic: str, *markers: str) -> str:
        """The dead letter of the message carrying every marker: its dlq-error."""
        [r] = await self.bus.watchers[t.dead_letter_topic(topic)].wait_for(
            lambda r: all(m.encode() in r.value for m in markers))
        return dict(r.headers)["dlq-error"].decode()

    def log(self) -> str:
        return self.services["settlement"].log_text()


@pytest.fixture
async def partners(bus, clean_redis, services, replies):
    partners = Partners(bus, clean_redis, services)
    await partners.hospitals()
    return partners


def his_message(kind: str, patient: dict) -> tuple[str, str, dict, str]:
    """(topic, event_type, payload, key) of a HIS message of the Xi'an hospital."""
    hospital = HOSPITALS[XIAN]
    charge = charge_submitted(patient, hospital, XIAN, 100)
    if kind == "charge":
        return t.HIS_CHARGES, "ChargeSubmitted", charge, patient["person_id"]
    if kind == "quote":
        return t.HIS_CHARGES, "ChargeQuoteRequested", charge, patient["person_id"]
    if kind == "refund":
        refund = {"charge_id": charge["charge_id"], "institution_code": hospital, "refund_id": "R1",
                  "amount": "1.00", "refunded_at": charge["charged_at"]}
        return t.HIS_CHARGES, "ChargeRefunded", refund, patient["person_id"]
    totals = {"institution_code": hospital, "day": china_today().isoformat(), "charge_count": 0,
              "individual_borne_total": "0.00", "own_total": "0.00", "family_total": "0.00", "cash_total": "0.00",
              "refund_count": 0, "refund_total": "0.00"}
    return t.HIS_RECONCILIATION, "InstitutionDailyTotals", totals, hospital


# -- HIS messages ------------------------------------------------------------------------------

@pytest.mark.parametrize("refusal", REFUSALS)
@pytest.mark.parametrize("kind", ["charge", "refund", "quote", "reconciliation"])
async def test_a_his_message_that_proves_no_sender_or_another_is_refused_unrecorded_and_unanswered_on_reply(
        partners, bus, replies, kind, refusal):
    patient = await partners.person()
    topic, event_type, payload, key = his_message(kind, patient)
    value = command(event_type, payload)
    event_id = body_of(value)["event_id"]
    own, other = dev_keys().institution(HOSPITALS[XIAN]), dev_keys().institution(HOSPITALS[BAOJI])
    signer, headers = signing(refusal, own, other, topic, key, value)
    mine = replies[XIAN]
    await bus.send(topic, value, key=key, signer=signer, headers=headers | {"reply_to": mine, "correlation_id": event_id})

    refused = await partners.outcome(event_id)
    expected = "InstitutionReconciliationRejected" if kind == "reconciliation" else "ChargeRejected"
    assert (refused["event_type"], refused["payload"]["reason_code"]) == (expected, refusal)
    assert refused["payload"]["institution_code"] == HOSPITALS[XIAN]  # what the message named
    assert refused["payload"]["message_en"] and refused["payload"]["message_zh"]
    # never recorded: no refusal, no charge, no quote kept for this message
    assert not await partners.redis.keys(f"stl:rej:*{event_id}*")
    if "charge_id" in payload:
        assert not await partners.redis.keys(f"stl:*{payload['charge_id']}*")

    # The hospital's own signed message behind it is answered on its reply topic; the refused one
    # never was (its sender proved nothing, or is Baoji's hospital: Xi'an's topic is not its own).
    sentinel_topic, sentinel_type, sentinel, sentinel_key = his_message(kind, patient)
    sentinel_value = command(sentinel_type, sentinel)
    await bus.send(sentinel_topic, sentinel_value, key=sentinel_key, headers={"reply_to": mine})
    sentinel_id = body_of(sentinel_value)["event_id"]
    [answer] = await bus.watchers[mine].wait_for(lambda r: body(r)["event_id"] != refused["event_id"] and (
        payload_of(r).get("source_event_id") == sentinel_id or payload_of(r).get("report_for") == sentinel_id
        or payload_of(r).get("charge_id") == sentinel.get("charge_id", "-")))
    assert signed_by_settlement(answer)
    assert not bus.watchers[mine].matching(lambda r: body(r)["event_id"] == refused["event_id"])


def body_of(value: bytes) -> dict:
    return json.loads(value)


async def test_a_his_signing_for_another_institution_is_told_not_signers_on_its_own_reply_topic(partners, bus, replies):
    patient = await partners.person()
    charge = charge_submitted(patient, HOSPITALS[XIAN], XIAN, 100)
    value = command("ChargeSubmitted", charge)
    await bus.send(t.HIS_CHARGES, value, key=patient["person_id"], signer=dev_keys().institution(HOSPITALS[BAOJI]),
                   headers={"reply_to": replies[BAOJI], "correlation_id": "c-1"})
    [told] = await bus.watchers[replies[BAOJI]].wait_for(lambda r: payload_of(r).get("charge_id") == charge["charge_id"])
    assert (body(told)["event_type"], payload_of(told)["reason_code"]) == ("ChargeRejected", "NOT_SIGNERS")
    assert signed_by_settlement(told) and dict(told.headers)["correlation_id"] == b"c-1"
    assert (await partners.account(patient))[0] == "1000"  # nothing debited


async def test_a_charge_signed_by_an_institution_not_yet_registered_is_refused_unrecorded_and_settles_when_resent(
        partners, bus):
    """The refusal (UNKNOWN_SIGNER) is not recorded: the same message, resent once the bureau has
    registered the institution's key, is settled; the two outcomes' event ids differ."""
    code = f"HNEW-{uuid.uuid4().hex[:6]}"
    patient = await partners.person(balance="10.00")
    charge = charge_submitted(patient, code, XIAN, 300)
    value = command("ChargeSubmitted", charge)
    event_id = body_of(value)["event_id"]
    await bus.send(t.HIS_CHARGES, value, key=patient["person_id"])           # signed by his:<code>:k1
    refused = await partners.outcome(event_id)
    assert refused["payload"]["reason_code"] == "UNKNOWN_SIGNER"
    await partners.institution(code, XIAN)
    await bus.send(t.HIS_CHARGES, value, key=patient["person_id"])           # the HIS resends the same bytes
    settled = await partners.settled(charge["charge_id"])
    assert settled["event_id"] != refused["event_id"]
    assert [x["amount"] for x in settled["payload"]["lines"]] == ["3.00", "0.00"]
    assert (await partners.account(patient))[0] == "700"


async def test_a_new_key_list_retires_the_keys_left_out_and_a_key_past_its_end_signs_nothing(partners, bus):
    code = f"HROT-{uuid.uuid4().hex[:6]}"
    keys = dev_keys()
    old, new = keys.institution_public_keys(code, ("k1",)), keys.institution_public_keys(code, ("k2",))
    await partners.institution(code, XIAN, old)
    patient = await partners.person(balance="100.00")

    async def charge_signed_by(label: str) -> dict:
        charge = charge_submitted(patient, code, XIAN, 100)
        value = command("ChargeSubmitted", charge)
        await bus.send(t.HIS_CHARGES, value, key=patient["person_id"], signer=keys.institution(code, label))
        [r] = await bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge["charge_id"])
        return body(r)

    assert (await charge_signed_by("k1"))["event_type"] == "ChargeSettled"
    await partners.institution(code, XIAN, new)                               # rotation: k2 replaces k1
    assert (await charge_signed_by("k1"))["payload"]["reason_code"] == "UNKNOWN_SIGNER"
    assert (await charge_signed_by("k2"))["event_type"] == "ChargeSettled"
    ended = datetime.now(timezone.utc) - timedelta(minutes=1)
    expired = [k | {"not_before": (ended - timedelta(days=30)).isoformat(), "not_after": ended.isoformat()}
               for k in keys.institution_public_keys(code, ("k3",))]
    await partners.institution(code, XIAN, new + expired)
    assert (await charge_signed_by("k3"))["payload"]["reason_code"] == "UNKNOWN_SIGNER"
    assert (await charge_signed_by("k2"))["event_type"] == "ChargeSettled"


# -- what settlement tells partners ------------------------------------------------------------

async def test_postings_go_to_their_regions_topic_signed_by_settlement(partners, bus):
    """A Baoji patient paid by his own account and a Xi'an grantor: each posting on its account's
    region's topic, each verifying with settlement:k1 from the operator's keys file."""
    from shared.binding_index import Payer, encode_payer, payers_key

    patient = await partners.person(BAOJI, balance="1.00")
    grantor = await partners.person(XIAN, balance="50.00")
    today = china_today()
    payer = Payer(f"B{uuid.uuid4().hex[:12]}", grantor["person_id"], 1, today, today + timedelta(days=30), XIAN)
    await partners.redis.hset(payers_key(patient["person_id"]), payer.binding_id, encode_payer(payer))
    charge = charge_submitted(patient, HOSPITALS[BAOJI], BAOJI, 500)
    await bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=patient["person_id"])
    await partners.settled(charge["charge_id"])
    for region, person, amount in ((BAOJI, patient, "1.00"), (XIAN, grantor, "4.00")):
        [posting] = await bus.watchers[t.bureau_postings(region)].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge["charge_id"])
        assert (posting.key, payload_of(posting)["person_id"], payload_of(posting)["amount"]) == (
            region.encode(), person["person_id"], amount)
        assert signed_by_settlement(posting)
    assert not bus.watchers[t.bureau_postings(XIAN)].matching(
        lambda r: payload_of(r).get("person_id") == patient["person_id"])


# -- bureau messages ---------------------------------------------------------------------------

def bureau_message(kind: str, person: dict) -> tuple[str, str, dict, str, str]:
    """(topic, event_type, payload, key, marker) of a Xi'an bureau message; the marker finds its
    dead letter."""
    if kind == "person":
        p = person_registered(XIAN)
        return t.BUREAU_ACCOUNTS, "PersonRegistered", p, p["person_id"], p["person_id"]
    if kind == "institution":
        code = f"HB-{uuid.uuid4().hex[:6]}"
        return t.BUREAU_INSTITUTIONS, "InstitutionRegistered", institution_registered(code, XIAN), code, code
    if kind == "report":
        report_id = uuid.uuid4().hex[:12]
        report = {"region": XIAN, "day": china_today().isoformat(), "report_id": report_id, "postings": []}
        return t.BUREAU_ACCOUNTS, "DailyPostingsReported", report, XIAN, report_id
    amount = yuan(100 + uuid.uuid4().int % 9000)
    if kind == "snapshot":
        snapshot = {"person_id": person["person_id"], "region": XIAN, "balance": amount, "bureau_seq": 1,
                    "postings_applied_through": 0}
        return t.BUREAU_ACCOUNTS, "BalanceSnapshot", snapshot, person["person_id"], amount
    credit = {"person_id": person["person_id"], "region": XIAN, "amount": amount, "bureau_seq": 1}
    return t.BUREAU_ACCOUNTS, "AccountCredited", credit, person["person_id"], amount


@pytest.mark.parametrize("refusal", REFUSALS)
@pytest.mark.parametrize("kind", ["person", "institution", "credit", "snapshot", "report"])
async def test_a_bureau_message_that_proves_no_sender_or_another_region_is_dead_lettered_naming_the_code(
        partners, bus, kind, refusal):
    person = await partners.person(balance="10.00")
    topic, event_type, payload, key, marker = bureau_message(kind, person)
    value = seal(event_type, payload)
    signer, headers = signing(refusal, dev_keys().bureau(XIAN), dev_keys().bureau(BAOJI), topic, key, value)
    await bus.send(topic, value, key=key, signer=signer, headers=headers)
    error = await partners.dead(topic, key, marker)
    assert error.startswith(f"{refusal}: "), error
    # nothing changed: the same message from Xi'an's bureau applies afresh
    await bus.send(topic, value, key=key)
    if kind == "person":
        await eventually(lambda: partners.account(payload), 30, "registered by its own bureau")
    elif kind == "institution":
        await eventually(lambda: partners.redis.hexists("stl:ikeys", key), 30, "registered by its own bureau")
    elif kind == "report":
        [report] = await bus.watchers[t.bureau_postings(XIAN)].wait_for(
            lambda r: payload_of(r).get("report_id") == marker)
        assert signed_by_settlement(report)
    else:
        await eventually(lambda: _seq_is(partners, person, 1), 30, "applied by its own bureau")
        expected = fen(marker) if kind == "snapshot" else 1000 + fen(marker)
        assert (await partners.account(person))[0] == str(expected)


async def _seq_is(partners: Partners, person: dict, seq: int) -> bool:
    account = await partners.account(person)
    return bool(account) and int(account[1]) == seq


async def test_a_bureau_cannot_move_another_regions_account_or_institution(partners, bus):
    """Signed by Baoji's bureau, about Xi'an's: a credit naming Baoji for a Xi'an person, and a
    registration moving Xi'an's hospital to Baoji, change nothing (NOT_SIGNERS)."""
    person = await partners.person(XIAN, balance="10.00")
    credit = {"person_id": person["person_id"], "region": BAOJI, "amount": "77.77", "bureau_seq": 1}
    await bus.send(t.BUREAU_ACCOUNTS, seal("AccountCredited", credit), key=person["person_id"])  # Baoji signs
    assert (await partners.dead(t.BUREAU_ACCOUNTS, person["person_id"], "77.77")).startswith("NOT_SIGNERS: ")
    name = f"moved-{uuid.uuid4().hex[:8]}"
    moved = institution_registered(HOSPITALS[XIAN], BAOJI, name=name)
    await bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", moved), key=HOSPITALS[XIAN])  # Baoji signs
    assert (await partners.dead(t.BUREAU_INSTITUTIONS, name)).startswith("NOT_SIGNERS: ")
    assert await partners.redis.hget("stl:inst", HOSPITALS[XIAN]) == f"{XIAN}|hospital".encode()
    assert (await partners.account(person))[:3] == ["1000", "0", XIAN]


async def test_a_person_moves_to_another_region_only_after_his_own_bureau_transferred_him(partners, bus):
    person = await partners.person(XIAN, balance="10.00")
    in_baoji = person | {"region": BAOJI, "phone": "13800000000", "name": "迁入"}
    await bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", in_baoji), key=person["person_id"])   # Baoji signs
    error = await partners.dead(t.BUREAU_ACCOUNTS, person["person_id"], "迁入")
    assert error.startswith("NOT_SIGNERS: ") and "not transferred" in error, error
    transfer = {"person_id": person["person_id"], "to_region": BAOJI}
    await bus.send(t.BUREAU_ACCOUNTS, seal("PersonTransferred", transfer), key=person["person_id"],
                   signer=dev_keys().bureau(BAOJI))                               # not Baoji's to give
    assert (await partners.dead(t.BUREAU_ACCOUNTS, person["person_id"], "PersonTransferred")).startswith(
        "NOT_SIGNERS: ")
    await bus.send(t.BUREAU_ACCOUNTS, seal("PersonTransferred", transfer), key=person["person_id"],
                   signer=dev_keys().bureau(XIAN))
    await eventually(lambda: partners.redis.hget("stl:moving", person["person_id"]), 30, "the transfer kept")
    await bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", in_baoji), key=person["person_id"])   # Baoji signs
    await eventually(lambda: _region_is(partners, person, BAOJI), 30, "registered in Baoji")
    assert not await partners.redis.hexists("stl:moving", person["person_id"])  # the move is done
    assert (await partners.account(person))[0] == "1000"  # the account and its balance moved with him
    back = in_baoji | {"region": XIAN, "name": "回迁"}
    await bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", back), key=person["person_id"])       # Xi'an signs
    assert (await partners.dead(t.BUREAU_ACCOUNTS, person["person_id"], "回迁")).startswith("NOT_SIGNERS: ")


async def _region_is(partners: Partners, person: dict, region: str) -> bool:
    account = await partners.account(person)
    return bool(account) and account[2] == region


async def test_within_one_batch_a_transfer_and_the_new_regions_registration_apply_in_order(partners, bus):
    """bureau.accounts is keyed by person: his events reach one consumer in order, and a batch is
    judged in that order (each event sees what the ones before it did)."""
    person = person_registered(XIAN, balance="5.00")
    key = person["person_id"]
    in_baoji = person | {"region": BAOJI}
    await bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", person), key=key)
    await bus.send(t.BUREAU_ACCOUNTS, seal("PersonTransferred", {"person_id": key, "to_region": BAOJI}), key=key,
                   signer=dev_keys().bureau(XIAN))
    await bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", in_baoji), key=key)
    await bus.send(t.BUREAU_ACCOUNTS, seal("AccountCredited", {"person_id": key, "region": BAOJI, "amount": "1.00",
                                                               "bureau_seq": 1}), key=key)
    await eventually(lambda: _seq_is(partners, person, 1), 30, "the credit from Baoji applied")
    assert (await partners.account(person))[:3] == ["600", "1", BAOJI]
    assert not await partners.redis.hexists("stl:moving", key)
