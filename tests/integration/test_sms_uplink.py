"""The SMS uplink (I-6) through the real broker and Redis, notify running as production runs it:
a grantor's reply "BF 7K2P9QXM" from the phone registered for him or her becomes one
DisputePayment on binding.commands (watched here as any consumer watches it); a reply from an
unknown phone, or one that holds no reference, asks nothing of binding.

Every "nothing was asked" assertion first waits until notify has handled the reply in question
(its consumer group committed past it: everything it asked or sent for it is out by then), so it
cannot pass merely because notify had not got there yet."""

from __future__ import annotations

import json
import random
import uuid

import pytest

from shared import topics as t
from shared.envelope import seal
from shared.state import person_bucket
from services.notify.storage.deliveries import PHONES_PER_NUMBER, DeliveryStore, encode_contact
from tests.partners.town import disputes_by, message_id_of, send_reply as send, uplink_reply as reply, wait_disputes
from tests.support import body, eventually, handled, new_person_id, payload_of

pytestmark = pytest.mark.integration


async def handled_by_notify(town, event: bytes, count: int = 1) -> None:
    """Until notify has handled the `count`th delivery of the reply `event` (and the watchers
    have read everything published before that)."""
    *_, record = await town.bus.watchers[t.SMS_UPLINK].wait_for(
        lambda r: r.key == message_id_of(event).encode(), timeout=30, count=count)
    await handled(town.bus, f"{town.notify.env['NOTIFY_GROUP_ID']}.{t.SMS_UPLINK}", record)


async def counted(town, outcome: str, above: float) -> None:
    async def more() -> bool:
        return await town.metric("fma_sms_uplink_total", outcome) > above
    await eventually(more, 30, f"fma_sms_uplink_total{{outcome={outcome}}} above {above}")


async def test_a_reply_with_a_reference_from_a_grantors_phone_asks_binding_to_dispute_that_payment(town):
    grantor = await town.person()
    event = reply(grantor["phone"], "bf 7k2p9qxm")
    before = await town.metric("fma_sms_uplink_total", "dispute_asked")
    await send(town, event)
    [command] = await wait_disputes(town, grantor)
    assert command.key == b"7K2P9QXM"
    assert body(command)["payload"] == {"reference": "7K2P9QXM", "requested_by": grantor["person_id"],
                                        "channel": "sms"}
    assert await town.metric("fma_sms_uplink_total", "dispute_asked") == before + 1
    # The reply redelivered (the provider called back twice): the same command, byte for byte.
    await send(town, event)
    first, again = await wait_disputes(town, grantor, count=2)
    assert again.value == first.value and again.key == first.key
    await handled_by_notify(town, event, count=2)
    assert len({body(r)["event_id"] for r in disputes_by(town, grantor)}) == 1
    assert await town.sink() == []  # a reply understood needs no SMS of notify's: binding's events answer it


async def test_a_reply_from_an_unknown_phone_asks_nothing_and_is_counted(town, notify):
    stranger = f"135{random.randrange(10**8):08d}"
    before = await town.metric("fma_sms_uplink_total", "unknown_phone")
    event = reply(stranger, "BF7K2P9QXM")
    await send(town, event)
    await counted(town, "unknown_phone", before)
    await handled_by_notify(town, event)
    assert not town.bus.watchers[t.BINDING_COMMANDS].matching(
        lambda r: body(r)["event_type"] == "DisputePayment" and stranger in r.value.decode())
    assert await town.sink() == []
    assert stranger not in notify.log_text() and stranger[:3] + "****" + stranger[-4:] in notify.log_text()


@pytest.mark.parametrize("text", ["谁扣的钱？", "BF 123", "bf 7k2p9qxm 不是我", ""])
async def test_a_reply_not_understood_asks_nothing_and_tells_the_person_how_to_reply_once_a_day(town, text):
    grantor = await town.person()
    first = reply(grantor["phone"], text)
    await send(town, first)

    async def helps_sent() -> list[dict]:
        return [s for s in await town.sink() if s["template"] == "sms_reply_help"]
    helps = await eventually(helps_sent, 30, "an sms_reply_help in the sink", interval=0.02)
    await handled_by_notify(town, first)
    assert helps[0]["phone"] == grantor["phone"][:3] + "****" + grantor["phone"][-4:]
    assert "BF" in helps[0]["text"]
    assert disputes_by(town, grantor) == []
    before = await town.metric("fma_sms_uplink_total", "not_understood")
    again = reply(grantor["phone"], "???")
    await send(town, again)  # another one that day: counted, not answered again
    await counted(town, "not_understood", before)
    await handled_by_notify(town, again)
    assert len([s for s in await town.sink() if s["template"] == "sms_reply_help"]) == 1


