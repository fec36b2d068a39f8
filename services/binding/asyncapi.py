"""The binding service's AsyncAPI document: `python -m services.binding.asyncapi`."""

from shared import bureau, topics
from shared.asyncapi import document, dump, name_messages, signature_headers
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
            bureau.PERSON_REGISTERED: bureau.PersonRegistered, bureau.PERSON_TRANSFERRED: bureau.PersonTransferred}},
        topics.BUREAU_DISPUTES: {"key": "dispute id", "action": "receive", "messages": {
            c.DISPUTE_DECIDED: c.DisputeDecided}},
    })
    # FraudSuspected of kind grantor_dispute when a dispute opens, and ChargeSettled read for the
    # reference projection: settlement's messages (c.DisputeFraudSuspected is the grantor_dispute
    # case of settlement's FraudSuspected), named here and defined once, by settlement's document.
    return _signed(name_messages(doc, {("send", topics.SETTLEMENT_RESULTS): ("charge id", [c.FRAUD_SUSPECTED]),
                                       ("receive", topics.SETTLEMENT_RESULTS): ("charge id", ["ChargeSettled",
                                                                                              "RefundSettled"])}))


# Contract version 3: who signs what binding reads. Its outcomes on binding.events are internal
# (unsigned); the same outcomes on a reply topic are signed with binding:k1 (said by the channel,
# as the messages are shared).
_SIGNERS = {
    topics.BINDING_COMMANDS: signature_headers(
        "the gateway's (`gateway:k1`: every command and query, requested_by, channel and clerk_id being its "
        "word), or notify's (`notify:k1`: DisputePayment for a grantor's SMS reply, and nothing else)",
        ["gateway:k1", "notify:k1"]),
    topics.BUREAU_ACCOUNTS: signature_headers(
        "the bureau of the region the event speaks for (`bureau:<region>:<label>`, the operator's PARTNER_KEYS_FILE)",
        ["bureau:610100:k1"]),
    topics.BUREAU_DISPUTES: signature_headers(
        "the bureau of the decision's region, which must be the grantor's (`bureau:<region>:<label>`)",
        ["bureau:610100:k1"]),
}
_REFUSED = " A message not believed is refused UNSIGNED, UNKNOWN_SIGNER, BAD_SIGNATURE or NOT_SIGNERS"


def _signed(doc: dict) -> dict:
    for topic, headers in _SIGNERS.items():
        for ref in doc["channels"][topic]["messages"].values():
            doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["headers"] = headers
    channels = doc["channels"]
    channels[topics.BINDING_COMMANDS]["description"] += (
        _REFUSED + ": BindingRejected on binding.events under the event id of the command id and "
        "`BindingRejected/<code>` (never the id its authentic outcome has), never recorded (a resend signed by the "
        "gateway is decided afresh), replied on reply_to only for NOT_SIGNERS of a verified platform key.")
    channels[topics.BUREAU_ACCOUNTS]["description"] += (
        _REFUSED + " (dead-lettered, `dlq-error` beginning with the code). A PersonRegistered for a person "
        "registered in another region is NOT_SIGNERS unless that region's bureau has published PersonTransferred "
        "to the event's region; PersonTransferred only from the bureau of the person's region now.")
    channels[topics.BUREAU_DISPUTES]["description"] += _REFUSED + " (dead-lettered, `dlq-error` beginning with the code)."
    channels["reply_to"]["description"] += (
        " Every reply is signed with binding:k1 (headers x-signer, x-signature-alg, x-signature).")
    channels[topics.BINDING_EVENTS]["description"] += " Internal: the gateway and notify read it; unsigned."
    return doc


if __name__ == "__main__":
    print(dump(binding_document()))
