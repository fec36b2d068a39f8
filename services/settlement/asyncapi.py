"""The settlement service's AsyncAPI document: `python -m services.settlement.asyncapi`."""

import copy

from shared import bureau, institutions, signing, topics
from shared.asyncapi import document, dump, name_messages
from shared.regions import all_regions
from services.settlement import contract as c
from services.settlement import his_contract as h
from services.settlement.handlers.subscribers import SETTLEMENT_QUERIES


# Other services' messages settlement reads, named by event type (shared/asyncapi.py resolves them
# to their owner's definitions): a binding paused or revoked releases its holds (issue 15).
_BY_NAME = {
    ("receive", topics.BINDING_EVENTS): ("beneficiary ID number", ["BindingPaused", "BindingRevoked"]),
}


def settlement_document() -> dict:
    return _signed(name_messages(document("Settlement service (展码结算)", "Settles charges across own, grantors' accounts and cash.", {
        topics.HIS_CHARGES: {"key": "patient ID number", "action": "receive", "messages": {
            c.CHARGE_SUBMITTED: c.ChargeSubmitted, c.CHARGE_REFUNDED: c.ChargeRefunded,
            c.CHARGE_QUOTE_REQUESTED: c.ChargeQuoteRequested, c.CHARGE_QUOTE_CANCELLED: c.ChargeQuoteCancelled}},
        topics.SETTLEMENT_RESULTS: {"key": "charge id (institution code for InstitutionReconciled and "
                                           "InstitutionReconciliationRejected)", "action": "send", "messages": {
            c.CHARGE_SETTLED: c.ChargeSettled, c.CHARGE_REJECTED: c.ChargeRejected,
            c.REFUND_SETTLED: c.RefundSettled, c.FRAUD_SUSPECTED: c.FraudSuspected,
            c.CHARGE_QUOTED: c.ChargeQuoted, c.CHARGE_QUOTE_RELEASED: c.ChargeQuoteReleased,
            h.INSTITUTION_RECONCILED: h.InstitutionReconciled,
            h.INSTITUTION_RECONCILIATION_REJECTED: h.InstitutionReconciliationRejected}},
        POSTINGS: {"key": "region code", "action": "send", "messages": {
            c.POSTING: c.Posting, c.RECONCILIATION_REPORT: c.ReconciliationReport,
            h.ACCOUNT_DRIFT_DETECTED: h.AccountDriftDetected}},
        topics.BUREAU_ACCOUNTS: {"key": "person ID number (region code for daily reports)", "action": "receive",
                                 "messages": {
            bureau.PERSON_REGISTERED: bureau.PersonRegistered, bureau.ACCOUNT_CREDITED: bureau.AccountMovement,
            bureau.ACCOUNT_DEBITED_LOCALLY: bureau.AccountMovement, bureau.BALANCE_SNAPSHOT: bureau.BalanceSnapshot,
            bureau.DAILY_POSTINGS_REPORTED: bureau.DailyPostingsReported,
            bureau.PERSON_TRANSFERRED: bureau.PersonTransferred}},
        topics.HIS_RECONCILIATION: {"key": "institution code", "action": "receive", "messages": {
            h.INSTITUTION_DAILY_TOTALS: h.InstitutionDailyTotals, h.INSTITUTION_DAILY_DETAIL: h.InstitutionDailyDetail}},
        topics.BUREAU_INSTITUTIONS: {"key": "institution code", "action": "receive", "messages": {
            institutions.INSTITUTION_REGISTERED: institutions.InstitutionRegistered}},
        SETTLEMENT_QUERIES: {"key": "grantor ID number (QueryConsumption); person ID number (QueryAccount)",
                             "action": "receive", "messages": {
            c.QUERY_CONSUMPTION: c.QueryConsumption, c.QUERY_ACCOUNT: c.QueryAccount}},
        "reply_to": {"key": "as the request", "action": "send", "messages": {
            c.CONSUMPTION_LISTED: c.ConsumptionListed, c.ACCOUNT_FOUND: c.AccountFound, c.CHARGE_SETTLED: c.ChargeSettled,
            c.CHARGE_REJECTED: c.ChargeRejected, c.REFUND_SETTLED: c.RefundSettled,
            c.CHARGE_QUOTED: c.ChargeQuoted, c.CHARGE_QUOTE_RELEASED: c.ChargeQuoteReleased}},
    }), _BY_NAME))


# Contract version 3: one postings topic per region of the province (a bureau reads its own).
POSTINGS = topics.BUREAU_POSTINGS + ".{region}"
# What partners sign (received) and what the platform signs for them (sent): every message of these
# channels carries the three signature headers. The reply topics' messages are shared with
# settlement.results (internal, unsigned), so that channel says it in its description.
_PARTNERS_SIGN = (topics.HIS_CHARGES, topics.HIS_RECONCILIATION, topics.BUREAU_ACCOUNTS, topics.BUREAU_INSTITUTIONS)
_PLATFORM_SIGNS = (POSTINGS,)
SIGNATURE_HEADERS = {
    "type": "object", "required": list(signing.SIGNATURE_HEADERS),
    "description": "Contract version 3: the sender's Ed25519 signature over `fma-sig-v1\\n` + topic + `\\n` + "
                   "message key + `\\n` + signer + `\\n` + value, exactly as sent (docs/partners.md).",
    "properties": {
        signing.SIGNER: {"type": "string", "pattern": signing.KEY_ID_PATTERN, "description": (
            "The signing key's id: `his:<institution>:<label>` (keys from its InstitutionRegistered), "
            "`bureau:<region>:<label>` (the operator's PARTNER_KEYS_FILE), `settlement:k1` (the platform)."),
            "examples": ["his:H610302001:2026-12", "bureau:610100:k1", "settlement:k1"]},
        signing.ALGORITHM: {"const": signing.ED25519},
        signing.SIGNATURE: {"type": "string", "contentEncoding": "base64",
                            "description": "base64 of the 64-byte Ed25519 signature."}}}


def _signed(doc: dict) -> dict:
    """Signature headers on every message of the partner channels; the region parameter of the
    postings topics; who signs the replies."""
    for topic in (*_PARTNERS_SIGN, *_PLATFORM_SIGNS):
        for ref in doc["channels"][topic]["messages"].values():
            doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["headers"] = copy.deepcopy(SIGNATURE_HEADERS)
    doc["channels"][POSTINGS]["parameters"] = {"region": {
        "enum": [r.code for r in all_regions()],
        "description": "The account's (or the report's) pooling region: each bureau reads its own region's topic."}}
    for topic in _PARTNERS_SIGN:
        doc["channels"][topic]["description"] += (
            " Signed by the partner the message speaks for; a message that is unsigned, signed by an unknown, "
            "retired or not-yet-valid key, badly signed, or signed by another partner than the one it names is "
            "refused UNSIGNED, UNKNOWN_SIGNER, BAD_SIGNATURE or NOT_SIGNERS.")
    doc["channels"]["reply_to"]["description"] += (
        " Every reply is signed by settlement:k1 (headers x-signer, x-signature-alg, x-signature); a HIS is "
        "answered only on a topic beginning reply.<its institution code>.")
    doc["channels"][topics.SETTLEMENT_RESULTS]["description"] += (
        " Internal: partners read their outcomes on their reply topics.")
    return doc


if __name__ == "__main__":
    print(dump(settlement_document()))
