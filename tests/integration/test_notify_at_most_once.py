"""Notify's at-most-once paths against the real Redis and the real broker: NotifyService driven
directly, with an injected China-time clock and a scripted SMS gateway (a real HTTP server on
loopback). Outcomes are read back off `notify.deliveries` as any consumer reads them.

Every "nothing was sent" assertion first waits for a positive signal from the same service (a
later message's SmsSent), so it cannot pass merely because the service had not got there yet."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import uuid
from datetime import datetime, timedelta

import pytest

from shared import topics as t
from shared.envelope import CHINA_TZ, seal
from shared.kafka import Received, make_broker
from shared.references import payment_reference
from services.notify.domain.quiet import parse_quiet_hours
from services.notify.providers.http_gateway import HttpSmsGateway
from services.notify.storage.deliveries import DeliveryStore
from services.notify.domain.notices import for_settlement
from services.notify.usecases import NotifyService, message_id_for
from shared.signing import KeyRing
from tests.support import (Reply, SmsGateway, body, china_today, dev_keys, institution_registered, new_person_id,
                           signed_headers)

pytestmark = pytest.mark.integration

LEASE, WAIT, RETRY = 60, 600, 10  # seconds: claim lease, wait for an unknown person, between looks


class Clock:
    """The service's clock, moved by the test; China time."""

    def __init__(self, moment: datetime) -> None:
        self.now = moment

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="module")
def gateway():
    g = SmsGateway()
    yield g
    g.server.shutdown()


@pytest.fixture
async def broker(infra):
    settings = infra.settings()
    b = make_broker(settings, client_id="notify-test")
    await b.start()
    yield b
    await b.stop()


class Rig:
    """Notify instances over the session's Redis and broker, and the records they publish."""

    def __init__(self, redis, broker, bus, gateway) -> None:
        self.redis, self.broker, self.bus, self.gateway = redis, broker, bus, gateway
        self.store = DeliveryStore(redis, record_ttl=400 * 86_400)
        self._offsets = iter(range(10**6))

    def instance(self, clock: Clock, timeout: float = 2.0, gateway_class=HttpSmsGateway, **options) -> NotifyService:
        provider = gateway_class(self.gateway.url, "id", "secret", "陕西医保", timeout)
        return NotifyService(self.store, self.broker, provider, parse_quiet_hours("22:00-07:00"), 3, 10,
                             lease_seconds=LEASE, unknown_wait_seconds=WAIT, unknown_retry_seconds=RETRY,
                             clock=clock, keys=KeyRing.load(dev_keys().partner_keys_file).find,
                             signing_key=dev_keys().service("notify"), **options)

    def received(self, topic: str, value: bytes, key: str = "k") -> Received:
        """As consumed: signed as the partner it speaks for (partner topics)."""
        headers = {k: v.decode() for k, v in signed_headers(topic, key.encode(), value)}
        return Received(topic, 0, next(self._offsets), key.encode(), value, headers)

    async def register(self, service: NotifyService, phone: bool = True) -> dict:
        p = {"person_id": new_person_id(), "name": f"测{chr(0x4e00 + random.randrange(2000))}明",
             "region": "610100", "scheme": "employee", "employer": "单位", "balance": "100.00"}
        if phone:
            p["phone"] = f"138{random.randrange(10**8):08d}"
        await service.on_bureau_accounts([self.received(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p))])
        return p

    def payment(self, clock: Clock, grantor: dict, patient: dict, amount: str = "12.50",
                institution: str = "H61010001", **extra) -> Received:
        moment = clock().isoformat(timespec="seconds")
        payload = {"charge_id": f"C{uuid.uuid4().hex[:12]}", "patient_id": patient["person_id"],
                   "individual_borne": amount, "institution_code": institution, "charged_at": moment,
                   "settled_at": moment, "lines": [
                       {"source": "grantor", "person_id": grantor["person_id"], "region": "610100",
                        "payment_order": 1, "amount": amount, "balance_after": "87.50"}], **extra}
        return self.received(t.SETTLEMENT_RESULTS, seal("ChargeSettled", payload, event_id=str(uuid.uuid4())))

    def binding(self, grantor: dict, beneficiary: dict) -> Received:
        today = china_today()
        payload = {"command_id": str(uuid.uuid4()), "binding_id": f"B{uuid.uuid4().hex[:12]}",
                   "grantor_id": grantor["person_id"], "beneficiary_id": beneficiary["person_id"],
                   "relation": "mother", "payment_order": 1, "start_date": today.isoformat(),
                   "end_date": (today + timedelta(days=365)).isoformat(), "grantor_region": "610100",
                   "beneficiary_region": "610100", "channel": "app"}
        return self.received(t.BINDING_EVENTS, seal("BindingCreated", payload, event_id=str(uuid.uuid4())))

    async def outcomes(self, source: Received, count: int = 1) -> list[dict]:
        event_id = json.loads(source.value)["event_id"]
        records = await self.bus.watchers[t.NOTIFY_DELIVERIES].wait_for(
            lambda r: body(r)["payload"]["source_event_id"] == event_id, timeout=30, count=count)
        return [body(r) for r in records]

    def seen(self, source: Received) -> list[dict]:
        event_id = json.loads(source.value)["event_id"]
        return [body(r) for r in self.bus.watchers[t.NOTIFY_DELIVERIES].matching(
            lambda r: body(r)["payload"]["source_event_id"] == event_id)]

    async def signal(self, service: NotifyService, clock: Clock) -> None:
        """A payment through `service`, awaited until its SmsSent is on the topic: everything the
        service was given before it has been handled."""
        grantor, patient = await self.register(service), await self.register(service)
        marker = self.payment(clock, grantor, patient)
        await service.on_settlement_results([marker])
        [sent] = await self.outcomes(marker)
        assert sent["event_type"] == "SmsSent"


