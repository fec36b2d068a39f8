"""The API the window console codes against, through the real stack: binding, settlement and
the gateway as processes against the real broker and Redis, driven over HTTP with httpx.

- GET /v1/me for every role, and 401 without a valid token;
- POST /v1/person-lookups: the binding service compares the name (by its keyed digest) and
  settlement gives the balance a charge would find, shown only for a verified employee;
- GET /v1/audit: the audit projection of gateway.audit in Redis, a window clerk's own entries,
  a supervisor's region's; it outlives a restart of the gateway."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from shared import topics as t
from shared.identity import mask_id_number
from shared.tokens import TokenIssuer
from shared.envelope import seal
from tests.http_api import (HOSPITAL, HOSPITAL_REGION, ISSUERS, Family, app_token, auth, gateway_process, is_problem,
                            window_token)
from tests.support import (body, charge_submitted, command, eventually, handled,
                           institution_registered, payload_of, person_registered)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(infra, bus, platform_pool, tmp_path_factory):
    """Binding and settlement logging at DEBUG (a test reads their logs for names), a gateway as
    deployed at DEBUG and one that never waits for an outcome."""
    log_dir = tmp_path_factory.mktemp("console-api")
    gateway, url = gateway_process(infra, log_dir, LOG_LEVEL="DEBUG")
    impatient, impatient_url = gateway_process(infra, log_dir, GATEWAY_COMMAND_TIMEOUT_MS="1")
    with platform_pool.alone(("binding", "settlement"), {**infra.env(), "LOG_LEVEL": "DEBUG"}) as services:
        try:
            for process in (gateway, impatient):
                process.start()
            yield {"url": url, "impatient_url": impatient_url, "gateway": gateway, "services": services}
        finally:
            for process in (impatient, gateway):
                process.stop()


@pytest.fixture
async def family(platform, bus, clean_redis):
    async with httpx.AsyncClient(base_url=platform["url"], timeout=30) as http, \
            httpx.AsyncClient(base_url=platform["impatient_url"], timeout=30) as impatient:
        yield Family(bus, clean_redis, http, impatient)


def window(clerk: str, region: str = "610300", role: str = "window") -> str:
    return window_token(clerk, region, role)


def clerk_ids(n: int) -> list[str]:
    return [f"clerk-{uuid.uuid4().hex[:8]}" for _ in range(n)]


async def test_the_balance_is_the_one_the_next_charge_pays_from(family):
    """After a charge paid from the patient's own account, the look-up shows what is left: the
    balance settlement's Function pays the next charge from."""
    await family.bus.send(t.BUREAU_INSTITUTIONS, seal("InstitutionRegistered", institution_registered(
        HOSPITAL, HOSPITAL_REGION)), key=HOSPITAL)
    await eventually(lambda: family.redis.hget("stl:inst", HOSPITAL), 30, "the hospital registered")
    patient = await family.person(region="610300", balance="250.00")
    charge = charge_submitted(patient, HOSPITAL, HOSPITAL_REGION, 5_012)
    await family.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=patient["person_id"])
    [settled] = await family.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
        lambda r: payload_of(r).get("charge_id") == charge["charge_id"])
    assert body(settled)["event_type"] == "ChargeSettled", payload_of(settled)
    r = await family.http.post("/v1/person-lookups", json={"id_number": patient["person_id"], "name": patient["name"]},
                               headers=auth(window(clerk_ids(1)[0])))
    assert r.json()["balance"] == "199.88"


async def test_me_says_who_the_token_is(family):
    clerk, chief = clerk_ids(2)
    me = await family.http.get("/v1/me", headers=auth(window(clerk)))
    assert me.status_code == 200
    assert me.json() == {"role": "window", "clerk_id": clerk, "region": "610300", "region_name": "宝鸡市",
                         "person_id": None}
    boss = (await family.http.get("/v1/me", headers=auth(window(chief, "610100", "supervisor")))).json()
    assert (boss["role"], boss["clerk_id"], boss["region"], boss["region_name"]) == (
        "supervisor", chief, "610100", "西安市")
    person = await family.person()
    mine = (await family.http.get("/v1/me", headers=auth(app_token(person)))).json()
    assert mine == {"role": "app", "clerk_id": None, "region": None, "region_name": None,
                    "person_id": mask_id_number(person["person_id"])}
    stranger = TokenIssuer.generate(ISSUERS.windows.iss, ["window"], kid=ISSUERS.windows.kid)  # a key never listed
    for headers in ({}, auth("not-a-jwt"), auth(stranger.mint("window", clerk_id=clerk, region="610300"))):
        assert is_problem(await family.http.get("/v1/me", headers=headers), 401)


