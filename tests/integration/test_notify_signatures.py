"""Contract version 3 at the notify service, through the real broker and Redis with notify running
as production runs it: a phone changes only by the person's own region's bureau (or, after his
bureau transferred him, by the new region's), an institution's name only by its own region's
bureau, an SMS reply is believed only from the gateway, and the DisputePayment notify asks for is
signed with notify's key.

Only notify runs in this module (the conftest's `notify`, alone), so every dead letter on the
topics it reads is notify's; each refusal is waited for by its dead letter, which is written
before anything of its batch is saved."""

from __future__ import annotations

import json
import uuid

import pytest

from shared import topics as t
from shared.bureau import PERSON_REGISTERED, PERSON_TRANSFERRED
from shared.envelope import now, seal
from shared.signing import KeyRing, SigningKey, verify
from shared.state import person_bucket
from services.notify.storage.deliveries import contact_region, decode_contact
from tests.partners.town import disputes_by, send_reply as send, uplink_reply as reply, wait_disputes
from tests.support import body, dev_keys, eventually, institution_registered

pytestmark = pytest.mark.integration


async def contact(town, person_id: str) -> tuple[str, str, str | None] | None:
    raw = await town.redis.hget(f"ntf:person:{person_bucket(person_id)}", person_id)
    return (*decode_contact(raw), contact_region(raw)) if raw else None


async def dead_letter(town, topic: str, event: bytes) -> str:
    event_id = json.loads(event)["event_id"]
    [dead] = await town.bus.watchers[t.dead_letter_topic(topic)].wait_for(lambda r: body(r)["event_id"] == event_id)
    return dict(dead.headers)["dlq-error"].decode()


async def test_a_phone_changes_only_by_the_persons_own_regions_bureau(town):
    person = await town.person()  # Xi'an's
    assert (await contact(town, person["person_id"]))[::2] == (person["phone"], "610100")
    baoji = dev_keys().bureau("610300")
    for event, signer in ((seal(PERSON_REGISTERED, {**person, "region": "610300", "phone": "13900000001"}), baoji),
                          (seal(PERSON_REGISTERED, {**person, "phone": "13900000002"}), baoji)):
        await town.bus.send(t.BUREAU_ACCOUNTS, event, key=person["person_id"], signer=signer)
        assert (await dead_letter(town, t.BUREAU_ACCOUNTS, event)).startswith("NOT_SIGNERS: PersonRegistered")
    unsigned = seal(PERSON_REGISTERED, {**person, "phone": "13900000003"})
    await town.bus.send(t.BUREAU_ACCOUNTS, unsigned, key=person["person_id"], signer=None)
    assert (await dead_letter(town, t.BUREAU_ACCOUNTS, unsigned)).startswith("UNSIGNED: ")
    assert (await contact(town, person["person_id"]))[::2] == (person["phone"], "610100")
    # his own bureau changes it
    await town.bus.send(t.BUREAU_ACCOUNTS, seal(PERSON_REGISTERED, {**person, "phone": "13900000004"}),
                        key=person["person_id"])
    await eventually(lambda: _has_phone(town, person["person_id"], "13900000004"),
                     30, "phone 13900000004 recorded", interval=0.02)


async def _has_phone(town, person_id: str, phone: str) -> bool:
    return ((await contact(town, person_id)) or ("",))[0] == phone


async def test_a_transferred_person_is_registered_by_his_new_region(town):
    person = await town.person()
    xian, baoji = dev_keys().bureau("610100"), dev_keys().bureau("610300")
    transfer = seal(PERSON_TRANSFERRED, {"person_id": person["person_id"], "to_region": "610300"})
    await town.bus.send(t.BUREAU_ACCOUNTS, transfer, key=person["person_id"], signer=baoji)
    assert (await dead_letter(town, t.BUREAU_ACCOUNTS, transfer)).startswith("NOT_SIGNERS: PersonTransferred")
    await town.bus.send(t.BUREAU_ACCOUNTS, seal(PERSON_TRANSFERRED, {"person_id": person["person_id"],
                                                                     "to_region": "610300"}),
                        key=person["person_id"], signer=xian)
    await town.bus.send(t.BUREAU_ACCOUNTS, seal(PERSON_REGISTERED, {**person, "region": "610300",
                                                                    "phone": "13900000005"}),
                        key=person["person_id"], signer=baoji)
    await eventually(lambda: _has_phone(town, person["person_id"], "13900000005"),
                     30, "phone 13900000005 recorded", interval=0.02)
    assert (await contact(town, person["person_id"]))[2] == "610300"
    assert await town.redis.hget(f"ntf:moving:{person_bucket(person['person_id'])}", person["person_id"]) is None
    # Xi'an let him go: it changes him no more
    back = seal(PERSON_REGISTERED, {**person, "phone": "13900000006"})
    await town.bus.send(t.BUREAU_ACCOUNTS, back, key=person["person_id"], signer=xian)
    assert (await dead_letter(town, t.BUREAU_ACCOUNTS, back)).startswith("NOT_SIGNERS: ")
    assert (await contact(town, person["person_id"]))[0] == "13900000005"