@pytest.fixture
async def rig(clean_redis, broker, bus, gateway):
    rig = Rig(clean_redis, broker, bus, gateway)
    await rig.store.load_functions()
    return rig


def at(hour: int, minute: int = 0) -> Clock:
    return Clock(datetime.combine(china_today(), datetime.min.time(), CHINA_TZ).replace(hour=hour, minute=minute))


async def test_binding_news_at_night_waits_for_the_morning_and_goes_out_once(rig, gateway):
    clock = at(23)
    notify = rig.instance(clock)
    son, mother = await rig.register(notify), await rig.register(notify)
    created = rig.binding(son, mother)
    await notify.on_binding_events([created])
    await rig.signal(notify, clock)  # an urgent payment goes at once, even at night
    assert gateway.to(son["phone"]) == [] and gateway.to(mother["phone"]) == []
    assert rig.seen(created) == []

    clock.now = clock.now.replace(hour=6, minute=59) + timedelta(days=1)
    assert await notify.release_due() == 0  # still quiet
    assert gateway.to(son["phone"]) == []

    clock.advance(minutes=1)
    assert await notify.release_due() == 2
    outcomes = await rig.outcomes(created, count=2)
    assert {o["event_type"] for o in outcomes} == {"SmsSent"}
    assert [r["TemplateCode"] for r in gateway.to(son["phone"])] == ["binding_created_grantor"]
    assert [r["TemplateCode"] for r in gateway.to(mother["phone"])] == ["binding_created_beneficiary"]

    assert await notify.release_due() == 0
    await notify.on_binding_events([created])  # redelivered: the same outcomes again, no SMS
    again = await rig.outcomes(created, count=4)
    assert sorted(o["event_id"] for o in again[2:]) == sorted(o["event_id"] for o in outcomes)
    assert len(gateway.to(son["phone"])) == 1 and len(gateway.to(mother["phone"])) == 1


async def test_a_claim_left_by_a_crashed_sender_is_left_alone_within_its_lease_and_unknown_after(rig, gateway):
    clock_a = at(10)
    crashed = rig.instance(clock_a)
    grantor, patient = await rig.register(crashed), await rig.register(crashed)
    release = threading.Event()
    gateway.plan[grantor["phone"]] = [Reply(hold=release)]
    payment = rig.payment(clock_a, grantor, patient)
    sending = asyncio.create_task(crashed.on_settlement_results([payment]))
    await gateway.wait_for(grantor["phone"])   # the gateway has it ...
    sending.cancel()                           # ... and the sender dies before hearing back
    release.set()

    clock_b = Clock(clock_a.now + timedelta(seconds=LEASE - 1))
    survivor = rig.instance(clock_b)
    await survivor.on_settlement_results([payment])  # redelivered to another instance
    assert await survivor.release_due() == 0
    await rig.signal(survivor, clock_b)
    assert rig.seen(payment) == [] and len(gateway.to(grantor["phone"])) == 1

    clock_b.advance(seconds=2)  # past the lease
    assert await survivor.release_due() == 1
    [failed] = await rig.outcomes(payment)
    assert failed["event_type"] == "SmsFailed" and failed["payload"]["reason"] == "outcome_unknown"
    assert failed["payload"]["phone"] == grantor["phone"][:3] + "****" + grantor["phone"][-4:]

    assert await survivor.release_due() == 0
    await survivor.on_settlement_results([payment])
    again = await rig.outcomes(payment, count=2)
    assert again[1]["event_id"] == failed["event_id"] and again[1] == failed
    assert len(gateway.to(grantor["phone"])) == 1


