"""The notify service's AsyncAPI document: `python -m services.notify.asyncapi`.

Notify owns its outcomes on notify.deliveries. What it reads off settlement.results,
binding.events and sms.uplink, and the DisputePayment it sends on binding.commands (a grantor's
SMS reply, issue 15), are other services' messages: its channels name them by event type, and the
platform document (shared/asyncapi.py, `platform_document`) resolves them to the definitions of
the service that owns each (settlement, binding, the gateway), so each message is defined once."""

from shared import bureau, institutions, topics
from shared.asyncapi import document, dump, name_messages
from services.notify import contract as c

# Whose they are: settlement.results (settlement), binding.events and binding.commands (binding),
# sms.uplink (the gateway, from the SMS provider's callback).
_BY_NAME = {
    ("receive", topics.SETTLEMENT_RESULTS): ("charge id", sorted(c.SETTLEMENT_TYPES)),
    ("receive", topics.BINDING_EVENTS): ("beneficiary ID number", sorted(c.BINDING_TYPES)),
    ("receive", topics.SMS_UPLINK): ("the provider's message id", [c.SMS_REPLY_RECEIVED]),
    ("send", topics.BINDING_COMMANDS): ("payment reference (DisputePayment)", [c.DISPUTE_PAYMENT]),
}


def notify_document() -> dict:
    doc = document("Notify service (短信通知)", "SMS to grantors and beneficiaries; every outcome published. A "
                   "grantor's SMS reply with a payment's reference (BF7K2P9QXM) becomes DisputePayment.", {
        topics.NOTIFY_DELIVERIES: {"key": "phone, masked", "action": "send", "messages": {
            c.SMS_SENT: c.SmsSent, c.SMS_FAILED: c.SmsFailed}},
        topics.BUREAU_ACCOUNTS: {"key": "person ID number", "action": "receive", "messages": {
            bureau.PERSON_REGISTERED: bureau.PersonRegistered}},
        topics.BUREAU_INSTITUTIONS: {"key": "institution code", "action": "receive", "messages": {
            institutions.INSTITUTION_REGISTERED: institutions.InstitutionRegistered}},
    })
    return name_messages(doc, _BY_NAME)


if __name__ == "__main__":
    print(dump(notify_document()))
