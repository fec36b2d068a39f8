"""The settlement service's AsyncAPI document: `python -m services.settlement.asyncapi`."""

import copy

from shared import bureau, institutions, topics
from shared.asyncapi import document, dump, name_messages, signature_headers
from shared.regions import all_regions
from services.settlement import contract as c
from services.settlement import his_contract as h
from services.settlement.handlers.subscribers import SETTLEMENT_QUERIES


# Other services' messages settlement reads, named by event type (shared/asyncapi.py resolves them
# to their owner's definitions): a binding paused or revoked releases its holds (issue 15); an
# upheld dispute's DisputeResolved gives the grantor line back (PaymentReversed, issue 21).
_BY_NAME = {
    ("receive", topics.BINDING_EVENTS): ("beneficiary ID number", ["BindingPaused", "BindingRevoked",
                                                                   "DisputeResolved"]),
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
            c.PAYMENT_REVERSED: c.PaymentReversed, c.CHARGE_QUOTED: c.ChargeQuoted, c.CHARGE_QUOTE_RELEASED: c.ChargeQuoteReleased,
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
            c.CHARGE_QUOTED: c.ChargeQuoted, c.CHARGE_QUOTE_RELEASED: c.ChargeQuoteReleased,
            h.INSTITUTION_RECONCILED: h.InstitutionReconciled,
            h.INSTITUTION_RECONCILIATION_REJECTED: h.InstitutionReconciliationRejected}},
    }), _BY_NAME))


# Contract version 3: one postings topic per region of the province (a bureau reads its own).
POSTINGS = topics.BUREAU_POSTINGS + ".{region}"


# Contract version 3: who signs the messages of each partner channel (received) and of the postings
# topics (sent). The reply topics' messages are shared with settlement.results (internal, unsigned),
# so that channel says it in its description.
_BUREAU = signature_headers("the bureau of the region the event speaks for (`bureau:<region>:<label>`, the "
                            "operator's PARTNER_KEYS_FILE)", ["bureau:610100:k1"])
_HIS = signature_headers("the institution the message names (`his:<institution code>:<label>`, a key of its "
                         "bureau-signed InstitutionRegistered)", ["his:H610302001:2026-12"])
_SIGNERS = {topics.HIS_CHARGES: _HIS, topics.HIS_RECONCILIATION: _HIS, topics.BUREAU_ACCOUNTS: _BUREAU,
            topics.BUREAU_INSTITUTIONS: _BUREAU,
            POSTINGS: signature_headers("the platform's settlement service (`settlement:k1`, in the operator's "
                                        "PARTNER_KEYS_FILE)", ["settlement:k1"])}
_REFUSED = " A message not believed is refused UNSIGNED, UNKNOWN_SIGNER, BAD_SIGNATURE or NOT_SIGNERS"


def _signed(doc: dict) -> dict:
    """Signature headers on every message of the partner channels; the region parameter of the
    postings topics; where refusals go; who signs the replies."""
    for topic, headers in _SIGNERS.items():
        for ref in doc["channels"][topic]["messages"].values():
            doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["headers"] = copy.deepcopy(headers)
    channels = doc["channels"]
    channels[POSTINGS]["parameters"] = {"region": {
        "enum": [r.code for r in all_regions()],
        "description": "The account's (or the report's) pooling region: each bureau reads its own region's topic."}}
    for topic in (topics.HIS_CHARGES, topics.HIS_RECONCILIATION):
        channels[topic]["description"] += (
            _REFUSED + " (NOT_SIGNERS: it names another institution than its signer's): ChargeRejected (for "
            "reconciliation InstitutionReconciliationRejected) on settlement.results, never recorded (a resend signed "
            "by a key registered since is answered afresh), under an event id no authentic answer has; replied only "
            "for NOT_SIGNERS, on the signer's own reply topics. reply_to must begin reply.<institution code>.")
    channels[topics.BUREAU_ACCOUNTS]["description"] += (
        _REFUSED + " (dead-lettered, `dlq-error` beginning with the code). A PersonRegistered for a person registered "
        "in another region is NOT_SIGNERS unless that region's bureau has published PersonTransferred to the event's "
        "region; PersonTransferred only from the bureau of the person's region now; AccountCredited, "
        "AccountDebitedLocally, BalanceSnapshot and DailyPostingsReported only from the bureau of their region, "
        "which must be the person's.")
    channels[topics.BUREAU_INSTITUTIONS]["description"] += (
        _REFUSED + " (dead-lettered, `dlq-error` beginning with the code). An institution is registered only by the "
        "bureau of its region, never moves region by a registration, and a registration replaces its key list.")
    channels["reply_to"]["description"] += (
        " Every reply is signed with settlement:k1 (headers x-signer, x-signature-alg, x-signature); a HIS is "
        "answered only on a topic beginning reply.<its institution code>.")
    channels[topics.SETTLEMENT_RESULTS]["description"] += (
        " Internal: partners read their outcomes on their reply topics; unsigned.")
    return doc


if __name__ == "__main__":
    print(dump(settlement_document()))
