"""The binding service's AsyncAPI document: `python -m services.binding.asyncapi`."""

from shared import bureau, topics
from shared.asyncapi import document, dump
from services.binding import contract as c


def binding_document() -> dict:
    return document("Binding service (家庭共济绑定)", "Creates, revokes and reorders family mutual-aid bindings.", {
        topics.BINDING_COMMANDS: {"key": "beneficiary ID number", "action": "receive", "messages": {
            c.CREATE_BINDING: c.CreateBinding, c.REVOKE_BINDING: c.RevokeBinding,
            c.CHANGE_PAYMENT_ORDER: c.ChangePaymentOrder, c.QUERY_BINDINGS: c.QueryBindings,
            c.QUERY_COMMAND_OUTCOME: c.QueryCommandOutcome, c.QUERY_PERSON: c.QueryPerson}},
        topics.BINDING_EVENTS: {"key": "beneficiary ID number", "action": "send", "messages": {
            c.BINDING_CREATED: c.BindingCreated, c.BINDING_REVOKED: c.BindingRevoked,
            c.PAYMENT_ORDER_CHANGED: c.PaymentOrderChanged, c.BINDING_REJECTED: c.BindingRejected}},
        # A command's own outcome is answered here too, as on binding.events; QueryCommandOutcome
        # is answered with one of those outcomes or CommandOutcomeUnknown; QueryPerson with PersonFound.
        "reply_to": {"key": "as the request", "action": "send", "messages": {
            c.BINDING_CREATED: c.BindingCreated, c.BINDING_REVOKED: c.BindingRevoked,
            c.PAYMENT_ORDER_CHANGED: c.PaymentOrderChanged, c.BINDING_REJECTED: c.BindingRejected,
            c.BINDINGS_LISTED: c.BindingsListed, c.COMMAND_OUTCOME_UNKNOWN: c.CommandOutcomeUnknown,
            c.PERSON_FOUND: c.PersonFound}},
        topics.BUREAU_ACCOUNTS: {"key": "person ID number", "action": "receive", "messages": {
            bureau.PERSON_REGISTERED: bureau.PersonRegistered}},
    })


if __name__ == "__main__":
    print(dump(binding_document()))