async def test_a_sender_whose_claim_was_taken_over_publishes_no_second_outcome(rig, gateway):
    clock_a = at(10)
    slow = rig.instance(clock_a, timeout=10)
    grantor, patient = await rig.register(slow), await rig.register(slow)
    release = threading.Event()
    gateway.plan[grantor["phone"]] = [Reply(hold=release)]
    payment = rig.payment(clock_a, grantor, patient)
    sending = asyncio.create_task(slow.on_settlement_results([payment]))
    await gateway.wait_for(grantor["phone"])

    other = rig.instance(Clock(clock_a.now + timedelta(seconds=LEASE + 1)))
    assert await other.release_due() == 1
    [failed] = await rig.outcomes(payment)
    assert failed["payload"]["reason"] == "outcome_unknown"

    release.set()  # the gateway answers the slow sender after all: OK
    await asyncio.wait_for(sending, 15)
    await rig.signal(slow, clock_a)
    assert rig.seen(payment) == [failed]


async def test_a_gateway_timeout_is_an_unknown_outcome_and_never_resent(rig, gateway):
    clock = at(10)
    notify = rig.instance(clock, timeout=0.3)
    grantor, patient = await rig.register(notify), await rig.register(notify)
    gateway.plan[grantor["phone"]] = [Reply(delay=1.0)]
    payment = rig.payment(clock, grantor, patient)
    await notify.on_settlement_results([payment])
    [failed] = await rig.outcomes(payment)
    assert failed["event_type"] == "SmsFailed"
    assert (failed["payload"]["reason"], failed["payload"]["attempts"]) == ("outcome_unknown", 1)
    await notify.on_settlement_results([payment])
    assert (await rig.outcomes(payment, count=2))[1] == failed
    assert len(gateway.to(grantor["phone"])) == 1


async def test_an_unreadable_200_is_an_unknown_outcome_and_never_resent(rig, gateway):
    clock = at(10)
    notify = rig.instance(clock)
    grantor, patient = await rig.register(notify), await rig.register(notify)
    gateway.plan[grantor["phone"]] = [Reply(raw=b"<html>OK</html>")]
    payment = rig.payment(clock, grantor, patient)
    await notify.on_settlement_results([payment])
    [failed] = await rig.outcomes(payment)
    assert (failed["payload"]["reason"], failed["payload"]["attempts"]) == ("outcome_unknown", 1)
    assert len(gateway.to(grantor["phone"])) == 1


async def test_a_4xx_refusal_fails_at_once_and_a_5xx_is_tried_again(rig, gateway):
    clock = at(10)
    notify = rig.instance(clock)
    grantor, patient = await rig.register(notify), await rig.register(notify)
    gateway.plan[grantor["phone"]] = [Reply(400, json.dumps({"Code": "isv.MOBILE_NUMBER_ILLEGAL"}).encode())]
    refused = rig.payment(clock, grantor, patient)
    await notify.on_settlement_results([refused])
    [failed] = await rig.outcomes(refused)
    assert failed["event_type"] == "SmsFailed"
    assert (failed["payload"]["reason"], failed["payload"]["attempts"]) == ("gateway_refused", 1)
    assert failed["payload"]["detail"] == "isv.MOBILE_NUMBER_ILLEGAL"
    assert len(gateway.to(grantor["phone"])) == 1

    gateway.plan[grantor["phone"]] = [Reply(503, b"{}"), Reply(503, b"{}")]
    retried = rig.payment(clock, grantor, patient)
    await notify.on_settlement_results([retried])
    [sent] = await rig.outcomes(retried)
    assert sent["event_type"] == "SmsSent"
    assert len(gateway.to(grantor["phone"])) == 4 and len({r["OutId"] for r in gateway.requests[-3:]}) == 1


