"""The notify service's AsyncAPI document: `python -m services.notify.asyncapi`.

Notify owns its outcomes on notify.deliveries. What it reads off settlement.results,
binding.events and sms.uplink, and the DisputePayment it sends on binding.commands (a grantor's
SMS reply, issue 15), are other services' messages: its channels name them by event type, and the
platform document (shared/asyncapi.py, `platform_document`) resolves them to the definitions of
the service that owns each (settlement, binding, the gateway), so each message is defined once."""

from shared import bureau, institutions, topics
from shared.asyncapi import document, dump, name_messages, signature_headers
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
            bureau.PERSON_REGISTERED: bureau.PersonRegistered, bureau.PERSON_TRANSFERRED: bureau.PersonTransferred}},
        topics.BUREAU_INSTITUTIONS: {"key": "institution code", "action": "receive", "messages": {
            institutions.INSTITUTION_REGISTERED: institutions.InstitutionRegistered}},
    })
    return _signed(name_messages(doc, _BY_NAME))


_BUREAU = signature_headers("the bureau of the region the event speaks for (`bureau:<region>:<label>`, the "
                            "operator's PARTNER_KEYS_FILE)", ["bureau:610100:k1"])
_REFUSED = (" A message not believed (UNSIGNED, UNKNOWN_SIGNER, BAD_SIGNATURE, NOT_SIGNERS) is dead-lettered, "
            "`dlq-error` beginning with the code.")


def _signed(doc: dict) -> dict:
    """Contract version 3: what notify believes from whom, and what it signs."""
    for topic in (topics.BUREAU_ACCOUNTS, topics.BUREAU_INSTITUTIONS):
        for ref in doc["channels"][topic]["messages"].values():
            doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["headers"] = _BUREAU
    channels = doc["channels"]
    channels[topics.BUREAU_ACCOUNTS]["description"] += _REFUSED + (
        " A phone or name changes only by the person's own region's bureau (another region's registers him once "
        "his bureau has published PersonTransferred to it).")
    channels[topics.BUREAU_INSTITUTIONS]["description"] += _REFUSED + (
        " An institution is named only by the bureau of its region, and never moves region by a registration.")
    channels[topics.SMS_UPLINK]["description"] += " Believed only signed by the gateway (`gateway:k1`)." + _REFUSED
    channels[topics.BINDING_COMMANDS]["description"] += " DisputePayment signed with notify's own key (`notify:k1`)."
    return doc


if __name__ == "__main__":
    print(dump(notify_document()))
