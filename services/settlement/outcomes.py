"""What a settled charge or refund is told as: the result on settlement.results and one posting
per account for its bureau's book, as the bytes that go on the wire.

These run for every charge, so the messages are built as plain dicts in the field order and
with the omissions of the contract's models (`contract.ChargeSettled`, `RefundSettled`,
`Posting`, `PaymentReversed`, serialised with `exclude_none`), not as model objects; a unit test holds the two
to the same bytes. Event ids derive from the charge (and refund), so a redelivery republishes
the same bytes.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from shared import envelope, topics
from shared.kafka import Outgoing
from shared.money import format_yuan
from shared.references import payment_reference
from services.settlement import contract as c
from services.settlement.domain import ids
from services.settlement.domain.lines import Line


_postings_topic = lru_cache(maxsize=64)(topics.bureau_postings)  # one per region: not worked out per posting


@lru_cache(maxsize=256)  # a batch's outcomes share a handful of settlement times
def _time(at: str) -> datetime:
    return datetime.fromisoformat(at)


def _line(line: Line, institution_code: str, charge_id: str) -> dict:
    out: dict = {"source": line.source}
    if line.person_id is not None:
        out["person_id"] = line.person_id
    if line.region is not None:
        out["region"] = line.region
    if line.payment_order is not None:
        out["payment_order"] = line.payment_order
    out["amount"] = format_yuan(line.amount)
    if line.balance_after is not None:
        out["balance_after"] = format_yuan(line.balance_after)
    if line.binding_id is not None:
        out["binding_id"] = line.binding_id
    if line.source == "grantor" and line.person_id is not None:
        out["reference"] = payment_reference(institution_code, charge_id, line.person_id)
    return out


def charge_settled(institution_code: str, charge_id: str, patient_id: str, borne: int, charged_at: str,
                   lines: list[Line], at: str) -> bytes:
    payload = {"charge_id": charge_id, "patient_id": patient_id, "individual_borne": format_yuan(borne),
               "lines": [_line(x, institution_code, charge_id) for x in lines], "settled_at": at,
               "institution_code": institution_code,
               "charged_at": charged_at}
    return envelope.seal(c.CHARGE_SETTLED, payload, occurred_at=_time(at),
                         event_id=ids.event_id(c.CHARGE_SETTLED, institution_code, charge_id, None))


def refund_settled(institution_code: str, charge_id: str, refund_id: str, patient_id: str, amount: int,
                   lines: list[Line], at: str) -> bytes:
    payload = {"charge_id": charge_id, "refund_id": refund_id, "institution_code": institution_code,
               "patient_id": patient_id, "amount": format_yuan(amount),
               "lines": [_line(x, institution_code, charge_id) for x in lines],
               "settled_at": at}
    return envelope.seal(c.REFUND_SETTLED, payload, occurred_at=_time(at),
                         event_id=ids.event_id(c.REFUND_SETTLED, institution_code, charge_id, refund_id))


def payment_reversed(institution_code: str, charge_id: str, dispute_id: str, patient_id: str, grantor_id: str,
                     binding_id: str, paid: int, refunded_before: int, lines: list[Line], at: str) -> bytes:
    """PaymentReversed: one per dispute, so its event id is the dispute's."""
    payload = {"charge_id": charge_id, "institution_code": institution_code, "dispute_id": dispute_id,
               "patient_id": patient_id, "grantor_id": grantor_id, "binding_id": binding_id,
               "line_paid": format_yuan(paid), "refunded_before": format_yuan(refunded_before),
               "amount": format_yuan(paid - refunded_before),
               "lines": [_line(x, institution_code, charge_id) for x in lines], "reversed_at": at}
    return envelope.seal(c.PAYMENT_REVERSED, payload, occurred_at=_time(at),
                         event_id=ids.event_id(c.PAYMENT_REVERSED, institution_code, charge_id, dispute_id))


def charge_quoted(quote_id: str, institution_code: str, charge_id: str, patient_id: str, borne: int,
                  lines: list[Line], quoted_at: str, held_until: str) -> bytes:
    payload = {"quote_id": quote_id, "charge_id": charge_id, "institution_code": institution_code,
               "patient_id": patient_id, "individual_borne": format_yuan(borne),
               "lines": [_line(x, institution_code, charge_id) for x in lines], "quoted_at": quoted_at,
               "held_until": held_until}
    return envelope.seal(c.CHARGE_QUOTED, payload, occurred_at=_time(quoted_at),
                         event_id=ids.event_id(c.CHARGE_QUOTED, quote_id))


def quote_released(quote_id: str, institution_code: str, charge_id: str, reason: str, lines: list[Line],
                   released_at: str) -> Outgoing:
    """ChargeQuoteReleased: a quote is released once, so its event id is the quote's."""
    payload = {"quote_id": quote_id, "charge_id": charge_id, "institution_code": institution_code, "reason": reason,
               "lines": [_line(x, institution_code, charge_id) for x in lines], "released_at": released_at}
    value = envelope.seal(c.CHARGE_QUOTE_RELEASED, payload, occurred_at=_time(released_at),
                          event_id=ids.event_id(c.CHARGE_QUOTE_RELEASED, quote_id))
    return Outgoing(topics.SETTLEMENT_RESULTS, charge_id.encode(), value)


def postings(lines: list[Line], direction: str, institution_code: str, charge_id: str, refund_id: str | None,
             beneficiary_id: str, at: str, dispute_id: str | None = None) -> list[Outgoing]:
    """One posting per account touched, for its bureau's book: on the account's region's own topic
    (contract version 3, `bureau.postings.<region>`), keyed by the region."""
    out = []
    occurred_at = _time(at)
    for i, line in enumerate(lines):
        if line.source == "cash":
            continue
        if line.region is None or line.person_id is None or line.account_seq is None:
            raise ValueError(f"account line {i} without region, person or account_seq")
        posting_id = ids.reversal_prefix(institution_code, charge_id, dispute_id) + str(i) if dispute_id else \
            ids.posting_id(institution_code, charge_id, refund_id, i)
        payload = {"posting_id": posting_id, "region": line.region, "person_id": line.person_id,
                   "direction": direction, "amount": format_yuan(line.amount), "charge_id": charge_id}
        if refund_id is not None:
            payload["refund_id"] = refund_id
        if dispute_id is not None:
            payload["dispute_id"] = dispute_id
        if line.source == "grantor":
            payload["beneficiary_id"] = beneficiary_id
        payload.update(posted_at=at, institution_code=institution_code, account_seq=line.account_seq)
        value = envelope.seal(c.POSTING, payload, event_id=ids.event_id(c.POSTING, posting_id),
                              occurred_at=occurred_at)
        out.append(Outgoing(_postings_topic(line.region), line.region.encode(), value))
    return out
