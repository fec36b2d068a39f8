"""Kafka topic names of the public event contract (contract.md). Partners code against them."""

BUREAU_ACCOUNTS = "bureau.accounts"
BUREAU_INSTITUTIONS = "bureau.institutions"  # contract version 2
BINDING_COMMANDS = "binding.commands"
BINDING_EVENTS = "binding.events"
HIS_CHARGES = "his.charges"
SETTLEMENT_RESULTS = "settlement.results"
BUREAU_POSTINGS = "bureau.postings"  # contract version 3: one topic per region, below
NOTIFY_DELIVERIES = "notify.deliveries"


def dead_letter_topic(topic: str) -> str:
    """Where a consumer of `topic` puts what it cannot answer."""
    return f"{topic}.dlq"


# Added with the HTTP API: the consumption query (answered only on the caller's reply topic; the
# binding queries travel on binding.commands), and the window clerks' audit trail.
SETTLEMENT_QUERIES = "settlement.queries"
GATEWAY_AUDIT = "gateway.audit"
# Contract version 3: revoked bearer tokens and clerks, read by every gateway instance (internal).
GATEWAY_REVOCATIONS = "gateway.revocations"

# Added with holds, limits, disputes and three-way reconciliation (contract.md, issue 15):
# the HIS's daily totals and detail (对总账/对明细账), the bureaus' decisions on disputed payments
# (非本人授权), and the SMS provider's uplink (a grantor's reply), put on Kafka by the gateway.
HIS_RECONCILIATION = "his.reconciliation"
BUREAU_DISPUTES = "bureau.disputes"
SMS_UPLINK = "sms.uplink"


# Contract version 3: each bureau reads its own region's postings and reports alone, so its
# principal can be allowed that one topic. Only regions of the province name a topic.
def bureau_postings(region: str) -> str:
    from shared.regions import is_in_province

    if not is_in_province(region):
        raise ValueError("postings topics exist only for the province's regions")
    return f"{BUREAU_POSTINGS}.{region}"


def all_bureau_postings() -> list[str]:
    from shared.regions import all_regions

    return [bureau_postings(r.code) for r in all_regions()]