async def test_an_institution_is_named_only_by_its_own_regions_bureau(town):
    code = f"H{uuid.uuid4().hex[:8].upper()}"
    await town.institution(code, "西安市某医院")  # Xi'an's
    baoji = dev_keys().bureau("610300")
    moved = seal("InstitutionRegistered", institution_registered(code, "610300", name="宝鸡假医院"))
    renamed = seal("InstitutionRegistered", institution_registered(code, "610100", name="宝鸡改的名"))
    for event in (moved, renamed):
        await town.bus.send(t.BUREAU_INSTITUTIONS, event, key=code, signer=baoji)
        assert (await dead_letter(town, t.BUREAU_INSTITUTIONS, event)).startswith("NOT_SIGNERS: InstitutionRegistered")
    assert (await town.redis.hget("ntf:inst", code)).decode() == "西安市某医院"
    renamed_at_home = seal("InstitutionRegistered", institution_registered(code, "610100", name="西安市某中心医院"))
    await town.bus.send(t.BUREAU_INSTITUTIONS, renamed_at_home, key=code)
    await eventually(lambda: _named(town, code, "西安市某中心医院"),
                     30, "the name 西安市某中心医院 recorded", interval=0.02)


async def _named(town, code: str, name: str) -> bool:
    return (await town.redis.hget("ntf:inst", code) or b"").decode() == name


@pytest.mark.parametrize("signer, code", [(None, "UNSIGNED"), ("bureau", "NOT_SIGNERS"), ("stranger", "UNKNOWN_SIGNER")])
async def test_an_sms_reply_not_signed_by_the_gateway_asks_nothing(town, signer, code):
    grantor = await town.person()
    key = {None: None, "bureau": dev_keys().bureau("610100"), "stranger": SigningKey.generate("gateway:k2")}[signer]
    refused = reply(grantor["phone"], "BF7K2P9QXM")
    await town.bus.send(t.SMS_UPLINK, refused, key="up", signer=key)
    assert (await dead_letter(town, t.SMS_UPLINK, refused)).startswith(f"{code}: ")
    # the same reply from the gateway (a positive signal on the same partition) asks binding
    believed = reply(grantor["phone"], "BF7K2P9QXM")
    await town.bus.send(t.SMS_UPLINK, believed, key="up")
    await wait_disputes(town, grantor)
    assert len(disputes_by(town, grantor)) == 1  # the refused reply, handled before, asked none


async def test_the_dispute_notify_asks_for_is_signed_with_notifys_own_key(town):
    grantor = await town.person()
    await send(town, reply(grantor["phone"], "bf 7K2P9QXM"))
    [asked] = await wait_disputes(town, grantor)
    headers = {k: v.decode() for k, v in asked.headers}
    ring = KeyRing.load(dev_keys().partner_keys_file)
    assert verify(t.BINDING_COMMANDS, asked.key, asked.value, headers, ring.find, now()).key_id == "notify:k1"


async def test_a_refusal_of_a_command_binding_did_not_believe_is_not_told_to_the_grantor(town):
    # Anyone may send a command under the id of one notify asked (it is derived from the reply); binding
    # refuses it by a signature code, which says nothing of the grantor's dispute.
    grantor = await town.person()
    await send(town, reply(grantor["phone"], "BF 7K2P9QXM"))
    [asked] = await wait_disputes(town, grantor)
    command_id = body(asked)["event_id"]
    forged = seal("BindingRejected", {"command_id": command_id, "reason_code": "UNSIGNED",
                                      "message_zh": "消息未签名", "message_en": "The message carries no signature."})
    decided = seal("BindingRejected", {"command_id": command_id, "reason_code": "UNKNOWN_REFERENCE",
                                       "message_zh": "未查询到", "message_en": "No such payment."})
    for event in (forged, decided):  # one partition, in this order
        await town.bus.send(t.BINDING_EVENTS, event, key="7K2P9QXM")
    [told] = await town.outcomes(decided)
    assert told["payload"]["template"] == "dispute_refused_unknown"
    assert town.bus.watchers[t.NOTIFY_DELIVERIES].matching(
        lambda r: json.loads(r.value)["payload"]["source_event_id"] == json.loads(forged)["event_id"]) == []
