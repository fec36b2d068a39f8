"""What a settled charge or refund is told as: the result on settlement.results and one posting
per account for its bureau's book, as the bytes that go on the wire.

These run for every charge, so the messages are built as plain dicts in the field order and
with the omissions of the contract's models (`contract.ChargeSettled`, `RefundSettled`,
`Posting`, serialised with `exclude_none`), not as model objects; a unit test holds the two
to the same bytes. Event ids derive from the charge (and refund), so a redelivery republishes
the same bytes.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from shared import envelope, topics
from shared.kafka import Outgoing
from shared.money import format_yuan
from services.settlement import contract as c
from services.settlement.domain import ids
from services.settlement.domain.waterfall import Line


@lru_cache(maxsize=256)  # a batch's outcomes share a handful of settlement times
def _time(at: str) -> datetime:
    return datetime.fromisoformat(at)


def _line(line: Line) -> dict:
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
    return out


def charge_settled(institution_code: str, charge_id: str, patient_id: str, borne: int, charged_at: str,
                   lines: list[Line], at: str) -> bytes:
    payload = {"charge_id": charge_id, "patient_id": patient_id, "individual_borne": format_yuan(borne),
               "lines": [_line(x) for x in lines], "settled_at": at, "institution_code": institution_code,
               "charged_at": charged_at}
    return envelope.seal(c.CHARGE_SETTLED, payload, occurred_at=_time(at),
                         event_id=ids.event_id(c.CHARGE_SETTLED, institution_code, charge_id, None))


def refund_settled(institution_code: str, charge_id: str, refund_id: str, patient_id: str, amount: int,
                   lines: list[Line], at: str) -> bytes:
    payload = {"charge_id": charge_id, "refund_id": refund_id, "institution_code": institution_code,
               "patient_id": patient_id, "amount": format_yuan(amount), "lines": [_line(x) for x in lines],
               "settled_at": at}
    return envelope.seal(c.REFUND_SETTLED, payload, occurred_at=_time(at),
                         event_id=ids.event_id(c.REFUND_SETTLED, institution_code, charge_id, refund_id))


def postings(lines: list[Line], direction: str, institution_code: str, charge_id: str, refund_id: str | None,
             beneficiary_id: str, at: str) -> list[Outgoing]:
    """One posting per account touched, keyed by the account's region, for its bureau's book."""
    out = []
    occurred_at = _time(at)
    for i, line in enumerate(lines):
        if line.source == "cash":
            continue
        if line.region is None or line.person_id is None or line.account_seq is None:
            raise ValueError(f"account line {i} without region, person or account_seq")
        posting_id = ids.posting_id(institution_code, charge_id, refund_id, i)
        payload = {"posting_id": posting_id, "region": line.region, "person_id": line.person_id,
                   "direction": direction, "amount": format_yuan(line.amount), "charge_id": charge_id}
        if refund_id is not None:
            payload["refund_id"] = refund_id
        if line.source == "grantor":
            payload["beneficiary_id"] = beneficiary_id
        payload.update(posted_at=at, institution_code=institution_code, account_seq=line.account_seq)
        value = envelope.seal(c.POSTING, payload, event_id=ids.event_id(c.POSTING, posting_id),
                              occurred_at=occurred_at)
        out.append(Outgoing(topics.BUREAU_POSTINGS, line.region.encode(), value))
    return out