async def test_a_payment_for_someone_not_yet_known_waits_for_the_registration(rig, gateway):
    clock = at(10)
    notify = rig.instance(clock)
    patient = await rig.register(notify)
    grantor = {"person_id": new_person_id(), "phone": f"137{random.randrange(10**8):08d}"}
    payment = rig.payment(clock, grantor, patient)
    await notify.on_settlement_results([payment])
    await rig.signal(notify, clock)
    assert rig.seen(payment) == []

    clock.advance(seconds=RETRY - 1)
    assert await notify.release_due() == 0
    registration = {"person_id": grantor["person_id"], "name": "王小明", "region": "610100", "scheme": "employee",
                    "employer": "单位", "balance": "100.00", "phone": grantor["phone"]}
    await notify.on_bureau_accounts([rig.received(t.BUREAU_ACCOUNTS, seal("PersonRegistered", registration))])
    clock.advance(seconds=1)
    assert await notify.release_due() == 1
    [sent] = await rig.outcomes(payment)
    assert sent["event_type"] == "SmsSent"
    [request] = gateway.to(grantor["phone"])
    assert json.loads(request["TemplateParam"])["amount"] == "12.50"


async def test_someone_never_registered_gets_no_phone_after_the_wait_and_not_before(rig, gateway):
    clock = at(10)
    notify = rig.instance(clock)
    patient = await rig.register(notify)
    stranger = {"person_id": new_person_id()}
    payment = rig.payment(clock, stranger, patient)
    await notify.on_settlement_results([payment])
    for _ in range(WAIT // RETRY - 1):
        clock.advance(seconds=RETRY)
        assert await notify.release_due() == 1
    await rig.signal(notify, clock)
    assert rig.seen(payment) == []

    clock.advance(seconds=RETRY)
    assert await notify.release_due() == 1
    [failed] = await rig.outcomes(payment)
    assert (failed["event_type"], failed["payload"]["reason"]) == ("SmsFailed", "no_phone")
    assert await notify.release_due() == 0


async def test_the_payment_sms_names_the_registered_institution_with_every_value_as_a_template_param(rig, gateway):
    clock = at(10, 5)
    notify = rig.instance(clock, template_codes={"payment": "SMS_900001"})
    await notify.on_institutions([rig.received(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", institution_registered(
        "H61010001", "610100", name="西安市第一医院")))])
    grantor, patient = await rig.register(notify), await rig.register(notify)

    known = rig.payment(clock, grantor, patient, institution_name="HIS写的假医院")
    unknown = rig.payment(clock, grantor, patient, institution="H99999999")
    # One at a time: the SMS of one batch go to the gateway concurrently, in no fixed order.
    await notify.on_settlement_results([known])
    await rig.outcomes(known)
    await notify.on_settlement_results([unknown])
    await rig.outcomes(unknown)
    first, second = gateway.to(grantor["phone"])
    assert first["TemplateCode"] == second["TemplateCode"] == "SMS_900001"
    params = json.loads(first["TemplateParam"])
    masked = patient["name"][0] + "*" + patient["name"][-1]
    reference = payment_reference("H61010001", json.loads(known.value)["payload"]["charge_id"], grantor["person_id"])
    assert params == {"time": clock.now.strftime("%Y-%m-%d %H:%M"), "beneficiary": masked,
                      "institution": "西安市第一医院", "amount": "12.50", "balance": "87.50", "reference": reference}
    assert json.loads(second["TemplateParam"])["institution"] == "定点医药机构"
    assert "假医院" not in json.dumps(gateway.requests, ensure_ascii=False)


async def test_a_malformed_event_is_dead_lettered_and_the_rest_of_its_batch_is_answered(rig, gateway, bus):
    clock = at(10)
    notify = rig.instance(clock)
    grantor, patient = await rig.register(notify), await rig.register(notify)
    bad = rig.payment(clock, grantor, patient)
    wrong = json.loads(bad.value)
    wrong["payload"]["lines"][0]["amount"] = 12.5  # a number where the contract says a string
    bad = rig.received(t.SETTLEMENT_RESULTS, json.dumps(wrong).encode())
    good = rig.payment(clock, grantor, patient)
    await notify.on_settlement_results([bad, good])
    [sent] = await rig.outcomes(good)
    assert sent["event_type"] == "SmsSent"
    [letter] = await bus.watchers[t.dead_letter_topic(t.SETTLEMENT_RESULTS)].wait_for(
        lambda r: r.value == bad.value, timeout=30)
    assert b"lines.0.amount" in dict(letter.headers)["dlq-error"]
    assert rig.seen(bad) == [] and len(gateway.to(grantor["phone"])) == 1


