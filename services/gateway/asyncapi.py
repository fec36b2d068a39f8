"""The gateway's AsyncAPI document: `python -m services.gateway.asyncapi`.

The gateway owns TokenRevoked and ClerkRevoked on gateway.revocations (contract version 3: put
there by its operator port, read back by every instance into Redis), and two more messages: WindowActionAudited on gateway.audit (which it also reads back,
in its own consumer group, into the audit projection behind GET /v1/audit), and SmsReplyReceived
on sms.uplink (a grantor's SMS reply, from the provider's callback POST /v1/sms/inbound, read by notify). The commands and queries it
sends, and the answers it reads on its reply topic, are the binding and settlement services'
messages: its channels name them by event type, and the platform document (shared/asyncapi.py,
`platform_document`) resolves them to those services' definitions, so each message is defined
once, by the service that answers it."""

from shared import topics
from shared.asyncapi import document, dump, name_messages
from services.gateway import contract as c

# Whose they are: binding.commands and reply answers (binding), settlement.queries and its answers (settlement).
_SENT = {
    topics.BINDING_COMMANDS: ("beneficiary ID number (CreateBinding); binding id (RevokeBinding, ChangePaymentOrder, "
                              "SetGrantorLimit, PauseBinding, ResumeBinding); payment reference (DisputePayment); "
                              "person ID number (QueryBindings, QueryPerson, QueryDisputes); command id "
                              "(QueryCommandOutcome)",
                              [c.CREATE_BINDING, c.REVOKE_BINDING, c.CHANGE_PAYMENT_ORDER, c.SET_GRANTOR_LIMIT,
                               c.PAUSE_BINDING, c.RESUME_BINDING, c.DISPUTE_PAYMENT, c.QUERY_BINDINGS,
                               c.QUERY_COMMAND_OUTCOME, c.QUERY_PERSON, c.QUERY_DISPUTES]),
    topics.SETTLEMENT_QUERIES: ("grantor ID number (QueryConsumption); person ID number (QueryAccount)",
                                [c.QUERY_CONSUMPTION, c.QUERY_ACCOUNT]),
}
_RECEIVED = {"reply_to": ("as the request: reply.gateway.<GATEWAY_INSTANCE>",
                          [*sorted(c.OUTCOME_TYPES), c.BINDINGS_LISTED, c.COMMAND_OUTCOME_UNKNOWN, c.PERSON_FOUND,
                           c.DISPUTES_LISTED, c.CONSUMPTION_LISTED, c.ACCOUNT_FOUND, c.CHARGE_REJECTED])}


def gateway_document() -> dict:
    doc = document("HTTP gateway (家庭共济 API)", "Turns the HTTP API's requests into binding commands and queries "
                   "over Kafka request/reply, and audits every window clerk's action.", {
                       topics.GATEWAY_AUDIT: {"key": "clerk id", "action": "send", "messages": {
                           c.WINDOW_ACTION_AUDITED: c.WindowActionAudited}},
                       topics.SMS_UPLINK: {"key": "the provider's message id", "action": "send", "messages": {
                           c.SMS_REPLY_RECEIVED: c.SmsReplyReceived}},
                       topics.GATEWAY_REVOCATIONS: {"key": "the jti, or the clerk id", "action": "send", "messages": {
                           c.TOKEN_REVOKED: c.TokenRevoked, c.CLERK_REVOKED: c.ClerkRevoked}}})
    # ... and read back into the audit projection (GET /v1/audit).
    doc["operations"][f"receive:{topics.GATEWAY_AUDIT}"] = {
        "action": "receive", "channel": {"$ref": f"#/channels/{topics.GATEWAY_AUDIT}"},
        "messages": [{"$ref": f"#/channels/{topics.GATEWAY_AUDIT}/messages/{c.WINDOW_ACTION_AUDITED}"}]}
    # ... and the revocations, by every instance (one group), into Redis.
    doc["operations"][f"receive:{topics.GATEWAY_REVOCATIONS}"] = {
        "action": "receive", "channel": {"$ref": f"#/channels/{topics.GATEWAY_REVOCATIONS}"},
        "messages": [{"$ref": f"#/channels/{topics.GATEWAY_REVOCATIONS}/messages/{name}"}
                     for name in (c.TOKEN_REVOKED, c.CLERK_REVOKED)]}
    return name_messages(doc, {**{("send", topic): spec for topic, spec in _SENT.items()},
                               **{("receive", topic): spec for topic, spec in _RECEIVED.items()}})


if __name__ == "__main__":
    print(dump(gateway_document()))