async def test_a_lookup_shows_the_balance_only_for_a_verified_employee(family, platform):
    [clerk] = clerk_ids(1)
    token = auth(window(clerk))
    employee = await family.person(region="610300", balance="250.00")
    resident = await family.person(region="610300", scheme="resident")
    url = "/v1/person-lookups"

    verified = await family.http.post(url, json={"id_number": employee["person_id"], "name": employee["name"]},
                                      headers=token)
    assert verified.status_code == 200, verified.json()
    assert verified.json() == {"person_id": mask_id_number(employee["person_id"]), "registered": True,
                               "region": "610300", "region_name": "宝鸡市", "scheme": "employee",
                               "name_verified": True, "balance": "250.00"}
    wrong = (await family.http.post(url, json={"id_number": employee["person_id"], "name": "张三丰"},
                                    headers=token)).json()
    assert (wrong["name_verified"], wrong["balance"], wrong["registered"]) == (False, None, True)
    unnamed = (await family.http.post(url, json={"id_number": employee["person_id"]}, headers=token)).json()
    assert (unnamed["name_verified"], unnamed["balance"]) == (None, None)

    theirs = (await family.http.post(url, json={"id_number": resident["person_id"], "name": resident["name"]},
                                     headers=token)).json()
    assert (theirs["scheme"], theirs["region"], theirs["name_verified"], theirs["balance"]) == (
        "resident", "610300", True, None)

    nobody = person_registered()["person_id"]
    assert is_problem(await family.http.post(url, json={"id_number": nobody, "name": "李四"}, headers=token),
                      404, "UNKNOWN_PERSON")
    assert is_problem(await family.http.post(url, json={"id_number": employee["person_id"]},
                                             headers=auth(app_token(resident))), 403)
    own = (await family.http.post(url, json={"id_number": employee["person_id"], "name": employee["name"]},
                                  headers=auth(app_token(employee)))).json()
    assert own["balance"] == "250.00"

    # The name typed at the window goes nowhere but the binding service's comparison: not into the
    # answer, the audit trail or any log line.
    records = await family.bus.watchers[t.GATEWAY_AUDIT].wait_for(
        lambda r: r.key == clerk.encode(), count=5, timeout=30)
    assert {seal_payload(r)["action"] for r in records} == {"lookup"}
    assert {seal_payload(r).get("reason_code") for r in records} == {None, "NAME_MISMATCH", "UNKNOWN_PERSON"}
    # The logs are read once binding and settlement have handled every query of these look-ups
    # (each committed past it, its log lines written before), not merely once the audit is out.
    asked = {p.encode() for p in (employee["person_id"], resident["person_id"], nobody)}
    await family.bus.caught_up()
    for topic, group in ((t.BINDING_COMMANDS, f"binding.{t.BINDING_COMMANDS}"),
                         (t.SETTLEMENT_QUERIES, f"settlement.{t.SETTLEMENT_QUERIES}")):
        queries = family.bus.watchers[topic].matching(
            lambda r: r.key in asked and body(r)["event_type"].startswith("Query"))
        assert queries, f"no look-up query on {topic}"
        for query in queries:
            await handled(family.bus, group, query)
    logs = "".join(platform["services"][name].log_text() for name in
                   ("binding", "settlement")) + platform["gateway"].log_text()
    for name in (employee["name"], resident["name"], "张三丰", "李四"):
        assert name not in logs and all(name.encode() not in r.value for r in records)


def seal_payload(record) -> dict:
    return json.loads(record.value)["payload"]


async def listed(family, token: str, expected: int, **params) -> dict:
    """The audit list once it holds `expected` entries (the projection follows gateway.audit)."""
    async def enough():
        r = await family.http.get("/v1/audit", params=params, headers=auth(token))
        assert r.status_code == 200, r.json()
        return r.json() if r.json()["total"] >= expected else None
    return await eventually(enough, 30, f"{expected} audit entries")