async def test_quotes_and_reconciliation_answers_are_passed_over_and_an_unknown_event_is_dead_lettered(
        rig, gateway, bus):
    """settlement.results also carries quotes (预结算), answers to a HIS's reconciliation and the
    reversals of upheld disputes (the grantor hears of those by DisputeResolved): nothing to tell
    anyone by them, and nothing wrong; an event type nobody publishes is dead-lettered."""
    clock = at(10)
    notify = rig.instance(clock)
    silent = [rig.received(t.SETTLEMENT_RESULTS, seal(kind, {"charge_id": "C1", "institution_code": "H61010001"},
                                                      event_id=str(uuid.uuid4())))
              for kind in ("ChargeQuoted", "ChargeQuoteReleased", "InstitutionReconciled",
                           "InstitutionReconciliationRejected", "PaymentReversed")]
    unknown = rig.received(t.SETTLEMENT_RESULTS, seal("ChargeTeleported", {"charge_id": "C1"},
                                                      event_id=str(uuid.uuid4())))
    asked = len(gateway.requests)
    await notify.on_settlement_results([*silent, unknown])
    letters = bus.watchers[t.dead_letter_topic(t.SETTLEMENT_RESULTS)]
    await letters.wait_for(lambda r: r.value == unknown.value, timeout=30)
    assert not letters.matching(lambda r: r.value in {m.value for m in silent})
    assert len(gateway.requests) == asked  # nobody was sent anything


class DefectiveGateway(HttpSmsGateway):
    """An adapter with a bug that only one phone number triggers."""

    broken_phone = ""

    async def send(self, sms):
        if sms.phone == self.broken_phone:
            raise RuntimeError("a bug in the adapter")
        return await super().send(sms)


async def only_the_good_one_is_answered(rig, bus, broken: Received, good: Received, error: bytes) -> None:
    """`good` gets its SmsSent; `broken` is dead-lettered with `error` and gets no outcome."""
    [sent] = await rig.outcomes(good)
    assert sent["event_type"] == "SmsSent"
    [letter] = await bus.watchers[t.dead_letter_topic(t.SETTLEMENT_RESULTS)].wait_for(
        lambda r: r.value == broken.value, timeout=30)
    assert dict(letter.headers)["dlq-error"] == error
    assert rig.seen(broken) == []


async def test_a_defect_on_one_message_dead_letters_it_and_the_batch_goes_on(rig, gateway, bus):
    clock = at(10)
    notify = rig.instance(clock, gateway_class=DefectiveGateway)
    victim, grantor, patient = await rig.register(notify), await rig.register(notify), await rig.register(notify)
    DefectiveGateway.broken_phone = victim["phone"]
    broken, good = rig.payment(clock, victim, patient), rig.payment(clock, grantor, patient)
    await notify.on_settlement_results([broken, good])
    await only_the_good_one_is_answered(rig, bus, broken, good, b"unhandled RuntimeError")


async def test_a_message_whose_record_is_unusable_is_dead_lettered_and_the_rest_of_its_wave_is_sent(rig, gateway, bus):
    clock = at(10)
    notify = rig.instance(clock)
    grantor, patient = await rig.register(notify), await rig.register(notify)
    broken, good = rig.payment(clock, grantor, patient), rig.payment(clock, grantor, patient)
    # A foreign value under the message's key makes its claim fail inside Redis: the wave's one
    # Function call errs, and the message alone must pay for it.
    notice = json.loads(broken.value)
    message_id = message_id_for(for_settlement(notice["event_id"], "ChargeSettled", notice["payload"])[0])
    await rig.redis.rpush(f"ntf:msg:{message_id}", "not a message")
    await notify.on_settlement_results([broken, good])
    await only_the_good_one_is_answered(rig, bus, broken, good, b"unhandled ResponseError")
    assert len(gateway.to(grantor["phone"])) == 1


async def test_the_same_payment_twice_in_one_batch_is_sent_once_and_answered_twice(rig, gateway):
    clock = at(10)
    notify = rig.instance(clock)
    grantor, patient = await rig.register(notify), await rig.register(notify)
    payment = rig.payment(clock, grantor, patient)
    await notify.on_settlement_results([payment, rig.received(t.SETTLEMENT_RESULTS, payment.value)])
    first, second = await rig.outcomes(payment, count=2)
    assert first == second and first["event_type"] == "SmsSent"
    assert len(gateway.to(grantor["phone"])) == 1


