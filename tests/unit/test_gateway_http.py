"""The HTTP edge of the gateway without Kafka: tokens, strict bodies, sizes, problem+json,
statuses of outcomes, the OpenAPI page. The broker is a stand-in that answers each request the
way the binding or settlement service would (the real ones: tests/integration/test_gateway.py)."""

import pytest

from shared.tokens import TokenIssuer
from tests.gateway_stand_in import APP, FATHER, ISSUERS, ME, OTHER, WINDOW, problem


def form(grantor=ME, **overrides):
    party = {"name": "王小明", "region": "610100", "employer": "单位", "phone": "13812345678"}
    return {"grantor": {"id_number": grantor, **party}, "beneficiary": {"id_number": FATHER, **party},
            "relation": "father", "payment_order": 1, "start_date": "2026-12-01", "end_date": "2027-11-30",
            "notice_accepted": True, "signature_digest": "sha256:" + "ab" * 32} | overrides


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic eDp5"},
                                     {"Authorization": "Bearer nonsense"},
                                     {"Authorization": f"Bearer {ISSUERS.mint('app', person_id=ME, ttl_seconds=-100)}"},
                                     {"Authorization": f"Bearer {TokenIssuer.generate('fma-dev-app', ['app'], kid='app-k1').mint('app', person_id=ME)}"}])
async def test_no_valid_token_is_401_before_the_body_is_read(api, headers):
    r = await api.post("/v1/bindings", content=b"{not json", headers={**headers, "content-type": "application/json"})
    problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert api.broker.sent == []


async def test_a_body_over_64_kib_is_413_whether_declared_or_streamed(api):
    problem(await api.post("/v1/bindings", content=b" " * 65_537, headers=APP), 413)
    async def chunks():
        for chunk in (b"{", b" " * 70_000, b"}"):
            yield chunk
    problem(await api.post("/v1/bindings", content=chunks(), headers={**APP, "content-type": "application/json"}), 413)


@pytest.mark.parametrize("body,reason", [
    (form(payment_order="1"), "INVALID_COMMAND"),
    (form(payment_order=True), "INVALID_COMMAND"),
    (form(start_date=20261201), "INVALID_COMMAND"),
    (form(channel="window"), "INVALID_COMMAND"),
    (form(grantor="610102198503150019"), "INVALID_ID_NUMBER"),
    (form(relation="x" * 33), "INVALID_COMMAND"),
])
async def test_bodies_are_read_strictly_and_errors_never_echo_values(api, body, reason):
    r = await api.post("/v1/bindings", json=body, headers=APP)
    details = problem(r, 422, reason)
    assert details["errors"] and "13812345678" not in r.text and "610102198503150019" not in r.text
    assert api.broker.sent == []


async def test_routes_and_methods_unknown_are_problems_too(api):
    problem(await api.get("/v1/nowhere", headers=APP), 404)
    problem(await api.delete("/v1/bindings", headers=APP), 405)
    problem(await api.get("/nowhere"), 404)


async def test_an_app_token_acting_for_someone_else_is_403_and_nothing_is_sent(api):
    problem(await api.post("/v1/bindings", json=form(grantor=OTHER), headers=APP), 403)
    problem(await api.get(f"/v1/persons/{OTHER}/bindings", headers=APP), 403)
    problem(await api.get(f"/v1/grantors/{OTHER}/consumption", headers=APP), 403)
    problem(await api.post("/v1/bindings/BND-1/revocation", json={"requested_by": OTHER}, headers=APP), 403)
    assert api.broker.sent == []


@pytest.mark.parametrize("reason,status", [("DUPLICATE_BINDING", 409), ("TOO_MANY_GRANTORS", 409),
                                           ("NOT_GRANTOR", 403), ("BINDING_NOT_FOUND", 404),
                                           ("SELF_BINDING", 422), ("PLATFORM_ERROR", 500)])
async def test_a_binding_rejected_is_a_problem_with_its_reason(api, reason, status):
    api.broker.answers["CreateBinding"] = lambda p: ("BindingRejected", {
        "reason_code": reason, "message_zh": "中文", "message_en": "English"})
    body = problem(await api.post("/v1/bindings", json=form(), headers=APP), status, reason)
    assert (body["message_zh"], body["message_en"]) == ("中文", "English") and body["command_id"]