async def test_the_audit_list_shows_a_clerk_his_own_and_a_supervisor_the_regions(family):
    alice, bob, chief = clerk_ids(3)
    son, father = await family.person(region="610300"), await family.person(scheme="resident")  # Baoji, Xi'an
    created = await family.bind(window(alice), son, father)
    assert created.status_code == 201, created.json()
    refused = await family.bind(window(alice), son, father)  # the same pair again: DUPLICATE_BINDING
    assert refused.status_code == 409
    looked = await family.http.post("/v1/person-lookups", json={"id_number": father["person_id"]},
                                    headers=auth(window(bob)))
    assert looked.status_code == 200
    xian_clerk = clerk_ids(1)[0]
    elsewhere = await family.http.post("/v1/person-lookups", json={"id_number": father["person_id"]},
                                       headers=auth(window(xian_clerk, "610100")))
    assert elsewhere.status_code == 200

    own = await listed(family, window(alice), 2)
    assert own["total"] == 2 and (own["page"], own["page_size"]) == (1, 50)
    assert [(e["clerk_id"], e["action"], e["outcome"], e["reason_code"]) for e in own["entries"]] == [
        (alice, "create_binding", "refused", "DUPLICATE_BINDING"), (alice, "create_binding", "accepted", None)]
    newest = own["entries"][1]
    assert newest["command_id"] == created.json()["command_id"]
    assert (newest["region"], newest["subject_id"], newest["subject_region"]) == (
        "610300", mask_id_number(son["person_id"]), "610300")
    assert set(newest) == {"at", "clerk_id", "region", "action", "command_id", "subject_id", "subject_region",
                           "outcome", "reason_code"}

    region = await listed(family, window(chief, role="supervisor"), 3)
    assert region["total"] == 3  # not the Xi'an clerk's look-up
    assert {e["clerk_id"] for e in region["entries"]} == {alice, bob}
    assert [e["at"] for e in region["entries"]] == sorted((e["at"] for e in region["entries"]), reverse=True)
    only_bob = await listed(family, window(chief, role="supervisor"), 1, clerk_id=bob)
    assert [(e["action"], e["outcome"]) for e in only_bob["entries"]] == [("lookup", "answered")]
    paged = await listed(family, window(chief, role="supervisor"), 3, page=2, page_size=2)
    assert len(paged["entries"]) == 1 and paged["total"] == 3

    # Xi'an's supervisor sees Xi'an's clerk, and Baoji's Bob looking up the Xi'an father (bound
    # with a Baoji grantor): the persons of the region acted on elsewhere. Not Alice's binding
    # (its grantor is Baoji's).
    xian = await listed(family, window(clerk_ids(1)[0], "610100", "supervisor"), 2)
    assert sorted((e["clerk_id"], e["region"], e["subject_region"]) for e in xian["entries"]) == sorted([
        (xian_clerk, "610100", "610100"), (bob, "610300", "610100")])

    assert is_problem(await family.http.get("/v1/audit", params={"clerk_id": bob}, headers=auth(window(alice))), 403)
    assert is_problem(await family.http.get("/v1/audit", headers=auth(app_token(son))), 403)
    assert is_problem(await family.http.get("/v1/audit"), 401)


async def test_a_command_past_the_wait_is_listed_pending_then_with_its_outcome(family):
    [clerk] = clerk_ids(1)
    grantor, child = await family.person(region="610300"), await family.person()
    r = await family.impatient.post("/v1/bindings", json=family.form(grantor, child, relation="child"),
                                    headers=auth(window(clerk)))
    assert r.status_code == 202, r.json()

    async def decided():
        page = (await family.http.get("/v1/audit", headers=auth(window(clerk)))).json()
        return page if page["entries"] and page["entries"][0]["outcome"] != "pending" else None
    page = await eventually(decided, 30, "the command's outcome in the audit list")
    assert page["total"] == 1
    [only] = page["entries"]
    assert (only["command_id"], only["action"], only["outcome"]) == (r.json()["command_id"], "create_binding",
                                                                     "accepted")


async def test_the_audit_list_outlives_a_restart_of_the_gateway(family, platform):
    [clerk] = clerk_ids(1)
    someone = await family.person(region="610300")
    r = await family.http.post("/v1/person-lookups", json={"id_number": someone["person_id"]},
                               headers=auth(window(clerk)))
    assert r.status_code == 200
    before = await listed(family, window(clerk), 1)

    gateway = platform["gateway"]
    gateway.stop()
    gateway.start()  # "service ready" only once the audit projection has caught up
    async with httpx.AsyncClient(base_url=gateway.admin_url, timeout=30) as admin:
        ready = await admin.get("/readyz")  # the detail: on the operator port
    assert ready.status_code == 200 and ready.json()["checks"]["projections"]["ok"], ready.json()
    assert ready.json()["checks"]["redis"]["ok"]
    after = await family.http.get("/v1/audit", headers=auth(window(clerk)))
    assert after.json()["entries"] == before["entries"]
    # ... and the restarted gateway goes on projecting.
    again = await family.http.post("/v1/person-lookups", json={"id_number": someone["person_id"]},
                                   headers=auth(window(clerk)))
    assert again.status_code == 200
    assert (await listed(family, window(clerk), 2))["entries"][1:] == before["entries"]
