"""The bureau, a hospital's HIS and the window on binding and settlement: charges, refunds,
quotes and binding commands, answered on the platform's topics."""

from __future__ import annotations

import uuid

from shared import envelope, topics as t
from shared.envelope import seal
from tests.support import (binding_form, body, charge_submitted, command, eventually, institution_registered,
                           payload_of, person_registered, wait_registered)

REGION = "610100"
HOSPITAL = "H610100-MIF"


class Family:
    """The bureau, a hospital's HIS and the window, reduced to what these tests need."""

    def __init__(self, bus, redis):
        self.bus, self.redis = bus, redis

    async def hospital(self) -> None:
        await self.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered",
                                                        institution_registered(HOSPITAL, REGION)), key=HOSPITAL)
        async def registered():
            return (await self.redis.hget("stl:inst", HOSPITAL) or b"").split(b"|")[0] == REGION.encode()

        await eventually(registered, 30, f"settlement registered {HOSPITAL} in {REGION}", interval=0.02)

    async def person(self, scheme="employee", balance="0.00") -> dict:
        p = person_registered(REGION, scheme=scheme, balance=balance)
        await self.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
        await wait_registered(self.redis, [p["person_id"]], timeout=30)
        return p

    async def binding_command(self, event_type: str, payload: dict, key: str) -> dict:
        cmd_id = str(uuid.uuid4())
        await self.bus.send(t.BINDING_COMMANDS, command(event_type, payload, cmd_id), key=key)
        [r] = await self.bus.watchers[t.BINDING_EVENTS].wait_for(lambda r: payload_of(r).get("command_id") == cmd_id)
        return body(r)

    async def bind(self, grantor, beneficiary, order, **dates) -> str:
        created = await self.binding_command("CreateBinding", binding_form(grantor, beneficiary, order, **dates),
                                             beneficiary["person_id"])
        assert created["event_type"] == "BindingCreated", created["payload"]
        return created["payload"]["binding_id"]

    async def revoke(self, binding_id, grantor, beneficiary) -> None:
        revoked = await self.binding_command("RevokeBinding", {"binding_id": binding_id,
                                                               "requested_by": grantor["person_id"]},
                                             beneficiary["person_id"])
        assert revoked["event_type"] == "BindingRevoked", revoked["payload"]
        assert revoked["payload"]["binding_id"] == binding_id

    async def charge(self, patient, borne_fen: int) -> tuple[dict, dict]:
        charge = charge_submitted(patient, HOSPITAL, REGION, borne_fen, fund_fen=10_000)
        await self.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=patient["person_id"])
        return charge, await self.result(charge["charge_id"], "ChargeSettled")

    async def refund(self, charge, amount: str, refund_id: str = "R1") -> dict:
        refund = {"charge_id": charge["charge_id"], "institution_code": HOSPITAL, "refund_id": refund_id,
                  "amount": amount, "refunded_at": envelope.now().isoformat(timespec="seconds")}
        await self.bus.send(t.HIS_CHARGES, command("ChargeRefunded", refund), key=charge["patient_id"])
        return await self.result(charge["charge_id"], "RefundSettled", refund_id)

    async def result(self, charge_id, event_type, refund_id=None) -> dict:
        """The outcome of `charge_id` (or of its refund `refund_id`) of `event_type`; fails at
        once on a refusal instead."""
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge_id and payload_of(r).get("refund_id") == refund_id
            and body(r)["event_type"] in (event_type, "ChargeRejected"), timeout=60)
        assert body(r)["event_type"] == event_type, body(r)
        return body(r)

    async def postings(self, charge_id, count) -> list[dict]:
        return [payload_of(r) for r in await self.bus.watchers[t.bureau_postings(REGION)].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge_id, count=count, timeout=60)]

    async def balance(self, person) -> str:
        """The account's balance as settlement answers QueryAccount on a reply topic."""
        query_id = str(uuid.uuid4())
        await self.bus.send("settlement.queries", command("QueryAccount", {"person_id": person["person_id"]}, query_id),
                            key=person["person_id"], headers={"reply_to": "reply.tests", "correlation_id": query_id})
        [reply] = await self.bus.watchers["reply.tests"].wait_for(
            lambda r: payload_of(r).get("command_id") == query_id, timeout=60)
        assert body(reply)["event_type"] == "AccountFound", body(reply)
        return payload_of(reply)["balance"]

    async def payer_index(self, beneficiary) -> set[str]:
        """The binding ids the settlement Function would read for this beneficiary (bnd:pay)."""
        return {k.decode() for k in await self.redis.hkeys(f"bnd:pay:{beneficiary['person_id']}")}


def lines(result: dict) -> list[tuple]:
    return [(x["source"], x.get("person_id"), x.get("payment_order"), x["amount"], x.get("balance_after"))
            for x in result["payload"]["lines"]]


class Counter(Family):
    """The HIS's quote, settle and cancel, and the window's binding commands."""

    async def quote(self, charge: dict, event_id: str | None = None) -> dict:
        await self.bus.send(t.HIS_CHARGES, command("ChargeQuoteRequested", charge, event_id),
                            key=charge["patient_id"])
        return await self.result(charge["charge_id"], "ChargeQuoted")

    async def settle(self, charge: dict, quote_id: str | None = None, expect: str = "ChargeSettled") -> dict:
        payload = charge | ({"quote_id": quote_id} if quote_id else {})
        await self.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", payload), key=charge["patient_id"])
        return await self.result(charge["charge_id"], expect)

    async def cancel(self, charge: dict, quote_id: str) -> dict:
        await self.bus.send(t.HIS_CHARGES, command("ChargeQuoteCancelled", {
            "institution_code": HOSPITAL, "charge_id": charge["charge_id"], "quote_id": quote_id}),
            key=charge["patient_id"])
        return await self.released(charge)

    async def released(self, charge: dict, timeout: float = 60) -> dict:
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge["charge_id"]
            and body(r)["event_type"] == "ChargeQuoteReleased", timeout=timeout)
        return body(r)

    async def rejected(self, charge: dict, reason: str) -> dict:
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge["charge_id"]
            and payload_of(r).get("reason_code") == reason, timeout=60)
        return body(r)

    async def family_of_two(self) -> tuple[dict, dict, dict, tuple[str, str]]:
        """A resident patient, a father (20.00, order 1) and a sister (50.00, order 2), bound."""
        patient = await self.person(scheme="resident")
        father, sister = await self.person(balance="20.00"), await self.person(balance="50.00")
        return patient, father, sister, (await self.bind(father, patient, order=1),
                                         await self.bind(sister, patient, order=2))

    def new_charge(self, patient: dict, borne_fen: int) -> dict:
        return charge_submitted(patient, HOSPITAL, "610100", borne_fen, fund_fen=10_000)

    async def account(self, person) -> dict:
        query_id = str(uuid.uuid4())
        await self.bus.send("settlement.queries", command("QueryAccount", {"person_id": person["person_id"]}, query_id),
                            key=person["person_id"], headers={"reply_to": "reply.tests", "correlation_id": query_id})
        [reply] = await self.bus.watchers["reply.tests"].wait_for(
            lambda r: payload_of(r).get("command_id") == query_id, timeout=60)
        return payload_of(reply)

    async def binding_outcome(self, event_type: str, binding_id: str, grantor: dict, beneficiary: dict,
                              **extra) -> dict:
        done = await self.binding_command(event_type, {"binding_id": binding_id,
                                                       "requested_by": grantor["person_id"], **extra},
                                          beneficiary["person_id"])
        return done
