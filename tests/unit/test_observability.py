"""What the services count, folded per batch, and the HTTP surface every service serves.

The counting logic is pure (`tally` of each service's metrics.py) and tested here with tables;
the Prometheus objects are read back through their registry. The HTTP routes are driven in
process through httpx's ASGI transport and, once, through a real socket (`serve`)."""

from __future__ import annotations

import socket

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from services.binding import contract as bc
from services.binding.metrics import BindingMetrics, labels_of
from services.notify import contract as nc
from services.notify.metrics import NotifyMetrics, sms_outcome
from services.notify.metrics import tally as sms_tally
from services.settlement.domain.lines import Line
from services.settlement.metrics import (QUOTED, REFUNDED, QuoteReleased, Refused, Settled, SettlementMetrics,
                                         is_cross_region, tally)
from shared import envelope
from shared.observability import Observability, Once

OWN = Line("own", 1_000, "610102196001020079", "610100", None, 0, 1)
GRANTOR_XIAN = Line("grantor", 2_000, "610102196001020087", "610100", 1, 500, 1)
GRANTOR_BAOJI = Line("grantor", 3_000, "610302196001020081", "610300", 2, 0, 1)
CASH = Line("cash", 400)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# -- settlement ---------------------------------------------------------------------------------

def test_a_batch_is_tallied_by_outcome_reason_and_source():
    t = tally([Settled("610100", [OWN, GRANTOR_XIAN, CASH]), Settled("610100", [CASH]), REFUNDED,
               Refused("charge", "UNKNOWN_PATIENT", "e1"), Refused("charge", "UNKNOWN_PATIENT", "e2"),
               Refused("refund", "REFUND_EXCEEDS_PAID", "e3")])
    assert t.charges == {("settled", ""): 2, ("refused", "UNKNOWN_PATIENT"): 2}
    assert t.refunds == {("refunded", ""): 1, ("refused", "REFUND_EXCEEDS_PAID"): 1}
    assert t.paid_fen == {"own": 1_000, "grantor": 2_000, "cash": 800}
    assert t.cross_region == 0


@pytest.mark.parametrize("institution,lines,cross", [
    ("610100", [OWN, CASH], False),                       # own account only
    ("610300", [OWN, CASH], False),                       # own account elsewhere: not a grantor's
    ("610100", [GRANTOR_XIAN, CASH], False),              # grantor in the institution's region
    ("610100", [GRANTOR_BAOJI, CASH], True),              # grantor in another region
    ("610100", [GRANTOR_XIAN, GRANTOR_BAOJI, CASH], True),
    ("610100", [CASH], False),
])
def test_a_payment_is_cross_region_when_a_grantor_of_another_region_paid(institution, lines, cross):
    assert is_cross_region(institution, lines) is cross


def test_a_charge_with_two_foreign_grantors_is_one_cross_region_payment():
    assert tally([Settled("610100", [GRANTOR_BAOJI, GRANTOR_BAOJI, CASH])]).cross_region == 1


@settings(database=None, deadline=None, max_examples=100)
@given(st.lists(st.lists(st.builds(Line, st.sampled_from(["own", "grantor", "cash"]), st.integers(0, 10**9)),
                         max_size=4), max_size=20))
def test_amounts_by_source_add_up_to_what_the_lines_paid(charges):
    t = tally([Settled("610100", lines) for lines in charges])
    assert sum(t.paid_fen.values()) == sum(x.amount for lines in charges for x in lines)
    assert t.charges.get(("settled", ""), 0) == len(charges)


def test_settlement_counters_show_a_batch_and_count_a_refusal_once():
    registry = CollectorRegistry()
    metrics = SettlementMetrics(registry)
    refusal = Refused("charge", "IDENTITY_MISMATCH", "rej-1")
    metrics.record([Settled("610100", [OWN, GRANTOR_BAOJI, CASH]), refusal, refusal])
    metrics.record([refusal])  # republished after a redelivery: the same event id
    assert sample(registry, "fma_charges_total", outcome="settled", reason="") == 1
    assert sample(registry, "fma_charges_total", outcome="refused", reason="IDENTITY_MISMATCH") == 1
    assert sample(registry, "fma_paid_fen_total", source="own") == 1_000
    assert sample(registry, "fma_paid_fen_total", source="grantor") == 3_000
    assert sample(registry, "fma_paid_fen_total", source="cash") == 400
    assert sample(registry, "fma_cross_region_payments_total") == 1


def test_quotes_are_counted_when_held_and_each_release_once_whatever_announces_it_again():
    registry = CollectorRegistry()
    metrics = SettlementMetrics(registry)
    expired = QuoteReleased("expired", "Q1")
    metrics.record([QUOTED, QUOTED, expired, QuoteReleased("cancelled", "Q2")])
    metrics.record([expired])  # the outbox announced it again after a crash: the same quote
    assert sample(registry, "fma_quotes_total", outcome="quoted", reason="") == 2
    assert sample(registry, "fma_quotes_total", outcome="released", reason="expired") == 1
    assert sample(registry, "fma_quotes_total", outcome="released", reason="cancelled") == 1
    assert sample(registry, "fma_charges_total", outcome="settled", reason="") == 0  # a quote is not a charge


