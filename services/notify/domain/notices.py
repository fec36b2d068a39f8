"""Which SMS each event calls for, and to whom: pure functions from an event to notices.

Issue 15: every payment SMS carries the payment's short reference (shared/references.py), which
the grantor replies with ("BF7K2P9QXM") to dispute it; the grantor hears of each step of a
binding's pause, resume, limit and dispute. The beneficiary hears of a pause and of a resume too,
in neutral words (never the cause: a dispute is the grantor's business with the bureau), because
a pause changes what the beneficiary pays at the counter."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from shared.envelope import CHINA_TZ
from shared.money import format_yuan, parse_yuan
from shared.references import REFERENCE_PATTERN, payment_reference

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


# The settlement events whose grantor lines call for an SMS.
GRANTOR_LINE_EVENTS = frozenset({"ChargeSettled", "RefundSettled"})


def for_settlement(event_id: str, event_type: str, payload: dict) -> list[Notice]:
    """A grantor hears of every payment from, and refund to, his or her account; lines paid by the
    patient's own account or in cash call for no SMS."""
    if event_type not in GRANTOR_LINE_EVENTS:
        return []
    notices = []
    for line in payload.get("lines", []):
        if line.get("source") != "grantor":
            continue
        values = {"amount": line["amount"], "balance": line["balance_after"]}
        if event_type == "ChargeSettled":
            reference = reference_of(line, payload)
            template = "payment" if reference else "payment_unreferenced"
            if reference:
                values["reference"] = reference
            values["time"] = _local_time(payload.get("charged_at") or payload["settled_at"])
            beneficiary = payload["patient_id"]
        else:
            template, beneficiary = "refund", payload.get("patient_id", "")
        notices.append(Notice(template, line["person_id"], "grantor", values, event_id, event_type,
                              charge_id=payload["charge_id"], name_of={"beneficiary": beneficiary},
                              institution_code=payload.get("institution_code") if template != "refund" else None))
    return notices


_REFERENCE = re.compile(REFERENCE_PATTERN)


def reference_of(line: dict, payload: dict) -> str | None:
    """The reference a payment SMS shows: the line's own (settlement gives it, I-3), else derived
    the same way settlement derives it; None when the institution is not known (nothing to
    derive it from: the SMS then asks the grantor to call instead of reply)."""
    given = line.get("reference")
    if isinstance(given, str) and _REFERENCE.fullmatch(given):
        return given
    institution = payload.get("institution_code")
    return payment_reference(institution, payload["charge_id"], line["person_id"]) if institution else None


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
    if event_type in _BINDING_NEWS:
        return _binding_news(event_type, payload, common, names)
    return []


_BINDING_NEWS = frozenset({"BindingPaused", "BindingResumed", "GrantorLimitSet", "DisputeOpened", "DisputeResolved"})


def _binding_news(event_type: str, payload: dict, common: dict, names: dict) -> list[Notice]:
    """A binding's pause, resume, limit and dispute (issue 15)."""
    grantor, beneficiary = payload["grantor_id"], payload["beneficiary_id"]
    about = {"beneficiary": beneficiary}
    if event_type == "BindingPaused":
        # A pause for a dispute is told to the grantor by DisputeOpened, published with it: one SMS
        # for one reply, not two. The beneficiary is told either way, without the cause.
        told = [] if payload["cause"] == "dispute" else [
            Notice("binding_paused_grantor", grantor, "grantor", {}, name_of=about, **common)]
        return told + [Notice("binding_paused_beneficiary", beneficiary, "beneficiary", {},
                              name_of={"grantor": grantor}, **common)]
    if event_type == "BindingResumed":
        return [Notice("binding_resumed_grantor", grantor, "grantor", {}, name_of=about, **common),
                Notice("binding_resumed_beneficiary", beneficiary, "beneficiary", {}, name_of={"grantor": grantor},
                       **common)]
    if event_type == "GrantorLimitSet":
        limit = payload.get("monthly_limit")
        if limit is None:
            return [Notice("grantor_limit_cleared", grantor, "grantor", {}, name_of=about, **common)]
        return [Notice("grantor_limit_set", grantor, "grantor", {"limit": limit}, name_of=about, **common)]
    charge = dict(charge_id=payload["charge_id"])
    if event_type == "DisputeOpened":
        values = {"amount": payload["amount"], "reference": payload["reference"]}
        return [Notice("dispute_opened", grantor, "grantor", values, name_of=about,
                       institution_code=payload["institution_code"], **charge, **common)]
    # DisputeResolved carries no reference: it is the payment's, derived as the payment SMS's was.
    values = {"amount": payload["amount"],
              "reference": payment_reference(payload["institution_code"], payload["charge_id"], grantor)}
    template = "dispute_upheld" if payload["decision"] == "upheld" else "dispute_dismissed"
    return [Notice(template, grantor, "grantor", values, name_of=about, **charge, **common)]


def reply_help(person_id: str, reply_id: str, received_day: str) -> Notice:
    """How to reply, to a registered person whose SMS reply (provider id `reply_id`) was not
    understood. Its source names the reply, never the person (SmsSent carries it)."""
    return Notice("sms_reply_help", person_id, "grantor", {}, f"sms-reply:{reply_id}", "SmsReplyReceived",
                  day=received_day)


_REFUSED = {"UNKNOWN_REFERENCE": "dispute_refused_unknown", "ALREADY_DISPUTED": "dispute_refused_already"}


def dispute_refused(event_id: str, person_id: str, reference: str, reason_code: str) -> Notice:
    """Binding refused a dispute a grantor's SMS reply asked for: the grantor hears why (no such
    payment of his or hers, already disputed, or, for any other reason, to call 12393)."""
    return Notice(_REFUSED.get(reason_code, "dispute_refused"), person_id, "grantor", {"reference": reference},
                  event_id, "BindingRejected")


OPT_OUT = frozenset({"TD", "T", "N", "退订", "取消", "0000"})


def is_opt_out(text: str) -> bool:
    """An unsubscribe reply (the providers' TD convention): never answered with another SMS."""
    return text.strip().upper() in OPT_OUT


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
