"""Which SMS each event calls for, and to whom: pure functions from an event to notices."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from shared.envelope import CHINA_TZ
from shared.money import format_yuan, parse_yuan

RELATION_ZH = {"father": "父亲", "mother": "母亲", "spouse": "配偶", "child": "子女"}


@dataclass(frozen=True)
class Notice:
    """One SMS to send: the template, who gets it, the values, and what caused it."""

    template: str
    person_id: str
    role: str  # grantor | beneficiary
    values: dict[str, str]
    source_event_id: str
    source_event_type: str
    charge_id: str | None = None
    binding_id: str | None = None
    name_of: dict[str, str] = field(default_factory=dict)  # placeholder -> person_id whose masked name fills it
    institution_code: str | None = None  # fills {institution} with its registered name, never the HIS's text
    day: str | None = None  # YYYYMMDD (China time) of the source event: where its outcome is recorded


def for_settlement(event_id: str, event_type: str, payload: dict) -> list[Notice]:
    """A grantor hears of every payment from, and refund to, his or her account; lines paid by the
    patient's own account or in cash call for no SMS."""
    if event_type not in ("ChargeSettled", "RefundSettled"):
        return []
    notices = []
    for line in payload.get("lines", []):
        if line.get("source") != "grantor":
            continue
        values = {"amount": line["amount"], "balance": line["balance_after"]}
        if event_type == "ChargeSettled":
            template = "payment"
            values["time"] = _local_time(payload.get("charged_at") or payload["settled_at"])
            beneficiary = payload["patient_id"]
        else:
            template, beneficiary = "refund", payload.get("patient_id", "")
        notices.append(Notice(template, line["person_id"], "grantor", values, event_id, event_type,
                              charge_id=payload["charge_id"], name_of={"beneficiary": beneficiary},
                              institution_code=payload.get("institution_code") if template == "payment" else None))
    return notices


def for_binding(event_id: str, event_type: str, payload: dict) -> list[Notice]:
    grantor, beneficiary = payload.get("grantor_id"), payload.get("beneficiary_id")
    common = dict(source_event_id=event_id, source_event_type=event_type, binding_id=payload.get("binding_id"))
    names = {"grantor": grantor, "beneficiary": beneficiary}
    if event_type == "BindingCreated":
        values = {"relation": RELATION_ZH.get(payload["relation"], "家人"),
                  "order": str(payload["payment_order"]), "start": payload["start_date"], "end": payload["end_date"]}
        return [Notice("binding_created_grantor", grantor, "grantor", values, name_of=names, **common),
                Notice("binding_created_beneficiary", beneficiary, "beneficiary", values, name_of=names, **common)]
    if event_type == "BindingRevoked":
        return [Notice("binding_revoked_grantor", grantor, "grantor", {}, name_of=names, **common),
                Notice("binding_revoked_beneficiary", beneficiary, "beneficiary", {}, name_of=names, **common)]
    if event_type == "PaymentOrderChanged":
        beneficiary = payload["beneficiary_id"]
        notices = []
        for change in payload.get("changes", []):
            values = {"order": str(change["payment_order"]), "previous": str(change["previous_order"])}
            pair = {"grantor": change["grantor_id"], "beneficiary": beneficiary}
            notices.append(Notice("payment_order_changed_grantor", change["grantor_id"], "grantor", values,
                                  source_event_id=event_id, source_event_type=event_type,
                                  binding_id=change["binding_id"], name_of=pair))
        first = next((ch for ch in payload.get("changes", []) if ch["payment_order"] == 1), None)
        if first:
            notices.append(Notice("payment_order_changed_beneficiary", beneficiary, "beneficiary",
                                  {"order": "1"}, name_of={"grantor": first["grantor_id"]}, **common))
        return notices
    return []


def ending_soon(binding_id: str, grantor_id: str, beneficiary_id: str, end_date: str) -> Notice:
    """The daily check's notice; its source id names the binding and the end date, so each
    binding is told once per end date however often the check runs."""
    return Notice("binding_ending_grantor", grantor_id, "grantor", {"end": end_date},
                  f"ending:{binding_id}:{end_date}", "BindingEndingSoon", binding_id=binding_id,
                  name_of={"beneficiary": beneficiary_id}, day=end_date.replace("-", ""))


def _local_time(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def yuan(text: str) -> str:
    """Normalise a yuan string for display ("12.5" -> "12.50")."""
    return format_yuan(parse_yuan(text))