def test_settlement_counters_are_there_at_zero_before_anything_happened():
    registry = CollectorRegistry()
    SettlementMetrics(registry)
    assert registry.get_sample_value("fma_charges_total", {"outcome": "settled", "reason": ""}) == 0
    assert registry.get_sample_value("fma_paid_fen_total", {"source": "grantor"}) == 0
    assert registry.get_sample_value("fma_cross_region_payments_total") == 0


# -- notify -------------------------------------------------------------------------------------

@pytest.mark.parametrize("outcome,label", [
    ({"type": nc.SMS_SENT}, "sent"),
    ({"type": nc.SMS_FAILED, "reason": nc.OUTCOME_UNKNOWN}, "unknown"),
    ({"type": nc.SMS_FAILED, "reason": nc.NO_PHONE}, "failed"),
    ({"type": nc.SMS_FAILED, "reason": nc.GATEWAY_REFUSED}, "failed"),
    ({"type": nc.SMS_FAILED, "reason": nc.GATEWAY_UNAVAILABLE}, "failed"),
])
def test_an_sms_outcome_is_sent_failed_or_unknown(outcome, label):
    assert sms_outcome(outcome) == label


def test_sms_outcomes_are_counted_per_label():
    outcomes = [{"type": nc.SMS_SENT}] * 3 + [{"type": nc.SMS_FAILED, "reason": nc.NO_PHONE}]
    assert sms_tally(outcomes) == {"sent": 3, "failed": 1}
    registry = CollectorRegistry()
    NotifyMetrics(registry).recorded(outcomes)
    assert sample(registry, "fma_sms_total", outcome="sent") == 3
    assert sample(registry, "fma_sms_total", outcome="failed") == 1
    assert registry.get_sample_value("fma_sms_total", {"outcome": "unknown"}) == 0


# -- binding ------------------------------------------------------------------------------------

def _rejected(command_id: str, reason: str) -> bytes:
    event = {"command_id": command_id, "reason_code": reason, "message_zh": "拒绝", "message_en": "refused"}
    return envelope.seal(bc.BINDING_REJECTED, event, event_id=envelope.outcome_id(command_id, bc.BINDING_REJECTED))


def _revoked(command_id: str) -> bytes:
    return envelope.seal(bc.BINDING_REVOKED, {"command_id": command_id, "binding_id": "BND-1"},
                         event_id=envelope.outcome_id(command_id, bc.BINDING_REVOKED))


def test_a_binding_outcome_is_labelled_by_its_type_and_reason():
    assert labels_of(_rejected("c1", "NOT_GRANTOR"))[1:] == ("rejected", "NOT_GRANTOR")
    assert labels_of(_revoked("c2"))[1:] == ("revoked", "")


def test_binding_commands_are_counted_once_per_outcome_event():
    registry = CollectorRegistry()
    metrics = BindingMetrics(registry)
    refused, revoked = _rejected("c1", "NOT_GRANTOR"), _revoked("c2")
    metrics.answered([refused, revoked, refused, None])  # the same command twice in one batch
    metrics.answered([revoked])                          # answered again from its record
    assert sample(registry, "fma_binding_commands_total", outcome="rejected", reason="NOT_GRANTOR") == 1
    assert sample(registry, "fma_binding_commands_total", outcome="revoked", reason="") == 1
    assert registry.get_sample_value("fma_binding_commands_total", {"outcome": "created", "reason": ""}) == 0


# -- Once -----------------------------------------------------------------------------------------

def test_once_keeps_only_ids_not_seen_and_forgets_the_oldest():
    once = Once(size=3)
    assert once.fresh(["a", "b", "a"]) == ["a", "b"]
    assert once.fresh(["b", "c", "d"]) == ["c", "d"]   # "a" is forgotten now: 4 ids, room for 3
    assert once.fresh(["a", "d"]) == ["a"]


# -- HTTP -----------------------------------------------------------------------------------------

def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


async def test_healthz_answers_alive():
    async with _client(Observability("unit").asgi()) as client:
        answer = await client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "alive", "service": "unit"}


async def test_readyz_is_503_naming_the_check_that_failed():
    async with _client(Observability("unit").asgi()) as client:
        answer = await client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["status"] == "not ready"
    assert answer.json()["checks"]["broker"] == {"ok": False, "detail": "no broker watched"}


async def test_metrics_are_prometheus_text_of_the_registry():
    obs = Observability("unit")
    SettlementMetrics(obs.registry).record([Settled("610100", [OWN, CASH])])
    async with _client(obs.asgi()) as client:
        answer = await client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert 'fma_charges_total{outcome="settled",reason=""} 1.0' in answer.text
    assert 'fma_paid_fen_total{source="own"} 1000.0' in answer.text
    assert "_created" not in answer.text


async def test_routes_mount_in_another_app():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    obs = Observability("gateway")
    app = Starlette(routes=[Route("/v1/ping", lambda request: PlainTextResponse("pong")), *obs.routes()])
    async with _client(app) as client:
        assert (await client.get("/healthz")).json()["service"] == "gateway"
        assert (await client.get("/v1/ping")).text == "pong"


async def test_serve_listens_on_its_port_until_closed():
    obs = Observability("unit")
    port = await obs.serve("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert answer.status_code == 200
    finally:
        await obs.close()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/healthz", timeout=5)


async def test_a_port_in_use_fails_the_start_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"unit: cannot serve HTTP on 127.0.0.1:{port}"):
            await Observability("unit").serve("127.0.0.1", port)
