"""A payment or refund that leaves a grantor's balance below zero is told by SMS (issue 21, 3).

The contract never clamps a balance: a quote holds a grantor's money, the bureau then debits the
account for the grantor's own spending at its counter, and settling the quote drives the balance
below zero. That payment is the one most worth disputing, so its SMS (with its BF reference) must
go out, and so must the SMS of a refund that leaves the account still below zero. Through the
real broker and Redis, binding, settlement and notify running as processes, notify's SMS adapter
pointed at a local gateway that records every request."""

from __future__ import annotations

import json

import pytest

from shared import topics as t
from shared.envelope import seal
from tests.partners.notified import NOTIFIED_HOSPITAL as HOSPITAL, NotifiedFamily
from tests.support import body, cached_balances, charge_submitted, command, eventually, fen, payload_of

pytestmark = pytest.mark.integration


class Counter(NotifiedFamily):
    """The HIS's quote and settle, and the bureau's own debit, beside notify's family."""

    async def outcome(self, charge_id: str, event_type: str, refund_id: str | None = None) -> dict:
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge_id and payload_of(r).get("refund_id") == refund_id
            and body(r)["event_type"] in (event_type, "ChargeRejected"), timeout=60)
        assert body(r)["event_type"] == event_type, body(r)
        return body(r)

    async def quote(self, charge: dict) -> dict:
        await self.bus.send(t.HIS_CHARGES, command("ChargeQuoteRequested", charge), key=charge["patient_id"])
        return await self.outcome(charge["charge_id"], "ChargeQuoted")

    async def settle(self, charge: dict, quote_id: str) -> dict:
        await self.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge | {"quote_id": quote_id}),
                            key=charge["patient_id"])
        return await self.outcome(charge["charge_id"], "ChargeSettled")

    async def refund(self, charge: dict, amount: str) -> dict:
        refund = {"charge_id": charge["charge_id"], "institution_code": HOSPITAL, "refund_id": "R1",
                  "amount": amount, "refunded_at": charge["charged_at"]}
        await self.bus.send(t.HIS_CHARGES, command("ChargeRefunded", refund), key=charge["patient_id"])
        return await self.outcome(charge["charge_id"], "RefundSettled", "R1")

    async def debited_locally(self, person: dict, amount: str, bureau_seq: int, expect_fen: int) -> None:
        await self.bus.send(t.BUREAU_ACCOUNTS, seal("AccountDebitedLocally", {
            "person_id": person["person_id"], "region": person["region"], "amount": amount,
            "bureau_seq": bureau_seq}), key=person["person_id"])

        async def landed() -> bool:
            return (await cached_balances(self.redis, [person["person_id"]]))[person["person_id"]] == expect_fen
        await eventually(landed, 30, "the bureau's own debit in settlement's cache")

    async def sms_for(self, outcome: dict, template: str) -> tuple[dict, dict]:
        """The SmsSent notify published for `outcome` with `template`, and the gateway's request."""
        [sent] = await self.deliveries(lambda b: b["payload"].get("source_event_id") == outcome["event_id"]
                                       and b["payload"].get("template") == template)
        assert sent["event_type"] == "SmsSent", sent
        return sent["payload"], sent


@pytest.fixture
async def counter(bus, clean_redis, services):
    counter = Counter(bus, clean_redis)
    await counter.institution()
    return counter


def _new_charge(patient: dict, borne: str) -> dict:
    return charge_submitted(patient, HOSPITAL, "610100", fen(borne), fund_fen=10_000)


async def test_a_quote_settled_below_zero_and_a_refund_still_below_zero_each_send_their_sms(counter, sms_gateway):
    patient = await counter.person(scheme="resident")
    grantor = await counter.person(balance="100.00")
    await counter.bind(grantor, patient)
    charge = _new_charge(patient, "60.00")
    quote = (await counter.quote(charge))["payload"]
    # The grantor spends 80.00 at the bureau's own counter while 60.00 is held: 20.00 left.
    await counter.debited_locally(grantor, "80.00", bureau_seq=1, expect_fen=2_000)

    settled = await counter.settle(charge, quote["quote_id"])
    [line] = [x for x in settled["payload"]["lines"] if x["source"] == "grantor"]
    assert (line["amount"], line["balance_after"]) == ("60.00", "-40.00")   # never clamped
    sms, _ = await counter.sms_for(settled, "payment")
    assert sms["recipient_role"] == "grantor" and sms["charge_id"] == charge["charge_id"]
    [request] = sms_gateway.to(grantor["phone"], "payment")
    params = json.loads(request["TemplateParam"])
    assert (params["amount"], params["balance"]) == ("60.00", "-40.00")
    assert params["reference"] == line["reference"]                        # the BF reply that disputes it

    refunded = await counter.refund(charge, "10.00")
    [back] = [x for x in refunded["payload"]["lines"] if x["source"] == "grantor"]
    assert (back["amount"], back["balance_after"]) == ("10.00", "-30.00")
    await counter.sms_for(refunded, "refund")
    [request] = sms_gateway.to(grantor["phone"], "refund")
    assert json.loads(request["TemplateParam"])["balance"] == "-30.00"
