"""The grantor's limit, pause and resume, and disputes (非本人授权): the pure rules of
services.binding.domain.rules and the strict edge of the new commands. No broker, no Redis."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.binding import contract as c
from services.binding.domain.model import Binding, Dispute, DisputeStatus, Payment, Relation, Status
from services.binding.domain.reasons import BindingRefused, Reason
from shared.limits import MAX_MONTHLY_LIMIT_FEN as MAX_MONTHLY_LIMIT
from services.binding.domain.rules import (DecisionRefused, decide_dispute, dispute_id_for,
                                           open_dispute, pause_binding, paying_binding, resume_binding,
                                           set_grantor_limit)
from services.binding.storage.bindings import (Stored, decode_bindings, decode_dispute, decode_payment,
                                               encode_bindings, encode_dispute, encode_payment)
from shared.identity import make_id_number

no_db = settings(database=None, deadline=None)
TODAY = date(2026, 6, 1)
GRANTOR = make_id_number("610100", date(1980, 5, 17), 11)
OTHER = make_id_number("610100", date(1983, 8, 9), 32)
BENEFICIARY = make_id_number("610300", date(1952, 3, 2), 21)
AT = 1_780_000_000


def binding(**changes) -> Binding:
    base = Binding(binding_id="BND-0001", grantor_id=GRANTOR, beneficiary_id=BENEFICIARY, relation=Relation.FATHER,
                   payment_order=1, start_date=TODAY, end_date=TODAY + timedelta(days=365), grantor_region="610100",
                   beneficiary_region="610300", signature_digest="sha256:" + "ab" * 32, channel="app")
    return replace(base, **changes)


def payment(**changes) -> Payment:
    base = Payment(GRANTOR, "7K2P9QXM", BENEFICIARY, "BND-0001", "H610100-1", "C1", 3_000, TODAY, "610100")
    return replace(base, **changes)


def refused(call, *args) -> Reason:
    with pytest.raises(BindingRefused) as error:
        call(*args)
    return error.value.reason


# -- limits -------------------------------------------------------------------------------------

def test_the_grantor_sets_a_monthly_limit_and_lifts_it_again():
    limited = set_grantor_limit(binding(), GRANTOR, 50_000, TODAY)
    assert limited.monthly_limit == 50_000
    assert set_grantor_limit(limited, GRANTOR, None, TODAY).monthly_limit is None


def test_a_zero_limit_is_allowed_and_pays_nothing():
    assert set_grantor_limit(binding(), GRANTOR, 0, TODAY).monthly_limit == 0


def test_a_limit_above_a_million_yuan_is_invalid():
    assert refused(set_grantor_limit, binding(), GRANTOR, MAX_MONTHLY_LIMIT + 1, TODAY) is Reason.INVALID_LIMIT
    assert set_grantor_limit(binding(), GRANTOR, MAX_MONTHLY_LIMIT, TODAY).monthly_limit == MAX_MONTHLY_LIMIT


@pytest.mark.parametrize("call,args", [(set_grantor_limit, (100,)), (pause_binding, ()), (resume_binding, ())])
def test_only_the_grantor_limits_pauses_or_resumes(call, args):
    assert refused(call, binding(paused=True), OTHER, *args, TODAY) is Reason.NOT_GRANTOR


@pytest.mark.parametrize("call,args", [(set_grantor_limit, (100,)), (pause_binding, ()), (resume_binding, ())])
def test_a_revoked_ended_or_unknown_binding_is_not_found(call, args):
    for b in (None, binding(status=Status.REVOKED), binding(end_date=TODAY - timedelta(days=1))):
        assert refused(call, b, GRANTOR, *args, TODAY) is Reason.BINDING_NOT_FOUND


# -- pause and resume -----------------------------------------------------------------------------

def test_pause_then_resume():
    paused = pause_binding(binding(), GRANTOR, TODAY)
    assert paused.paused
    assert not resume_binding(paused, GRANTOR, TODAY).paused


def test_pausing_a_paused_binding_is_refused_and_resuming_a_running_one_too():
    assert refused(pause_binding, binding(paused=True), GRANTOR, TODAY) is Reason.ALREADY_PAUSED
    assert refused(resume_binding, binding(), GRANTOR, TODAY) is Reason.NOT_PAUSED


def test_a_binding_with_an_open_dispute_cannot_be_resumed():
    assert refused(resume_binding, binding(paused=True, open_disputes=1), GRANTOR, TODAY) is Reason.DISPUTE_OPEN


@no_db
@given(limit=st.none() | st.integers(0, MAX_MONTHLY_LIMIT), paused=st.booleans(), disputes=st.integers(0, 3))
def test_a_limit_leaves_pause_and_disputes_as_they_were(limit, paused, disputes):
    before = binding(paused=paused, open_disputes=disputes)
    after = set_grantor_limit(before, GRANTOR, limit, TODAY)
    assert (after.paused, after.open_disputes, after.monthly_limit) == (paused, disputes, limit)


# -- disputes -------------------------------------------------------------------------------------

def test_a_dispute_pauses_the_binding_that_paid_and_counts_as_open():
    dispute, changed = open_dispute(payment(), None, binding(), GRANTOR, "sms", AT)
    assert changed.paused and changed.open_disputes == 1
    assert dispute.paused_binding and dispute.status is DisputeStatus.OPEN
    assert (dispute.dispute_id, dispute.binding_id, dispute.amount, dispute.grantor_region) == (
        dispute_id_for(GRANTOR, "7K2P9QXM"), "BND-0001", 3_000, "610100")


def test_a_dispute_of_a_binding_paused_already_does_not_pause_it_again():
    dispute, changed = open_dispute(payment(), None, binding(paused=True), GRANTOR, "app", AT)
    assert changed.paused and not dispute.paused_binding and changed.open_disputes == 1


def test_a_dispute_of_a_revoked_binding_opens_without_pausing_it():
    dispute, changed = open_dispute(payment(), None, binding(status=Status.REVOKED), GRANTOR, "app", AT)
    assert not changed.paused and not dispute.paused_binding


def test_an_unknown_reference_or_another_persons_payment_is_unknown():
    assert refused(open_dispute, None, None, binding(), GRANTOR, "app", AT) is Reason.UNKNOWN_REFERENCE
    assert refused(open_dispute, payment(), None, binding(), OTHER, "app", AT) is Reason.UNKNOWN_REFERENCE


def test_a_payment_disputed_already_is_refused():
    first, _ = open_dispute(payment(), None, binding(), GRANTOR, "app", AT)
    assert refused(open_dispute, payment(), first, binding(), GRANTOR, "sms", AT) is Reason.ALREADY_DISPUTED


def test_the_dispute_id_depends_on_grantor_and_reference_only():
    by_app, _ = open_dispute(payment(), None, binding(), GRANTOR, "app", AT)
    # Everything else about the asking differs: channel, time, the binding's state, the payment's
    # other fields as read a day later.
    by_sms, _ = open_dispute(payment(charge_id="C2", amount=1, institution_code="H610300-9"), None,
                             binding(paused=True, binding_id="BND-0009"), GRANTOR, "sms", AT + 86_400)
    assert by_app.dispute_id == by_sms.dispute_id
    # Stored and published: the same in every process and release, or a redelivered DisputePayment
    # would find no dispute under the id its first delivery recorded.
    assert by_app.dispute_id == "DSP-6cd84d18497459ac926f4575"
    assert len({by_app.dispute_id, dispute_id_for(OTHER, "7K2P9QXM"), dispute_id_for(GRANTOR, "7K2P9QXN")}) == 3
    assert GRANTOR not in by_app.dispute_id and "7K2P9QXM" not in by_app.dispute_id.upper()


def test_the_paying_binding_is_the_one_the_line_names_else_the_grantors_covering_the_day():
    ours, theirs = binding(), binding(binding_id="BND-0002", grantor_id=OTHER)
    assert paying_binding(payment(binding_id="BND-0002"), [ours, theirs]) is theirs
    assert paying_binding(payment(binding_id=""), [theirs, ours]) is ours
    assert paying_binding(payment(binding_id="", charged_on=TODAY - timedelta(days=1)), [ours]) is None


def opened(**changes) -> Dispute:
    dispute, _ = open_dispute(payment(), None, binding(), GRANTOR, "app", AT)
    return replace(dispute, **changes)


@pytest.mark.parametrize("decision", ["upheld", "dismissed"])
def test_a_decision_closes_the_dispute_and_leaves_the_binding_paused(decision):
    closed, changed = decide_dispute(opened(), "610100", decision, AT + 60, binding(paused=True, open_disputes=1))
    assert (closed.status.value, closed.decided_at) == (decision, AT + 60)
    assert changed.paused and changed.open_disputes == 0
    assert not resume_binding(changed, GRANTOR, TODAY).paused  # the grantor may resume now


def test_the_same_decision_again_changes_nothing_and_another_is_refused():
    done = opened(status=DisputeStatus.UPHELD, decided_at=AT + 60)
    assert decide_dispute(done, "610100", "upheld", AT + 99, binding(paused=True)) is None
    with pytest.raises(DecisionRefused):
        decide_dispute(done, "610100", "dismissed", AT + 99, binding(paused=True))


def test_a_decision_from_another_region_or_of_an_unknown_dispute_is_refused():
    with pytest.raises(DecisionRefused, match="region"):
        decide_dispute(opened(), "610300", "upheld", AT, binding())
    with pytest.raises(DecisionRefused, match="unknown"):
        decide_dispute(None, "610100", "upheld", AT, binding())


@no_db
@given(n=st.integers(1, 5), decisions=st.lists(st.sampled_from(["upheld", "dismissed"]), min_size=5, max_size=5))
def test_a_binding_resumes_only_once_every_dispute_of_it_is_decided(n, decisions):
    b = binding()
    disputes = []
    for i in range(n):
        d, b = open_dispute(payment(reference=f"7K2P9Q{i:02d}"), None, b, GRANTOR, "app", AT)
        disputes.append(d)
    for d, decision in zip(disputes, decisions):
        assert refused(resume_binding, b, GRANTOR, TODAY) is Reason.DISPUTE_OPEN
        _, b = decide_dispute(d, "610100", decision, AT, b)
    assert b.paused and b.open_disputes == 0
    assert not resume_binding(b, GRANTOR, TODAY).paused


# -- storage layouts --------------------------------------------------------------------------------

@no_db
@given(limit=st.none() | st.integers(0, MAX_MONTHLY_LIMIT), paused=st.booleans(), disputes=st.integers(0, 99))
def test_a_binding_line_keeps_limit_pause_and_open_disputes(limit, paused, disputes):
    s = Stored(binding(monthly_limit=limit, paused=paused, open_disputes=disputes), 1, AT)
    assert decode_bindings(BENEFICIARY, encode_bindings([s]).encode()) == [s]


def test_a_line_from_before_limits_reads_as_no_limit_not_paused():
    line = encode_bindings([Stored(binding(), 1, AT)]).rsplit("|", 3)[0]
    [s] = decode_bindings(BENEFICIARY, line.encode())
    assert (s.binding.monthly_limit, s.binding.paused, s.binding.open_disputes) == (None, False, 0)


def test_a_line_grows_by_three_bytes_only_without_limit_or_pause():
    old = encode_bindings([Stored(binding(), 1, AT)]).rsplit("|", 3)[0]
    assert len(encode_bindings([Stored(binding(), 1, AT)])) == len(old) + 3


def test_disputes_and_payments_read_back_as_written():
    d = opened(status=DisputeStatus.DISMISSED, decided_at=AT + 5)
    assert decode_dispute(d.dispute_id, encode_dispute(d).encode()) == d
    assert decode_dispute(opened().dispute_id, encode_dispute(opened()).encode()) == opened()
    p = payment()
    assert decode_payment(GRANTOR, p.reference, encode_payment(p).encode()) == p


# -- the edge ---------------------------------------------------------------------------------------

def reason(model, payload) -> Reason:
    with pytest.raises(ValidationError) as error:
        model.model_validate(payload)
    return c.reason_for(error.value)


def test_a_limit_must_be_given_as_a_yuan_string_or_null():
    base = {"binding_id": "BND-1", "requested_by": GRANTOR}
    assert c.SetGrantorLimit.model_validate(base | {"monthly_limit": "500.00"}).monthly_limit == 50_000
    assert c.SetGrantorLimit.model_validate(base | {"monthly_limit": None}).monthly_limit is None
    assert reason(c.SetGrantorLimit, base | {"monthly_limit": "-1.00"}) is Reason.INVALID_LIMIT
    assert reason(c.SetGrantorLimit, base | {"monthly_limit": "1.005"}) is Reason.INVALID_LIMIT
    assert reason(c.SetGrantorLimit, base | {"monthly_limit": 500}) is Reason.INVALID_LIMIT
    assert reason(c.SetGrantorLimit, base) is Reason.INVALID_COMMAND  # null is said, never assumed


@pytest.mark.parametrize("ref", ["7K2P9QX", "7K2P9QXMM", "7K2P9QXI", "7k2p9qxm", 12345678, "BF7K2P9QXM"])
def test_a_dispute_names_a_reference_of_eight_crockford_characters(ref):
    assert reason(c.DisputePayment, {"reference": ref, "requested_by": GRANTOR, "channel": "app"}) \
        is Reason.INVALID_COMMAND


def test_a_dispute_keyed_in_at_a_window_names_the_clerk():
    form = {"reference": "7K2P9QXM", "requested_by": GRANTOR, "channel": "window"}
    assert reason(c.DisputePayment, form) is Reason.INVALID_COMMAND
    assert c.DisputePayment.model_validate(form | {"clerk_id": "clerk-1"}).clerk_id == "clerk-1"


@pytest.mark.parametrize("change", [{"region": 610100}, {"decision": "maybe"}, {"decided_at": 0},
                                    {"note": "x" * 201}, {"dispute_id": ""}, {"decided_at": "2026-06-01T10:00:00"}])
def test_a_decision_is_read_strictly(change):
    good = {"dispute_id": "DSP-1", "region": "610100", "decision": "upheld", "decided_at": "2026-06-01T10:00:00+08:00"}
    c.DisputeDecided.model_validate(good)
    with pytest.raises(ValidationError):
        c.DisputeDecided.model_validate(good | change)


# -- the reference projection's reading of settlement.results ----------------------------------------

def settled(lines, event_type="ChargeSettled") -> bytes:
    from shared.envelope import seal
    return seal(event_type, {"charge_id": "C1", "patient_id": BENEFICIARY, "individual_borne": "50.00",
                             "lines": lines, "settled_at": "2026-06-01T10:00:01+08:00",
                             "institution_code": "H610100-1", "charged_at": "2026-06-01T01:30:00+08:00"})


def test_each_grantor_line_of_a_charge_settled_is_a_payment_by_its_reference():
    from services.binding.usecases import grantor_payments
    from shared.references import payment_reference
    lines = [{"source": "own", "person_id": BENEFICIARY, "amount": "10.00", "balance_after": "0.00"},
             {"source": "grantor", "person_id": GRANTOR, "region": "610100", "payment_order": 1, "amount": "30.00",
              "balance_after": "0.00", "binding_id": "BND-0001", "reference": "7K2P9QXM"},
             {"source": "grantor", "person_id": OTHER, "region": "610100", "payment_order": 2, "amount": "10.00",
              "balance_after": "5.00"},                          # a line from before lines named binding and reference
             {"source": "grantor", "person_id": OTHER, "region": "610100", "payment_order": 2, "amount": "0.00"},
             {"source": "cash", "amount": "0.00"}]
    [(first, at), (second, _)] = grantor_payments(settled(lines))
    assert first == payment()
    assert (second.grantor_id, second.binding_id, second.amount, second.reference) == (
        OTHER, "", 1_000, payment_reference("H610100-1", "C1", OTHER))
    assert at == 1_780_248_600 and first.charged_on == date(2026, 6, 1)   # the charge's day in China time


def test_other_settlement_results_are_not_payments():
    from services.binding.usecases import grantor_payments
    assert grantor_payments(settled([], "RefundSettled")) == []
    assert grantor_payments(b'{"event_type": "FraudSuspected", "payload": {}}') == []