async def test_a_created_binding_is_201_sent_keyed_by_the_beneficiary_with_the_tokens_channel(api):
    api.broker.answers["CreateBinding"] = lambda p: ("BindingCreated", {
        "binding_id": "BND-1", "grantor_id": p["grantor"]["id_number"], "beneficiary_id": FATHER,
        "channel": p["channel"]})
    r = await api.post("/v1/bindings", json=form(), headers=APP)
    assert r.status_code == 201 and r.json()["status"] == "created"
    assert r.json()["outcome"]["grantor_id"] == "610***********0018"  # masked
    [(topic, key, sent)] = api.broker.sent
    assert (topic, key, sent["payload"]["channel"]) == ("binding.commands", FATHER.encode(), "app")
    assert "clerk_id" not in sent["payload"]
    assert r.headers["location"] == f"/v1/commands/{sent['event_id']}"


async def test_no_outcome_within_the_wait_is_202_with_where_to_ask(api):
    r = await api.put("/v1/bindings/BND-1/payment-order", json={"payment_order": 2, "requested_by": ME},
                      headers=WINDOW)
    assert r.status_code == 202
    [(_, key, sent), (audit_topic, clerk, audit)] = api.broker.commands()
    assert key == b"BND-1" and sent["payload"]["clerk_id"] == "clerk-1" and sent["payload"]["requested_by"] == ME
    assert r.json() == {"command_id": sent["event_id"], "status": "pending",
                        "location": f"/v1/commands/{sent['event_id']}"}
    assert r.headers["location"] == r.json()["location"]
    assert (audit_topic, clerk, audit["payload"]["outcome"]) == ("gateway.audit", b"clerk-1", "pending")


async def test_an_app_revocation_is_asked_by_its_own_person(api):
    api.broker.answers["RevokeBinding"] = lambda p: ("BindingRevoked", {
        "binding_id": p["binding_id"], "grantor_id": ME, "beneficiary_id": FATHER, "status": "revoked"})
    r = await api.post("/v1/bindings/BND-1/revocation", json={}, headers=APP)
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert api.broker.sent[0][2]["payload"] == {"binding_id": "BND-1", "requested_by": ME, "channel": "app"}


async def test_a_query_without_an_answer_is_504(api):
    problem(await api.get(f"/v1/persons/{ME}/bindings", headers=APP), 504)


async def test_an_unknown_command_is_404(api):
    api.broker.answers["QueryCommandOutcome"] = lambda p: ("CommandOutcomeUnknown", {})
    problem(await api.get("/v1/commands/2f0d6c1e-8b7a-4c55-9a51-0d2c9b1e7f10", headers=APP), 404)


async def test_every_endpoint_is_documented_with_examples_and_the_bearer_scheme(api):
    spec = (await api.get("/openapi.json")).json()
    operations = {(path, method): op for path, item in spec["paths"].items() for method, op in item.items()}
    assert set(operations) == {("/v1/bindings", "post"), ("/v1/bindings/{binding_id}/revocation", "post"),
                               ("/v1/bindings/{binding_id}/payment-order", "put"),
                               ("/v1/persons/{person_id}/bindings", "get"),
                               ("/v1/grantors/{person_id}/consumption", "get"), ("/v1/commands/{command_id}", "get"),
                               ("/v1/me", "get"), ("/v1/person-lookups", "post"), ("/v1/audit", "get"),
                               ("/v1/bindings/{binding_id}/limit", "put"), ("/v1/bindings/{binding_id}/pause", "post"),
                               ("/v1/bindings/{binding_id}/resume", "post"), ("/v1/disputes", "post"),
                               ("/v1/persons/{person_id}/disputes", "get"), ("/v1/sms/inbound", "post")}
    schemas = spec["components"]["schemas"]
    uplink = operations.pop(("/v1/sms/inbound", "post"))  # the provider's: signed, no bearer token
    assert uplink["security"] == [] and "401" in uplink["responses"]
    assert uplink["requestBody"]["content"]["application/json"]["schema"]["examples"]
    for (path, method), op in operations.items():
        assert op["security"] == [{"HTTPBearer": []}], path
        assert {"401", "403"} <= set(op["responses"]) or path == "/v1/me", path
        success = next(r for s, r in op["responses"].items() if s.startswith("2"))
        name = success["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert schemas[name].get("examples"), (path, name)
        if method in ("post", "put"):
            name = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            assert schemas[name].get("examples"), (path, name)
    assert (await api.get("/docs")).status_code == 200


async def test_requests_are_counted_by_route_template_never_by_raw_path(api):
    await api.get(f"/v1/persons/{OTHER}/bindings", headers=APP)
    labels = {"method": "GET", "route": "/v1/persons/{person_id}/bindings", "status": "403"}
    assert api.registry.get_sample_value("fma_http_requests_total", labels) == 1
    assert OTHER not in str([m for m in api.registry.collect()])
