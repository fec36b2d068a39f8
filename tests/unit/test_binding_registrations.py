"""Who may change a person in the binding and notify projections (shared/registrations.py,
contract version 3), decided in batch order on what the events before left. No Redis: the
projection's standing is a dict; the broker is a stand-in that keeps the dead letters."""

from __future__ import annotations

import asyncio
import base64
from datetime import date, datetime, timedelta, timezone

from shared.bureau import PERSON_REGISTERED, PERSON_TRANSFERRED
from shared.envelope import seal
from shared.identity import make_id_number
from shared.kafka import Received
from shared.registrations import Standing, person_changes
from shared.signing import PartnerKey, SigningKey

XIAN, BAOJI = SigningKey.generate("bureau:610100:k1"), SigningKey.generate("bureau:610300:k1")
NOW = datetime.now(timezone.utc)
RING = {k.key_id: PartnerKey(k.key_id, "bureau", base64.b64decode(k.public_b64), NOW - timedelta(days=1),
                             NOW + timedelta(days=1), region=region)
        for k, region in ((XIAN, "610100"), (BAOJI, "610300"))}
PERSON = make_id_number("610100", date(1960, 3, 1), 17)


class DeadLetters:
    def __init__(self) -> None:
        self.errors: list[str] = []

    async def publish(self, value: bytes, topic: str, *, headers: dict[str, str], **_: object) -> None:
        assert topic == "bureau.accounts.dlq"
        self.errors.append(headers["dlq-error"])


def registered(region: str, signer: SigningKey | None, **changes) -> Received:
    payload = {"person_id": PERSON, "name": "王某", "region": region, "scheme": "resident", "community": "社区"}
    return signed(seal(PERSON_REGISTERED, payload | changes), signer)


def transferred(to_region: str, signer: SigningKey | None) -> Received:
    return signed(seal(PERSON_TRANSFERRED, {"person_id": PERSON, "to_region": to_region}), signer)


def signed(value: bytes, signer: SigningKey | None) -> Received:
    headers = signer.headers("bureau.accounts", PERSON.encode(), value) if signer else {}
    return Received("bureau.accounts", 0, 0, PERSON.encode(), value, headers)


def changes_of(batch: list[Received], known: dict[str, Standing] | None = None):
    broker = DeadLetters()

    async def standing_of(ids: list[str]) -> dict[str, Standing]:
        return {i: s for i, s in (known or {}).items() if i in ids}
    changes = asyncio.run(person_changes(broker, batch, RING.get, standing_of))  # type: ignore[arg-type]
    return changes, broker.errors


def test_a_move_within_one_batch_is_decided_in_order():
    changes, errors = changes_of([registered("610100", XIAN), transferred("610300", XIAN),
                                  registered("610300", BAOJI, phone="13900000000"), registered("610100", XIAN)])
    assert [p.region for p in changes.registered] == ["610100", "610300"]
    assert changes.transfers == {PERSON: None}  # given, then spent by Baoji's registration
    assert len(errors) == 1 and errors[0].startswith("NOT_SIGNERS: PersonRegistered for region 610100")


def test_another_regions_bureau_neither_registers_nor_transfers_a_person():
    xian_person = {PERSON: Standing("610100")}
    changes, errors = changes_of([registered("610300", BAOJI), registered("610100", BAOJI),
                                  transferred("610300", BAOJI)], xian_person)
    assert changes.registered == [] and changes.transfers == {}
    assert [e.split(":")[0] for e in errors] == ["NOT_SIGNERS"] * 3
    assert PERSON not in " ".join(errors)  # regions and key ids only


def test_a_transfer_granted_earlier_lets_the_new_region_register_and_the_old_one_still_update():
    moving = {PERSON: Standing("610100", "610300")}
    changes, errors = changes_of([registered("610100", XIAN, phone="13900000001")], moving)
    assert len(changes.registered) == 1 and changes.transfers == {} and errors == []
    changes, errors = changes_of([registered("610300", BAOJI)], moving)
    assert len(changes.registered) == 1 and changes.transfers == {PERSON: None} and errors == []


def test_unsigned_or_unknown_signers_change_nothing_and_other_bureau_events_are_not_read_here():
    stranger = SigningKey.generate("bureau:610100:k9")
    credited = signed(seal("AccountCredited", {"person_id": PERSON, "region": "610100", "amount": "1.00",
                                               "bureau_seq": 1}), None)
    changes, errors = changes_of([registered("610100", None), registered("610100", stranger), credited])
    assert changes.registered == []
    assert [e.split(":")[0] for e in errors] == ["UNSIGNED", "UNKNOWN_SIGNER"]  # settlement's own, unread
