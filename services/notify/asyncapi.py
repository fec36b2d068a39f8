"""The notify service's AsyncAPI document: `python -m services.notify.asyncapi`."""

from shared import bureau, institutions, topics
from shared.asyncapi import document, dump
from services.notify import contract as c


def notify_document() -> dict:
    return document("Notify service (短信通知)", "SMS to grantors and beneficiaries; every outcome published.", {
        topics.NOTIFY_DELIVERIES: {"key": "phone, masked", "action": "send", "messages": {
            c.SMS_SENT: c.SmsSent, c.SMS_FAILED: c.SmsFailed}},
        topics.BUREAU_ACCOUNTS: {"key": "person ID number", "action": "receive", "messages": {
            bureau.PERSON_REGISTERED: bureau.PersonRegistered}},
        topics.BUREAU_INSTITUTIONS: {"key": "institution code", "action": "receive", "messages": {
            institutions.INSTITUTION_REGISTERED: institutions.InstitutionRegistered}},
    })


if __name__ == "__main__":
    print(dump(notify_document()))