async def test_an_unsubscribe_is_not_answered(town):
    grantor = await town.person()
    before = await town.metric("fma_sms_uplink_total", "opted_out")
    event = reply(grantor["phone"], "TD")
    await send(town, event)
    await counted(town, "opted_out", before)
    await handled_by_notify(town, event)
    assert await town.sink() == [] and disputes_by(town, grantor) == []


async def test_after_a_phone_change_only_the_new_phone_speaks_for_the_person(town):
    grantor = await town.person()
    old_phone = grantor["phone"]
    moved = await town.person(phone=f"136{random.randrange(10**8):08d}", person_id=grantor["person_id"])
    before = await town.metric("fma_sms_uplink_total", "unknown_phone")
    from_old = reply(old_phone, "BF7K2P9QXM")
    await send(town, from_old)
    await counted(town, "unknown_phone", before)
    await handled_by_notify(town, from_old)
    await send(town, reply(moved["phone"], "BF7K2P9QXM"))
    [command] = await wait_disputes(town, grantor)
    assert json.loads(command.value)["payload"]["reference"] == "7K2P9QXM"
    assert len(disputes_by(town, grantor)) == 1


async def test_a_phone_two_family_members_share_asks_for_each_and_binding_finds_the_payer(town):
    shared_phone = f"133{random.randrange(10**8):08d}"
    father = await town.person(phone=shared_phone)
    mother = await town.person(phone=shared_phone)
    await send(town, reply(shared_phone, "BF 7K2P9QXM"))
    [for_father] = await wait_disputes(town, father)
    [for_mother] = await wait_disputes(town, mother)
    assert body(for_father)["event_id"] != body(for_mother)["event_id"]


@pytest.mark.parametrize("raw", [b"not json", json.dumps({"event_id": "e1", "event_type": "SmsReplyReceived",
                                                          "occurred_at": "2026-11-26T10:00:00+08:00",
                                                          "payload": {"message_id": "m", "phone": 13912345678,
                                                                      "text": "BF7K2P9QXM",
                                                                      "received_at": "2026-11-26T10:00:00+08:00"}
                                                          }).encode()], ids=["not-json", "phone-a-number"])
async def test_an_unreadable_reply_is_dead_lettered_with_its_bytes_and_the_consumer_goes_on(town, raw):
    key = f"bad-{uuid.uuid4().hex[:8]}"
    await town.bus.send(t.SMS_UPLINK, raw, key=key)
    [dead] = await town.bus.watchers[t.dead_letter_topic(t.SMS_UPLINK)].wait_for(
        lambda r: r.key == key.encode(), timeout=30)
    assert dead.value == raw
    grantor = await town.person()
    await send(town, reply(grantor["phone"], "BF7K2P9QXM"))
    await wait_disputes(town, grantor)


async def test_binding_refusing_a_dispute_asked_by_sms_is_told_to_the_grantor_and_other_refusals_are_not(town):
    grantor = await town.person()
    await send(town, reply(grantor["phone"], "BF 7K2P9QXM"))
    [command] = await wait_disputes(town, grantor)
    # Binding's answers, as binding publishes them (I-4): a refusal of someone else's command first.
    words = {"reason_code": "UNKNOWN_REFERENCE", "message_zh": "未查询到该编号对应的共济支付",
             "message_en": "No such payment."}
    other = seal("BindingRejected", {"command_id": str(uuid.uuid4()), **words})
    refused = seal("BindingRejected", {"command_id": body(command)["event_id"], **words})
    for event in (other, refused, refused):  # the refusal redelivered
        await town.bus.send(t.BINDING_EVENTS, event, key="7K2P9QXM")
    first, again = await town.outcomes(refused, count=2)
    assert first == again and first["payload"]["template"] == "dispute_refused_unknown"
    assert first["payload"]["phone"] == grantor["phone"][:3] + "****" + grantor["phone"][-4:]
    [sms] = await town.sink()
    assert "7K2P9QXM" in sms["text"]
    assert town.bus.watchers[t.NOTIFY_DELIVERIES].matching(
        lambda r: payload_of(r)["source_event_id"] == json.loads(other)["event_id"]) == []


async def test_contacts_projected_before_the_phone_index_are_indexed_once_at_start(clean_redis):
    store = DeliveryStore(clean_redis, record_ttl=86_400)
    await store.load_functions()
    phone = f"131{random.randrange(10**8):08d}"
    people = [new_person_id() for _ in range(PHONES_PER_NUMBER + 1)]
    for person_id in people:  # as the projection wrote them before the index existed
        await clean_redis.hset(f"ntf:person:{person_bucket(person_id)}", person_id, encode_contact(phone, "张*明"))
    assert await store.people_by_phone([phone]) == {}
    assert await store.index_phones_once() == len(people)
    assert await store.index_phones_once() == 0  # once
    [found] = (await store.people_by_phone([phone])).values()
    assert len(found) == PHONES_PER_NUMBER and set(found) < set(people)
