"""People prove who they are, and reach only their own (contract version 3), through the real
stack: binding and settlement as processes and two gateways as deployed, sharing one consumer
group (revocations reach both through Kafka and Redis) and one Redis (the rate limit is per
principal across instances), against the real broker and Redis.

The token checks themselves are tests/unit/test_gateway_tokens.py; the admission Function is
tested directly in test_gateway_admission.py."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from urllib.parse import urlparse

import httpx
import pytest

from shared import topics as t
from shared.envelope import now as china_now
from shared.signing import KeyRing, verify
from tooling.devkeys import DevKeys
from tests.http_api import Family, ISSUERS, app_token, auth, gateway_process, is_problem, window_token
from tests.support import body, eventually, payload_of, person_registered

pytestmark = pytest.mark.integration

BAOJI, XIAN = "610300", "610100"
# Rates no other test here reaches with one principal (each uses fresh ones), that the rate test does.
LOOKUP_BURST, COMMAND_BURST = 100, 5
RATES = {"GATEWAY_LOOKUP_RATE_PER_MINUTE": "600", "GATEWAY_LOOKUP_BURST": str(LOOKUP_BURST),
         "GATEWAY_COMMAND_RATE_PER_MINUTE": "60", "GATEWAY_COMMAND_BURST": str(COMMAND_BURST)}


@pytest.fixture(scope="module")
def platform(infra, bus, services, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("gateway-access")
    group = f"access-{uuid.uuid4().hex[:8]}"  # one group: each revocation is written once, read by both
    first, first_url = gateway_process(infra, log_dir, GATEWAY_GROUP_ID=group, **RATES)
    second, second_url = gateway_process(infra, log_dir, GATEWAY_GROUP_ID=group, **RATES)
    gateways = [first, second]
    try:
        for process in gateways:
            process.start()
        yield {"urls": [first_url, second_url], "admins": [first.admin_url, second.admin_url]}
    finally:
        for process in reversed(gateways):
            process.stop()


@pytest.fixture
async def family(platform, bus, clean_redis):
    first, second = platform["urls"]
    async with httpx.AsyncClient(base_url=first, timeout=30) as http, \
            httpx.AsyncClient(base_url=second, timeout=30) as other:
        family = Family(bus, clean_redis, http, impatient=other)
        family.other = other
        yield family


def clerk() -> str:
    return f"clerk-{uuid.uuid4().hex[:8]}"


# -- revocation --------------------------------------------------------------------------------
async def test_a_revoked_token_is_refused_by_every_gateway_within_seconds(family, platform):
    mine, colleague = clerk(), clerk()
    revoked, kept = window_token(mine), window_token(mine)
    bystander = window_token(colleague)
    for http in (family.http, family.other):
        assert (await http.get("/v1/me", headers=auth(revoked))).status_code == 200
    jti = ISSUERS.trusted().verify(revoked).jti

    began = time.monotonic()
    async with httpx.AsyncClient(base_url=platform["admins"][0], timeout=30) as admin:
        asked = await admin.post("/admin/revocations", json={"jti": jti})
    assert asked.status_code == 202 and asked.json()["event_type"] == "TokenRevoked", asked.text

    async def refused_by(http) -> bool:
        return (await http.get("/v1/me", headers=auth(revoked))).status_code == 401
    await eventually(lambda: refused_by(family.http), 5, "the first gateway refusing the revoked token", 0.1)
    await eventually(lambda: refused_by(family.other), 5, "the second gateway refusing the revoked token", 0.1)
    took = time.monotonic() - began
    print(f"token revoked on both gateways in {took * 1000:.0f} ms")
    assert took < 5
    r = await family.other.get("/v1/me", headers=auth(revoked))
    assert is_problem(r, 401) and "revoked" in r.json()["detail"]
    assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    for token in (kept, bystander):  # the clerk's other token, and another clerk's, still work
        assert (await family.other.get("/v1/me", headers=auth(token))).status_code == 200
    [record] = await family.bus.watchers[t.GATEWAY_REVOCATIONS].wait_for(lambda m: payload_of(m).get("jti") == jti)
    assert body(record)["event_type"] == "TokenRevoked" and record.key == jti.encode()


async def test_a_revoked_clerk_is_refused_on_every_gateway_until_signed_on_again(family, platform):
    mine = clerk()
    tokens = [window_token(mine), window_token(mine, role="supervisor")]
    async with httpx.AsyncClient(base_url=platform["admins"][1], timeout=30) as admin:
        asked = await admin.post("/admin/revocations", json={"clerk_id": mine})
    assert asked.status_code == 202 and asked.json()["event_type"] == "ClerkRevoked"

    async def all_refused() -> bool:
        answers = [await http.get("/v1/me", headers=auth(token)) for http in (family.http, family.other)
                   for token in tokens]
        return all(a.status_code == 401 for a in answers)
    await eventually(all_refused, 5, "every gateway refusing the clerk's tokens", 0.1)
    # A sign-on after the revocation (the clerk reinstated) is believed.
    later = ISSUERS.mint("window", clerk_id=mine, region=BAOJI, now=time.time() + 2)
    assert (await family.http.get("/v1/me", headers=auth(later))).status_code == 200


async def test_the_operator_port_is_apart_from_the_api(family, platform):
    admin_url = platform["admins"][0]
    assert urlparse(admin_url).hostname == "127.0.0.1"  # loopback by default
    for path in ("/metrics", "/admin/revocations"):
        assert (await family.http.get(path)).status_code in (404, 405)
        assert (await family.http.post(path, json={"clerk_id": "x"})).status_code in (404, 405)
    public = await family.http.get("/readyz")
    assert public.status_code == 200 and public.json() == {"status": "ready"}
    async with httpx.AsyncClient(base_url=admin_url, timeout=30) as admin:
        ready = (await admin.get("/readyz")).json()
        assert ready["status"] == "ready" and ready["checks"]["consumers"]["ok"]
        assert "fma_http_requests_total" in (await admin.get("/metrics")).text
        for bad in ({}, {"jti": "a", "clerk_id": "b"}, {"clerk_id": "not a clerk id!"}, {"who": "x"}):
            refused = await admin.post("/admin/revocations", json=bad)
            assert refused.status_code == 422 and refused.headers["content-type"].startswith(
                "application/problem+json"), bad
        assert (await admin.get("/v1/me", headers=auth(window_token(clerk())))).status_code == 404


# -- a clerk's region --------------------------------------------------------------------------
async def test_a_clerk_acts_only_for_grantors_of_the_clerks_region(family):
    me = clerk()
    token = window_token(me, BAOJI)
    baoji_son, xian_son, father = (await family.person(region=BAOJI), await family.person(region=XIAN),
                                   await family.person(region=XIAN, scheme="resident"))
    refused = await family.bind(token, xian_son, father)
    assert is_problem(refused, 403)
    created = await family.bind(token, baoji_son, father)
    assert created.status_code == 201, created.json()
    assert not family.bus.watchers[t.BINDING_COMMANDS].matching(
        lambda m: body(m)["event_type"] == "CreateBinding"
        and payload_of(m)["grantor"]["id_number"] == xian_son["person_id"])  # nothing sent for the refused one
    records = await family.bus.watchers[t.GATEWAY_AUDIT].wait_for(lambda m: m.key == me.encode(), count=2)
    assert sorted((payload_of(r)["outcome"], payload_of(r)["subject_region"]) for r in records) == [
        ("created", BAOJI), ("forbidden", XIAN)]
    binding = created.json()["outcome"]["binding_id"]
    # Acting for the binding's grantor of another region (or naming nobody) is refused too.
    assert is_problem(await family.http.post(f"/v1/bindings/{binding}/pause", json={
        "requested_by": xian_son["person_id"]}, headers=auth(token)), 403)
    assert is_problem(await family.http.put(f"/v1/bindings/{binding}/payment-order", json={"payment_order": 2},
                                            headers=auth(token)), 422, "INVALID_COMMAND")


async def test_a_clerk_looks_up_the_regions_persons_and_the_beneficiaries_bound_with_them(family):
    token = window_token(clerk(), BAOJI)
    son = await family.person(region=BAOJI)
    father = await family.person(region=XIAN, scheme="resident")  # bound with a Baoji grantor below
    stranger = await family.person(region=XIAN)                      # nobody's beneficiary here
    assert (await family.bind(app_token(son), son, father)).status_code == 201

    for person, allowed in ((son, True), (father, True), (stranger, False)):
        pid = person["person_id"]
        answers = [await family.http.post("/v1/person-lookups", json={"id_number": pid}, headers=auth(token)),
                   await family.http.get(f"/v1/persons/{pid}/bindings", headers=auth(token)),
                   await family.http.get(f"/v1/persons/{pid}/disputes", headers=auth(token))]
        assert [a.status_code for a in answers] == [200 if allowed else 403] * 3, (person["region"], allowed)
    assert (await family.http.get(f"/v1/grantors/{son['person_id']}/consumption", headers=auth(token))
            ).status_code == 200
    assert is_problem(await family.http.get(f"/v1/grantors/{stranger['person_id']}/consumption",
                                            headers=auth(token)), 403)
    # A person no bureau registered: nothing to see, so the usual answer.
    nobody = person_registered(XIAN)["person_id"]
    assert is_problem(await family.http.post("/v1/person-lookups", json={"id_number": nobody}, headers=auth(token)),
                      404, "UNKNOWN_PERSON")
    # Xi'an's clerk may look the father up (his own region) but not the Baoji son.
    xian = window_token(clerk(), XIAN)
    assert (await family.http.get(f"/v1/persons/{father['person_id']}/bindings", headers=auth(xian))
            ).status_code == 200
    assert is_problem(await family.http.get(f"/v1/persons/{son['person_id']}/bindings", headers=auth(xian)), 403)


# -- app tokens ----------------------------------------------------------------------------------
async def test_an_app_refusal_does_not_tell_whether_a_stranger_is_registered_or_named_right(family):
    son, father = await family.person(), await family.person(region=BAOJI, scheme="resident")
    token = app_token(son)
    unregistered = person_registered(BAOJI, "resident")
    answers = [await family.bind(token, son, unregistered, relation="father"),
               await family.bind(token, son, father | {"name": "不是他的名字"}),
               await family.bind(token, son, father | {"region": "110000"})]  # outside the province
    bodies = [a.json() for a in answers]
    assert [a.status_code for a in answers] == [422] * 3
    assert {(b["reason_code"], b["message_zh"], b["message_en"], b["detail"]) for b in bodies} == {(
        "PERSON_NOT_VERIFIED", bodies[0]["message_zh"], bodies[0]["message_en"], bodies[0]["detail"])}
    # Asked again by its id, the refusal reads the same for the app ...
    later = await family.http.get(f"/v1/commands/{bodies[1]['command_id']}", headers=auth(token))
    assert later.json()["outcome"]["reason_code"] == "PERSON_NOT_VERIFIED"
    # ... while a clerk (who sees the ID card) is told which it is.
    at_window = await family.bind(window_token(clerk(), XIAN), son, father | {"name": "不是他的名字"})
    assert is_problem(at_window, 422, "NAME_MISMATCH")


# -- rate limits ---------------------------------------------------------------------------------
async def until_limited(send) -> tuple[list[httpx.Response], float]:
    """Send until one is refused 429 (at most 1,000): every answer, the 429 last, and when it began."""
    began, answers = time.monotonic(), []
    for n in range(1_000):
        answers.append(await send(n))
        if answers[-1].status_code == 429:
            return answers, began
    raise AssertionError("never limited")


async def test_look_ups_and_commands_over_a_principals_rate_are_429_on_every_gateway(family):
    first, second = family.http, family.other
    token, other = auth(window_token(clerk(), BAOJI)), auth(window_token(clerk(), BAOJI))
    # The burst is shared by both gateways: once it is spent (and what refilled meanwhile, 10 a
    # second), the look-up is refused wherever it lands.
    answers, began = await until_limited(lambda n: (first, second)[n % 2].get("/v1/me", headers=token))
    assert LOOKUP_BURST <= len(answers) - 1 <= LOOKUP_BURST + 10 * (time.monotonic() - began) + 1
    assert {a.status_code for a in answers[:-1]} == {200}
    limited = answers[-1]
    assert is_problem(limited, 429)
    assert limited.headers["retry-after"] == "1" and limited.json()["retry_after"] == 1  # 10 a second refill
    assert (await first.get("/v1/me", headers=other)).status_code == 200  # per principal
    # Commands have a bucket of their own.
    someone = await family.person(region=BAOJI)
    form = {}  # refused 422 once admitted: what is counted is the command, whatever its answer
    answers, began = await until_limited(lambda n: (first, second)[n % 2].post("/v1/bindings", json=form,
                                                                              headers=token))
    assert COMMAND_BURST <= len(answers) - 1 <= COMMAND_BURST + (time.monotonic() - began) + 1
    assert {a.status_code for a in answers[:-1]} == {422} and answers[-1].headers["retry-after"] == "1"
    await asyncio.sleep(1)  # Retry-After is the wait the client is told: after it, admitted again
    assert (await second.get("/v1/me", headers=token)).status_code == 200
    assert (await first.post("/v1/bindings", json=Family.form(someone, await family.person()),
                             headers=token)).status_code == 201


# -- Idempotency-Key -------------------------------------------------------------------------------
async def test_a_command_retried_with_its_idempotency_key_is_the_same_command(family):
    son, father = await family.person(), await family.person(region=BAOJI, scheme="resident")
    token, key = app_token(son), str(uuid.uuid4())
    form = Family.form(son, father)
    first = await family.http.post("/v1/bindings", json=form, headers=auth(token) | {"Idempotency-Key": key})
    assert first.status_code == 201, first.json()
    retried = await family.other.post("/v1/bindings", json=form, headers=auth(token) | {"Idempotency-Key": key})
    assert retried.status_code == 201 and retried.json() == first.json()  # same id, same answer, either gateway
    # Without the key the same body is a new command (refused: the binding exists).
    assert is_problem(await family.http.post("/v1/bindings", json=form, headers=auth(token)), 409,
                      "DUPLICATE_BINDING")
    changed = await family.http.post("/v1/bindings", json=form | {"payment_order": 2},
                                     headers=auth(token) | {"Idempotency-Key": key})
    assert is_problem(changed, 422, "IDEMPOTENCY_KEY_REUSED")
    def made_for_son(m) -> bool:
        return body(m)["event_type"] == "BindingCreated" and payload_of(m)["grantor_id"] == son["person_id"]
    # The gateway had its answer on its reply topic; the test's own watcher of binding.events may
    # not have read it yet: wait for it, then count (the refused retries came after it).
    await family.bus.watchers[t.BINDING_EVENTS].wait_for(made_for_son, timeout=30)
    created = family.bus.watchers[t.BINDING_EVENTS].matching(made_for_son)
    assert len({body(m)["event_id"] for m in created}) == 1
    # Another principal's key of the same name is its own.
    daughter = await family.person()
    theirs = await family.http.post("/v1/bindings", json=Family.form(daughter, father, order=2),
                                    headers=auth(app_token(daughter)) | {"Idempotency-Key": key})
    assert theirs.status_code == 201 and theirs.json()["command_id"] != first.json()["command_id"]
    assert is_problem(await family.http.post("/v1/bindings", json=form, headers=auth(token) | {
        "Idempotency-Key": "with spaces"}), 422)


# -- the edge ---------------------------------------------------------------------------------------
def raw_request(url: str, head: str, timeout: float = 5.0) -> tuple[str, float]:
    """Send only a request's head (its Content-Length promises a body that never comes) and read
    the answer: one that comes shows the body was not waited for."""
    parsed = urlparse(url)
    began = time.monotonic()
    with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(65536).decode(errors="replace")
    return answer, time.monotonic() - began


async def test_the_token_is_checked_before_the_body_is_read(family, platform):
    head = ("POST /v1/bindings HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            "Content-Length: 4000\r\n{auth}\r\n")
    for authorization in ("", "Authorization: Bearer not-a-token\r\n"):
        answer, took = await asyncio.to_thread(raw_request, platform["urls"][0], head.format(auth=authorization))
        assert answer.startswith("HTTP/1.1 401") and "application/problem+json" in answer, answer
        assert took < 2
    # A principal over its rate is refused before its body as well.
    token = window_token(clerk(), BAOJI)
    for _ in range(COMMAND_BURST):
        assert (await family.http.post("/v1/bindings", json={}, headers=auth(token))).status_code == 422
    answer, _ = await asyncio.to_thread(raw_request, platform["urls"][0],
                                        head.format(auth=f"Authorization: Bearer {token}\r\n"))
    assert answer.startswith("HTTP/1.1 429") and "retry-after" in answer.lower(), answer


async def test_every_v1_answer_is_no_store_and_nosniff(family):
    someone = await family.person(region=BAOJI)
    token = auth(window_token(clerk(), BAOJI))
    answers = [await family.http.get("/v1/me", headers=token),
               await family.http.get("/v1/me"),
               await family.http.get("/v1/nowhere", headers=token),
               await family.http.get("/v1/persons/12345/bindings", headers=token),
               await family.http.post("/v1/person-lookups", json={"id_number": someone["person_id"]}, headers=token),
               await family.http.post("/v1/sms/inbound", content=b"{}")]
    assert [a.status_code for a in answers] == [200, 401, 404, 422, 200, 404]
    for a in answers:
        assert (a.headers["cache-control"], a.headers["x-content-type-options"]) == ("no-store", "nosniff"), a.url


async def test_the_openapi_page_needs_no_outside_network(family):
    page = await family.http.get("/docs")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text and "<script>" not in page.text
    sources = [part.split('"')[1] for part in page.text.split('src=')[1:]] + \
              [part.split('"')[1] for part in page.text.split('href=')[1:]]
    assert sorted(sources) == ["/docs/assets/favicon.png", "/docs/assets/swagger-ui-bundle.js",
                               "/docs/assets/swagger-ui.css", "/docs/docs.js"]
    for source, kind in zip(sorted(sources), ("image/png", "text/javascript", "text/css", "text/javascript")):
        served = await family.http.get(source)
        assert served.status_code == 200 and served.headers["content-type"].startswith(kind), source
    assert "SwaggerUIBundle" in (await family.http.get("/docs/assets/swagger-ui-bundle.js")).text
    assert "/openapi.json" in (await family.http.get("/docs/docs.js")).text
    assert (await family.http.get("/docs/assets/redoc.standalone.js")).status_code == 404  # only what the page loads


# -- what the gateway writes ------------------------------------------------------------------------
async def test_the_gateways_commands_and_queries_are_signed_with_its_key(family):
    """binding.commands is believed only from the gateway's key (the binding service checks; here
    the signature is checked as any reader would, against the operator's key file)."""
    son, father = await family.person(region=BAOJI), await family.person()
    created = await family.bind(window_token(clerk(), BAOJI), son, father)
    assert created.status_code == 201, created.json()
    sent = await family.bus.watchers[t.BINDING_COMMANDS].wait_for(
        lambda m: son["person_id"].encode() in m.value and body(m)["event_type"] in ("CreateBinding", "QueryPerson"),
        count=2)
    ring = KeyRing.load(DevKeys.from_env().partner_keys_file)
    for record in sent:
        headers = {k: v.decode() for k, v in record.headers}
        signer = verify(record.topic, record.key, record.value, headers, ring.find, china_now())
        assert (headers.get("x-signer"), getattr(signer, "owner", signer)) == ("gateway:k1", "gateway"), signer