async def test_a_binding_ending_soon_is_told_once_and_a_revoked_one_not_at_all(rig, gateway):
    clock = at(10)
    notify = rig.instance(clock)
    son, mother, daughter, father = [await rig.register(notify) for _ in range(4)]
    end = (clock().date() + timedelta(days=3)).isoformat()

    def event(event_type: str, grantor: dict, beneficiary: dict, binding_id: str) -> Received:
        created = json.loads(rig.binding(grantor, beneficiary).value)["payload"]
        return rig.received(t.BINDING_EVENTS, seal(event_type, {**created, "binding_id": binding_id, "end_date": end}))

    kept, revoked = f"B{uuid.uuid4().hex[:12]}", f"B{uuid.uuid4().hex[:12]}"
    await notify.on_binding_projection([event("BindingCreated", son, mother, kept),
                                        event("BindingCreated", daughter, father, revoked),
                                        event("BindingRevoked", daughter, father, revoked)])
    assert await notify.check_endings() == 1
    [told] = await gateway.wait_for(son["phone"])
    assert told["TemplateCode"] == "binding_ending_grantor" and json.loads(told["TemplateParam"])["end"] == end
    assert await notify.check_endings() == 1  # seen again, told no second time
    await rig.signal(notify, clock)
    assert len(gateway.to(son["phone"])) == 1 and gateway.to(daughter["phone"]) == []


async def test_an_outcome_is_a_field_of_its_source_days_bucket_kept_for_the_records_ttl(rig, gateway):
    clock = at(10)
    notify = rig.instance(clock)
    grantor, patient = await rig.register(notify), await rig.register(notify)
    payment = rig.payment(clock, grantor, patient)
    await notify.on_settlement_results([payment])
    [sent] = await rig.outcomes(payment)
    message_id = sent["payload"]["message_id"]
    day = datetime.fromisoformat(json.loads(payment.value)["occurred_at"]).astimezone(CHINA_TZ).strftime("%Y%m%d")
    holding = [k async for k in rig.redis.scan_iter(f"ntf:done:{day}:*")
               if await rig.redis.hexists(k, uuid.UUID(message_id).bytes)]
    assert len(holding) == 1 and await rig.redis.ttl(holding[0]) >= 400 * 86_400
    assert not await rig.redis.exists(f"ntf:msg:{message_id}")  # nothing of the message's own is left
    await notify.on_settlement_results([rig.received(t.SETTLEMENT_RESULTS, payment.value)])
    first, again = await rig.outcomes(payment, count=2)
    assert first == again and len(gateway.to(grantor["phone"])) == 1


async def test_an_outcome_recorded_before_the_day_buckets_still_answers_a_redelivery(rig, gateway):
    clock = at(10)
    notify = rig.instance(clock)
    grantor, patient = await rig.register(notify), await rig.register(notify)
    payment = rig.payment(clock, grantor, patient)
    notice = json.loads(payment.value)
    message_id = message_id_for(for_settlement(notice["event_id"], "ChargeSettled", notice["payload"])[0])
    older = ["S", "138****0000", 1, "http", "9006^7", int(clock().timestamp())]
    await rig.redis.set(f"ntf:msg:{message_id}", json.dumps(older), ex=86_400)
    await notify.on_settlement_results([payment])
    [sent] = await rig.outcomes(payment)
    assert sent["event_type"] == "SmsSent" and sent["payload"]["provider_message_id"] == "9006^7"
    assert gateway.to(grantor["phone"]) == []


async def test_a_message_held_before_the_day_buckets_is_released_and_recorded_the_older_way(rig, gateway):
    clock = at(23)
    notify = rig.instance(clock)
    son, mother = await rig.register(notify), await rig.register(notify)
    created = rig.binding(son, mother)
    await notify.on_binding_events([created])
    held = [k async for k in rig.redis.scan_iter("ntf:msg:*")]
    assert len(held) == 2
    for key in held:  # as a notice held by the version before the buckets was stored
        stored = json.loads(await rig.redis.hget(key, "notice"))
        del stored["day"]
        await rig.redis.hset(key, "notice", json.dumps(stored, ensure_ascii=False))
    clock.now = clock.now.replace(hour=7) + timedelta(days=1)
    assert await notify.release_due() == 2
    outcomes = await rig.outcomes(created, count=2)
    assert [await rig.redis.type(key) for key in held] == [b"string", b"string"]
    await notify.on_binding_events([created])  # redelivered: found under either layout, never resent
    again = await rig.outcomes(created, count=4)
    assert sorted(o["event_id"] for o in again[2:]) == sorted(o["event_id"] for o in outcomes)
    assert len(gateway.to(son["phone"])) == 1 and len(gateway.to(mother["phone"])) == 1
