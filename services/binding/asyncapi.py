"""The binding service's AsyncAPI document: `python -m services.binding.asyncapi`."""

from shared import bureau, topics
from shared.asyncapi import document, dump, name_messages
from services.binding import contract as c

_OUTCOMES = {c.BINDING_CREATED: c.BindingCreated, c.BINDING_REVOKED: c.BindingRevoked,
             c.PAYMENT_ORDER_CHANGED: c.PaymentOrderChanged, c.GRANTOR_LIMIT_SET: c.GrantorLimitSet,
             c.BINDING_PAUSED: c.BindingPaused, c.BINDING_RESUMED: c.BindingResumed,
             c.DISPUTE_OPENED: c.DisputeOpened, c.BINDING_REJECTED: c.BindingRejected}


def binding_document() -> dict:
    doc = document("Binding service (家庭共济绑定)", "Creates, revokes and reorders family mutual-aid bindings; the "
                    "grantor's monthly limits, pause and resume; disputes of payments (非本人授权).", {
        topics.BINDING_COMMANDS: {"key": "beneficiary ID number (CreateBinding), binding id (commands naming "
                                         "one), or the payment reference (DisputePayment)",
                                  "action": "receive", "messages": {
            c.CREATE_BINDING: c.CreateBinding, c.REVOKE_BINDING: c.RevokeBinding,
            c.CHANGE_PAYMENT_ORDER: c.ChangePaymentOrder, c.SET_GRANTOR_LIMIT: c.SetGrantorLimit,
            c.PAUSE_BINDING: c.PauseBinding, c.RESUME_BINDING: c.ResumeBinding,
            c.DISPUTE_PAYMENT: c.DisputePayment, c.QUERY_BINDINGS: c.QueryBindings,
            c.QUERY_COMMAND_OUTCOME: c.QueryCommandOutcome, c.QUERY_PERSON: c.QueryPerson,
            c.QUERY_DISPUTES: c.QueryDisputes}},
        # A DisputePayment's BindingPaused (cause dispute) is published with its DisputeOpened.
        topics.BINDING_EVENTS: {"key": "beneficiary ID number", "action": "send", "messages": {
            **_OUTCOMES, c.DISPUTE_RESOLVED: c.DisputeResolved}},
        # A command's own outcome is answered here too, as on binding.events; QueryCommandOutcome
        # is answered with one of those outcomes or CommandOutcomeUnknown; QueryPerson with
        # PersonFound; QueryBindings with BindingsListed; QueryDisputes with DisputesListed.
        "reply_to": {"key": "as the request", "action": "send", "messages": {
            **_OUTCOMES, c.BINDINGS_LISTED: c.BindingsListed, c.COMMAND_OUTCOME_UNKNOWN: c.CommandOutcomeUnknown,
            c.PERSON_FOUND: c.PersonFound, c.DISPUTES_LISTED: c.DisputesListed}},
        topics.BUREAU_ACCOUNTS: {"key": "person ID number", "action": "receive", "messages": {
            bureau.PERSON_REGISTERED: bureau.PersonRegistered}},
        topics.BUREAU_DISPUTES: {"key": "dispute id", "action": "receive", "messages": {
            c.DISPUTE_DECIDED: c.DisputeDecided}},
    })
    # FraudSuspected of kind grantor_dispute when a dispute opens, and ChargeSettled read for the
    # reference projection: settlement's messages (c.DisputeFraudSuspected is the grantor_dispute
    # case of settlement's FraudSuspected), named here and defined once, by settlement's document.
    return name_messages(doc, {("send", topics.SETTLEMENT_RESULTS): ("charge id", [c.FRAUD_SUSPECTED]),
                               ("receive", topics.SETTLEMENT_RESULTS): ("charge id", ["ChargeSettled"])})


if __name__ == "__main__":
    print(dump(binding_document()))
