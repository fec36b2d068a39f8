"""How settlement reads the quote messages of issue 15 (预结算) before any state: the fast path and
the step-by-step reading agree, a quote and its charge share one digest, and the digest of a charge
that names no quote is what it always was (records of settled charges stay valid)."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta

from services.settlement import contract as c
from services.settlement.domain import ids
from services.settlement.storage.accounts import ChargeToSettle
from services.settlement.usecases import Answers, Charges, SettlementService
from shared import envelope
from shared.identity import make_id_number
from shared.kafka import Received

NOW = envelope.now()
PATIENT = make_id_number("610102", date(2010, 1, 1), 1)
CHARGE = {"charge_id": "C-1", "institution_code": "H610100-01", "institution_region": "610100",
          "patient_id": PATIENT, "patient_name": "张小明", "code_holder_id": PATIENT,
          "presented_via": "own_device", "visit_kind": "outpatient", "total": "160.00", "fund_paid": "100.00",
          "individual_borne": "60.00", "charged_at": (NOW - timedelta(minutes=1)).isoformat(timespec="seconds")}


def service() -> Charges:
    return SettlementService(store=None, broker=None, clock=lambda: NOW).charges  # type: ignore[arg-type]


def message(event_type: str, payload: dict) -> Received:
    return Received("his.charges", 0, 0, b"k", envelope.seal(event_type, payload), {})


def admitted(event_type: str, payload: dict, fast: bool = True) -> ChargeToSettle | None:
    s, answers = service(), Answers()
    msg = message(event_type, payload)
    todo = s._admit(msg, NOW, answers) if fast else s._admit_slowly(msg, NOW, answers)
    assert not answers.outcomes and not answers.dead
    return todo


def test_the_digest_of_a_charge_without_a_quote_is_unchanged():
    canonical = json.dumps(c.ChargeSubmitted.model_validate(CHARGE).model_dump(mode="json", exclude={"quote_id"}),
                           sort_keys=True, separators=(",", ":"))
    assert "quote_id" not in canonical
    before = hashlib.sha256(canonical.encode()).hexdigest()[:32]
    assert c.ChargeSubmitted.model_validate(CHARGE).digest() == before
    assert c.ChargeSubmitted.model_validate(CHARGE | {"quote_id": "Q-1"}).digest() == before
    assert c.ChargeQuoteRequested.model_validate(CHARGE).digest() == before


def test_a_quote_request_is_admitted_as_its_charge_with_the_quote_id_derived_from_the_charge():
    for fast in (True, False):
        todo = admitted(c.CHARGE_QUOTE_REQUESTED, CHARGE, fast)
        charge = admitted(c.CHARGE_SUBMITTED, CHARGE, fast)
        assert (todo.op, todo.quote_id) == ("Q", ids.quote_id("H610100-01", "C-1"))
        assert (todo.digest, todo.borne, todo.day, todo.patient_id) == (
            charge.digest, charge.borne, charge.day, charge.patient_id)
        assert (charge.op, charge.quote_id) == ("S", "")


def test_a_charge_naming_its_quote_and_a_cancellation_carry_the_quote_id():
    for fast in (True, False):
        named = admitted(c.CHARGE_SUBMITTED, CHARGE | {"quote_id": "Q-1"}, fast)
        assert (named.op, named.quote_id) == ("S", "Q-1")
        cancel = admitted(c.CHARGE_QUOTE_CANCELLED, {"institution_code": "H610100-01", "charge_id": "C-1",
                                                     "quote_id": "Q-1"}, fast)
        assert (cancel.op, cancel.quote_id, cancel.charge_id, cancel.institution_code) == ("C", "Q-1", "C-1",
                                                                                          "H610100-01")


def test_a_malformed_cancellation_is_refused_invalid_charge():
    s, answers = service(), Answers()
    assert s._admit(message(c.CHARGE_QUOTE_CANCELLED, {"institution_code": "H610100-01", "charge_id": "C-1"}),
                    NOW, answers) is None
    [out] = answers.outcomes
    refused = json.loads(out.value)
    assert refused["event_type"] == "ChargeRejected"
    assert (refused["payload"]["reason_code"], refused["payload"]["charge_id"]) == ("INVALID_CHARGE", "C-1")


def test_the_quote_id_is_one_per_charge():
    assert ids.quote_id("H1", "C-1") == ids.quote_id("H1", "C-1") != ids.quote_id("H2", "C-1")


class _Releases:
    """Stands in for SettlementStore.release_binding: what was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str]] = []

    async def release_binding(self, binding_id: str, beneficiary_id: str, reason: str, at: str) -> int:
        self.asked.append((binding_id, beneficiary_id, reason))
        return 0


async def test_only_a_binding_paused_or_revoked_releases_holds_and_nothing_read_off_binding_events_raises():
    store = _Releases()
    s = SettlementService(store=store, broker=None, clock=lambda: NOW)  # type: ignore[arg-type]
    values = [b"not json", b"[1, 2]", b'{"event_type": ["x"]}', b'{"event_type": "BindingPaused", "payload": 3}',
              b'{"event_type": "BindingPaused", "payload": {"binding_id": 7, "beneficiary_id": "P"}}',
              envelope.seal("BindingCreated", {"binding_id": "B0", "beneficiary_id": PATIENT}),
              envelope.seal("BindingPaused", {"binding_id": "B1", "beneficiary_id": PATIENT, "cause": "grantor"}),
              envelope.seal("BindingRevoked", {"binding_id": "B2", "beneficiary_id": PATIENT})]
    answers = await s.bindings._binding_batch([Received("binding.events", 0, i, b"k", v, {})
                                               for i, v in enumerate(values)])
    assert not answers.outcomes and not answers.dead
    assert store.asked == [("B1", PATIENT, "binding_paused"), ("B2", PATIENT, "binding_revoked")]
