"""The HTTP API as the app and a service window use it: the gateway, binding and settlement
services as processes against the real broker and Redis, driven over HTTP with httpx. Tokens
come from the two development issuers (tooling.devkeys.DevIssuers) the gateways are told to believe."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest

from shared import topics as t
from shared.envelope import seal
from shared.identity import mask_id_number
from shared.tokens import TokenIssuer
from tests.http_api import (HOSPITAL, HOSPITAL_REGION, ISSUERS, WINDOW, Family, app_token, auth, gateway_process,
                            is_problem)
from tests.support import body, china_today, command, eventually, institution_registered, payload_of

pytestmark = pytest.mark.integration

@pytest.fixture(scope="module")
def platform(infra, bus, services, tmp_path_factory):
    """The session's platform, one gateway as deployed and one that never waits for an outcome;
    every gateway on an HTTP port of its own."""
    log_dir = tmp_path_factory.mktemp("gateway")
    gateway, url = gateway_process(infra, log_dir)
    impatient, impatient_url = gateway_process(infra, log_dir, GATEWAY_COMMAND_TIMEOUT_MS="1")
    try:
        for process in (gateway, impatient):
            process.start()
        yield {"url": url, "impatient_url": impatient_url, "gateway": gateway}
    finally:
        for process in (impatient, gateway):
            process.stop()


@pytest.fixture
async def family(platform, bus, clean_redis):
    async with httpx.AsyncClient(base_url=platform["url"], timeout=30) as http, \
            httpx.AsyncClient(base_url=platform["impatient_url"], timeout=30) as impatient:
        yield Family(bus, clean_redis, http, impatient)


async def test_app_grantor_binds_a_parent_and_both_see_the_binding_in_their_role(family):
    son, father = await family.person(), await family.person(region="610300", scheme="resident")
    r = await family.bind(app_token(son), son, father)
    assert r.status_code == 201, r.json()
    created = r.json()
    assert created["status"] == "created" and created["event_type"] == "BindingCreated"
    assert created["outcome"]["grantor_id"] == mask_id_number(son["person_id"])
    assert created["outcome"]["channel"] == "app"
    assert r.headers["location"] == f"/v1/commands/{created['command_id']}"

    mine = await family.http.get(f"/v1/persons/{son['person_id']}/bindings", headers=auth(app_token(son)))
    assert mine.status_code == 200
    [listed] = mine.json()["bindings"]
    assert (listed["role"], listed["role_zh"], listed["binding_id"]) == (
        "grantor", "授权者", created["outcome"]["binding_id"])
    assert listed["counterpart_id"] == mask_id_number(father["person_id"])
    theirs = await family.http.get(f"/v1/persons/{father['person_id']}/bindings", headers=auth(WINDOW))
    assert [(b["role"], b["role_zh"]) for b in theirs.json()["bindings"]] == [("beneficiary", "使用者")]
    only = await family.http.get(f"/v1/persons/{son['person_id']}/bindings?role=beneficiary",
                                 headers=auth(app_token(son)))
    assert only.json()["bindings"] == []


async def test_a_window_clerk_acts_for_a_grantor_of_the_region_and_every_action_is_audited(family):
    daughter, mother = await family.person(region="610300"), await family.person()
    r = await family.bind(WINDOW, daughter, mother, relation="mother")
    assert r.status_code == 201, r.json()
    created = r.json()
    assert created["outcome"]["channel"] == "window"
    [sent] = await family.bus.watchers[t.BINDING_COMMANDS].wait_for(
        lambda m: created["command_id"].encode() in m.value and body(m)["event_id"] == created["command_id"])
    assert payload_of(sent)["clerk_id"] == "clerk-007" and payload_of(sent)["channel"] == "window"
    assert sent.key == mother["person_id"].encode()
    audit = await family.audited(created["command_id"])
    assert audit["event_type"] == "WindowActionAudited"
    assert {k: audit["payload"][k] for k in ("clerk_id", "region", "action", "subject_id", "outcome")} == {
        "clerk_id": "clerk-007", "region": "610300", "action": "create_binding",
        "subject_id": mask_id_number(daughter["person_id"]), "outcome": "created"}

    binding_id = created["outcome"]["binding_id"]
    neighbour = await family.person(region="610300")  # of the clerk's region, but not the grantor
    refused = await family.http.post(f"/v1/bindings/{binding_id}/revocation",
                                     json={"requested_by": neighbour["person_id"]}, headers=auth(WINDOW))
    assert is_problem(refused, 403, "NOT_GRANTOR")
    audit = await family.audited(refused.json()["command_id"])
    assert (audit["payload"]["outcome"], audit["payload"]["reason_code"]) == ("rejected", "NOT_GRANTOR")
    assert is_problem(await family.http.post(f"/v1/bindings/{binding_id}/revocation", json={}, headers=auth(WINDOW)),
                      422, "INVALID_COMMAND")
    revoked = await family.http.post(f"/v1/bindings/{binding_id}/revocation",
                                     json={"requested_by": daughter["person_id"]}, headers=auth(WINDOW))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert (await family.audited(revoked.json()["command_id"]))["payload"]["action"] == "revoke_binding"


async def test_requests_without_a_valid_token_are_401(family):
    someone = await family.person()
    expired = ISSUERS.mint("app", person_id=someone["person_id"], ttl_seconds=-60)
    # The app issuer's name and key id, but a key the gateway was never given.
    foreign = TokenIssuer.generate(ISSUERS.app.iss, ["app"], kid=ISSUERS.app.kid).mint(
        "app", person_id=someone["person_id"])
    requests = [("GET", f"/v1/persons/{someone['person_id']}/bindings", None),
                ("GET", f"/v1/grantors/{someone['person_id']}/consumption", None),
                ("GET", f"/v1/commands/{uuid.uuid4()}", None),
                ("POST", "/v1/bindings", family.form(someone, someone)),
                ("POST", "/v1/bindings/BND-x/revocation", {}),
                ("PUT", "/v1/bindings/BND-x/payment-order", {"payment_order": 1})]
    for method, path, json in requests:
        for headers in ({}, auth("not-a-jwt"), auth(expired), auth(foreign), {"Authorization": "Basic eDp5"}):
            r = await family.http.request(method, path, json=json, headers=headers)
            assert is_problem(r, 401), (method, path)
            assert r.headers["www-authenticate"].startswith("Bearer")


async def test_an_app_token_reaches_only_its_own_person(family):
    me, other, parent = await family.person(), await family.person(), await family.person()
    token = app_token(me)
    assert is_problem(await family.bind(token, other, parent), 403)
    assert is_problem(await family.http.get(f"/v1/persons/{other['person_id']}/bindings", headers=auth(token)), 403)
    assert is_problem(await family.http.get(f"/v1/grantors/{other['person_id']}/consumption", headers=auth(token)),
                      403)
    created = (await family.bind(app_token(other), other, parent)).json()
    binding_id = created["outcome"]["binding_id"]
    asked_for_other = await family.http.post(f"/v1/bindings/{binding_id}/revocation",
                                             json={"requested_by": other["person_id"]}, headers=auth(token))
    assert is_problem(asked_for_other, 403)
    not_grantor = await family.http.post(f"/v1/bindings/{binding_id}/revocation", json={}, headers=auth(token))
    assert is_problem(not_grantor, 403, "NOT_GRANTOR")
    reorder = await family.http.put(f"/v1/bindings/{binding_id}/payment-order", json={"payment_order": 2},
                                    headers=auth(token))
    assert is_problem(reorder, 403, "NOT_GRANTOR")
    # Someone else's command outcome names other people: not for this token.
    assert is_problem(await family.http.get(f"/v1/commands/{created['command_id']}", headers=auth(token)), 403)


async def test_refusals_carry_their_reason_code_and_status(family):
    grantor, father, second, third = (await family.person(), await family.person(), await family.person(),
                                      await family.person())
    token = app_token(grantor)
    assert (await family.bind(token, grantor, father)).status_code == 201
    assert is_problem(await family.bind(token, grantor, father, order=2), 409, "DUPLICATE_BINDING")
    assert is_problem(await family.bind(app_token(second), second, father, order=1), 409, "PAYMENT_ORDER_TAKEN")
    assert is_problem(await family.bind(app_token(third), third, second, relation="sibling"), 422,
                      "RELATION_NOT_ALLOWED")
    assert is_problem(await family.bind(app_token(third), third, second, notice_accepted=False), 422,
                      "NOTICE_NOT_ACCEPTED")
    missing = await family.http.post("/v1/bindings/BND-nothing/revocation", json={}, headers=auth(token))
    assert is_problem(missing, 404, "BINDING_NOT_FOUND")
    assert "command_id" in missing.json()


async def test_the_app_grantor_changes_the_order_and_revokes(family):
    mother = await family.person(region="610300", scheme="resident")  # in WINDOW's region
    son, daughter = await family.person(), await family.person()
    first = (await family.bind(app_token(son), son, mother, relation="mother", order=1)).json()
    second = (await family.bind(app_token(daughter), daughter, mother, relation="mother", order=2)).json()
    swapped = await family.http.put(f"/v1/bindings/{second['outcome']['binding_id']}/payment-order",
                                    json={"payment_order": 1}, headers=auth(app_token(daughter)))
    assert swapped.status_code == 200, swapped.json()
    assert swapped.json()["status"] == "payment_order_changed"
    moved = {c["binding_id"]: c["payment_order"] for c in swapped.json()["outcome"]["changes"]}
    assert moved == {second["outcome"]["binding_id"]: 1, first["outcome"]["binding_id"]: 2}
    revoked = await family.http.post(f"/v1/bindings/{first['outcome']['binding_id']}/revocation", json={},
                                     headers=auth(app_token(son)))
    assert revoked.status_code == 200 and revoked.json()["outcome"]["status"] == "revoked"
    listed = (await family.http.get(f"/v1/persons/{mother['person_id']}/bindings", headers=auth(WINDOW))).json()
    assert {b["binding_id"]: b["status"] for b in listed["bindings"]}[first["outcome"]["binding_id"]] == "revoked"


# The full table of malformed bodies is tests/unit/test_gateway_http.py; two through the real stack.
@pytest.mark.parametrize("change,reason", [
    (lambda f: f | {"payment_order": "1"}, "INVALID_COMMAND"),            # strings stay strings, numbers numbers
    (lambda f: {**f, "grantor": {**f["grantor"], "id_number": "610102198503150019"}}, "INVALID_ID_NUMBER"),
])
async def test_malformed_bodies_are_refused_before_anything_is_sent(family, change, reason):
    grantor, child = await family.person(), await family.person()
    r = await family.http.post("/v1/bindings", json=change(family.form(grantor, child, relation="child")),
                               headers=auth(app_token(grantor)))
    assert is_problem(r, 422, reason)
    assert grantor["person_id"] not in r.text  # errors name fields, never the values sent


async def test_every_error_is_problem_json(family):
    token = auth(WINDOW)
    assert is_problem(await family.http.post("/v1/bindings", content=b"{not json", headers={
        **token, "content-type": "application/json"}), 422)
    assert is_problem(await family.http.post("/v1/bindings", content=b"{" + b" " * 70_000 + b"}", headers={
        **token, "content-type": "application/json"}), 413)
    assert is_problem(await family.http.get("/v1/persons/12345/bindings", headers=token), 422, "INVALID_ID_NUMBER")
    assert is_problem(await family.http.get("/v1/nowhere", headers=token), 404)
    assert is_problem(await family.http.delete("/v1/bindings", headers=token), 405)
    assert is_problem(await family.http.get(f"/v1/commands/{uuid.uuid4()}", headers=token), 404)


async def test_a_grantors_consumption_is_paged_with_totals_over_the_range(family):
    event = institution_registered(HOSPITAL, HOSPITAL_REGION, "宝鸡测试医院")
    await family.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", event), key=HOSPITAL)
    await eventually(lambda: family.redis.hget("stl:inst", HOSPITAL), 30, "the hospital registered")
    son = await family.person(region=HOSPITAL_REGION, balance="500.00")  # in WINDOW's region
    father = await family.person()
    assert (await family.bind(app_token(son), son, father)).status_code == 201
    charge_ids = []
    for borne in ("12.30", "45.60", "7.00"):
        charge_id = f"C{uuid.uuid4().hex[:16]}"
        charge = {"charge_id": charge_id, "institution_code": HOSPITAL, "institution_region": HOSPITAL_REGION,
                  "patient_id": father["person_id"], "patient_name": father["name"],
                  "code_holder_id": father["person_id"], "presented_via": "own_device", "visit_kind": "outpatient",
                  "total": borne, "fund_paid": "0.00", "individual_borne": borne,
                  "charged_at": china_now_iso()}
        await family.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=father["person_id"])
        [settled] = await family.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge_id)
        assert body(settled)["event_type"] == "ChargeSettled", payload_of(settled)
        charge_ids.append(charge_id)

    token = auth(app_token(son))
    url = f"/v1/grantors/{son['person_id']}/consumption"
    pages = [(await family.http.get(url, params={"page": n, "page_size": 2}, headers=token)).json()
             for n in (1, 2, 3)]
    assert [len(p["items"]) for p in pages] == [2, 1, 0]
    assert {p["total_items"] for p in pages} == {3} and {p["total_pages"] for p in pages} == {2}
    assert {p["total_paid"] for p in pages} == {"64.90"}
    assert sorted(i["charge_id"] for p in pages for i in p["items"]) == sorted(charge_ids)
    assert {i["beneficiary_id"] for p in pages for i in p["items"]} == {mask_id_number(father["person_id"])}
    assert pages[0]["beneficiaries"][0]["payments"] == 3
    today = china_today()
    assert pages[0]["from"] == (today - timedelta(days=29)).isoformat() and pages[0]["to"] == today.isoformat()

    by_window = await family.http.get(url, params={"from": today.isoformat(), "to": today.isoformat()},
                                      headers=auth(WINDOW))
    assert by_window.json()["total_items"] == 3
    earlier = await family.http.get(url, params={"to": (today - timedelta(days=1)).isoformat()}, headers=token)
    assert earlier.json()["total_items"] == 0 and earlier.json()["total_paid"] == "0.00"
    assert is_problem(await family.http.get(url, params={"from": "2026-01-01", "to": "2027-06-01"}, headers=token),
                      422, "INVALID_DATES")
    assert is_problem(await family.http.get(url, params={"from": today.isoformat(),
                                                         "to": (today - timedelta(days=1)).isoformat()},
                                            headers=token), 422, "INVALID_DATES")
    assert is_problem(await family.http.get(url, params={"page_size": 500}, headers=token), 422)
    assert is_problem(await family.http.get(url, params={"page": 0}, headers=token), 422)


async def test_a_command_past_the_wait_is_202_and_its_outcome_can_be_asked_later(family):
    grantor, child = await family.person(region="610300"), await family.person()
    r = await family.impatient.post("/v1/bindings", json=family.form(grantor, child, relation="child"),
                                    headers=auth(app_token(grantor)))
    assert r.status_code == 202, r.json()
    accepted = r.json()
    assert r.headers["location"] == accepted["location"] == f"/v1/commands/{accepted['command_id']}"

    async def outcome():
        answer = await family.http.get(accepted["location"], headers=auth(app_token(grantor)))
        return answer if answer.status_code == 200 else None
    answer = await eventually(outcome, 30, "the command's outcome")
    assert answer.json()["status"] == "created" and answer.json()["command_id"] == accepted["command_id"]
    by_window = await family.http.get(accepted["location"], headers=auth(WINDOW))
    assert by_window.json() == answer.json()
    audit = await family.audited(accepted["command_id"])
    assert audit["payload"]["action"] == "query_command"


async def test_a_window_action_past_the_wait_is_audited_as_pending(family):
    grantor, child = await family.person(region="610300"), await family.person()
    r = await family.impatient.post("/v1/bindings", json=family.form(grantor, child, relation="child"),
                                    headers=auth(WINDOW))
    assert r.status_code == 202
    audit = await family.audited(r.json()["command_id"])
    assert audit["payload"]["outcome"] == "pending"


async def test_the_api_is_documented_and_reports_its_health(family, platform):
    openapi = (await family.http.get("/openapi.json")).json()
    paths = openapi["paths"]
    assert {"/v1/bindings", "/v1/bindings/{binding_id}/revocation", "/v1/bindings/{binding_id}/payment-order",
            "/v1/persons/{person_id}/bindings", "/v1/grantors/{person_id}/consumption",
            "/v1/commands/{command_id}"} <= set(paths)
    assert (await family.http.get("/docs")).status_code == 200
    assert (await family.http.get("/healthz")).status_code == 200
    ready = await family.http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}  # the detail is the operator's
    someone = await family.person(region="610300")
    await family.http.get(f"/v1/persons/{someone['person_id']}/bindings", headers=auth(WINDOW))
    assert (await family.http.get("/metrics")).status_code == 404  # on the operator port only
    async with httpx.AsyncClient(base_url=platform["gateway"].admin_url, timeout=30) as admin:
        metrics = (await admin.get("/metrics")).text
        detail = (await admin.get("/readyz")).json()
    assert 'fma_http_requests_total{method="GET",route="/v1/persons/{person_id}/bindings"' in metrics
    assert detail["status"] == "ready" and {"broker", "redis", "consumers", "projections"} <= set(detail["checks"])


def china_now_iso() -> str:
    from shared.envelope import now
    return now().isoformat(timespec="seconds")
