"""The settlement service's AsyncAPI document: `python -m services.settlement.asyncapi`."""

from shared import bureau, institutions, topics
from shared.asyncapi import document, dump, name_messages
from services.settlement import contract as c
from services.settlement import his_contract as h
from services.settlement.handlers.subscribers import SETTLEMENT_QUERIES


# Other services' messages settlement reads, named by event type (shared/asyncapi.py resolves them
# to their owner's definitions): a binding paused or revoked releases its holds (issue 15).
_BY_NAME = {
    ("receive", topics.BINDING_EVENTS): ("beneficiary ID number", ["BindingPaused", "BindingRevoked"]),
}


def settlement_document() -> dict:
    return name_messages(document("Settlement service (展码结算)", "Settles charges across own, grantors' accounts and cash.", {
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
        topics.BUREAU_POSTINGS: {"key": "region code", "action": "send", "messages": {
            c.POSTING: c.Posting, c.RECONCILIATION_REPORT: c.ReconciliationReport,
            h.ACCOUNT_DRIFT_DETECTED: h.AccountDriftDetected}},
        topics.BUREAU_ACCOUNTS: {"key": "person ID number (region code for daily reports)", "action": "receive",
                                 "messages": {
            bureau.PERSON_REGISTERED: bureau.PersonRegistered, bureau.ACCOUNT_CREDITED: bureau.AccountMovement,
            bureau.ACCOUNT_DEBITED_LOCALLY: bureau.AccountMovement, bureau.BALANCE_SNAPSHOT: bureau.BalanceSnapshot,
            bureau.DAILY_POSTINGS_REPORTED: bureau.DailyPostingsReported}},
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
    }), _BY_NAME)


if __name__ == "__main__":
    print(dump(settlement_document()))
