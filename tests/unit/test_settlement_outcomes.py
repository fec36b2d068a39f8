"""The outcomes settlement builds without model objects are, byte for byte, the contract's
models serialised: ChargeSettled, RefundSettled and Posting. And a derived event id is uuid5."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.settlement import contract as c
from services.settlement import outcomes
from services.settlement.domain import ids
from services.settlement.domain.lines import Line
from shared import envelope
from shared.money import Fen
from shared.references import payment_reference

AT = "2026-06-01T10:00:00+08:00"
fen = st.integers(0, 10**12)
lines = st.lists(st.one_of(
    st.builds(Line, st.just("own"), fen, st.just("610102196001020079"), st.just("610100"), st.none(), fen,
              st.integers(1, 10**6)),
    st.builds(Line, st.just("grantor"), fen, st.just("610102196001020087"), st.just("610300"),
              st.sampled_from([1, 2]), fen, st.integers(1, 10**6), st.sampled_from([None, "B-1"])),
    st.builds(Line, st.just("cash"), fen)), max_size=4)


def _settled_line(line: Line, charge_id: str = "C-1") -> c.SettledLine:
    """Grantor lines carry the binding that paid and the payment's reference (issue 15, I-3)."""
    return c.SettledLine(source=line.source, person_id=line.person_id, region=line.region,
                         payment_order=line.payment_order, amount=Fen(line.amount),
                         balance_after=None if line.balance_after is None else Fen(line.balance_after),
                         binding_id=line.binding_id,
                         reference=payment_reference("H1", charge_id, line.person_id)
                         if line.source == "grantor" else None)


@settings(database=None, deadline=None, max_examples=200)
@given(lines, fen, st.sampled_from(["C-1", "ç.收-9"]))
def test_a_settled_charge_is_the_models_bytes(account_lines, borne, charge_id):
    model = c.ChargeSettled(charge_id=charge_id, patient_id="610102196001020079", individual_borne=Fen(borne),
                            lines=[_settled_line(x, charge_id) for x in account_lines], settled_at=AT,
                            institution_code="H1", charged_at="2026-06-01T09:59:00+08:00")
    expected = envelope.seal(c.CHARGE_SETTLED, model, occurred_at=datetime.fromisoformat(AT),
                             event_id=str(uuid.uuid5(ids._NAMESPACE, json.dumps(
                                 [c.CHARGE_SETTLED, "H1", charge_id, None], ensure_ascii=False,
                                 separators=(",", ":")))))
    assert outcomes.charge_settled("H1", charge_id, "610102196001020079", borne, "2026-06-01T09:59:00+08:00",
                                   account_lines, AT) == expected


@settings(database=None, deadline=None, max_examples=200)
@given(lines, fen, st.sampled_from([None, "R-1"]))
def test_a_settled_refund_and_its_postings_are_the_models_bytes(account_lines, amount, refund_id):
    direction = "debit" if refund_id is None else "credit"
    built = outcomes.postings(account_lines, direction, "H1", "C-1", refund_id, "610102196001020079", AT)
    expected = []
    for i, line in enumerate(account_lines):
        if line.source == "cash":
            continue
        posting_id = ids.posting_id("H1", "C-1", refund_id, i)
        posting = c.Posting(posting_id=posting_id, region=line.region, person_id=line.person_id,
                            direction=direction, amount=Fen(line.amount), charge_id="C-1", refund_id=refund_id,
                            posted_at=AT, institution_code="H1", account_seq=line.account_seq,
                            beneficiary_id="610102196001020079" if line.source == "grantor" else None)
        expected.append(envelope.seal(c.POSTING, posting, event_id=ids.event_id(c.POSTING, posting_id),
                                      occurred_at=datetime.fromisoformat(AT)))
    assert [p.value for p in built] == expected
    if refund_id:
        model = c.RefundSettled(charge_id="C-1", refund_id=refund_id, institution_code="H1",
                                patient_id="610102196001020079", amount=Fen(amount),
                                lines=[_settled_line(x) for x in account_lines], settled_at=AT)
        assert outcomes.refund_settled("H1", "C-1", refund_id, "610102196001020079", amount, account_lines,
                                       AT) == envelope.seal(
            c.REFUND_SETTLED, model, occurred_at=datetime.fromisoformat(AT),
            event_id=ids.event_id(c.REFUND_SETTLED, "H1", "C-1", refund_id))


@settings(database=None, deadline=None, max_examples=500)
@given(st.lists(st.one_of(st.none(), st.integers(), st.text()), max_size=5))
def test_an_event_id_is_uuid5_of_its_parts(parts):
    name = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return  # a lone surrogate: never an id part (ids are bounded to ASCII alphabets)
    assert ids.event_id(*parts) == str(uuid.uuid5(ids._NAMESPACE, name))
