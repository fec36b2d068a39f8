"""The gateway's HTTP API without Kafka, for unit tests: development issuers in memory, and a
stand-in broker that answers each request the way the binding or settlement service would (the
real ones: tests/integration/test_gateway.py). The `api` fixture (tests/unit/conftest.py) serves
the API on it."""

import asyncio
import json

from tooling.devkeys import DevIssuers
from services.gateway.replies import PendingReplies

ISSUERS = DevIssuers.generate()  # in memory: the unit tests' gateway believes these two issuers
ME, FATHER, OTHER = "610102198503150018", "610302195501200031", "610102198001010015"
APP = {"Authorization": f"Bearer {ISSUERS.mint('app', person_id=ME)}"}
WINDOW = {"Authorization": f"Bearer {ISSUERS.mint('window', clerk_id='clerk-1', region='610100')}"}
# A path no test reads: the issuers are handed to http_api in memory.
UNREAD = "/nonexistent/token_issuers.json"
PROBLEM = "application/problem+json"


class Broker:
    """Answers a request as the service would: `answers[event_type](payload)` -> (event_type, payload),
    or None for no answer at all."""

    def __init__(self, pending: PendingReplies) -> None:
        self.pending, self.sent = pending, []
        # Where the binding service's registry says a person is insured (a clerk's scope is
        # decided on it): here, by the first four digits of the ID number; no bindings at all.
        self.answers = {"QueryPerson": lambda p: ("PersonFound", {
            "person_id": p["person_id"], "registered": True, "region": p["person_id"][:4] + "00",
            "scheme": "employee", "name_matches": None}),
            "QueryBindings": lambda p: ("BindingsListed", {"person_id": p["person_id"], "bindings": []})
            if p.get("role") == "beneficiary" else None}

    def commands(self) -> list:
        """What was sent, less the scope questions a window's request asks first."""
        return [m for m in self.sent if m[2]["event_type"] not in ("QueryPerson", "QueryBindings")
                or m[2]["payload"].get("role") is None and m[2]["event_type"] == "QueryBindings"]

    async def publish(self, value, topic, *, key, correlation_id=None, reply_to="", headers=None):
        message = json.loads(value)
        self.sent.append((topic, key, message))
        answer = self.answers.get(message["event_type"], lambda p: None)(message["payload"])
        if reply_to and answer is not None:
            event_type, payload = answer
            reply = json.dumps({"event_id": "r", "event_type": event_type,
                                "payload": {"command_id": message["event_id"], **payload}}).encode()
            asyncio.get_running_loop().call_soon(self.pending.deliver, correlation_id, reply)



def problem(r, status, reason=None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and {"type", "title", "detail"} <= set(body)
    assert body.get("reason_code") == reason
    return body
