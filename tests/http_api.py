"""The gateway's HTTP API as the app and the service window reach it in tests: the development
issuers every test gateway believes, gateways started as deployed, and the family that calls
them (the bureau registering people on the bus, the app and the window over HTTP)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import httpx

from shared import topics as t
from shared.envelope import seal
from tooling.devkeys import DevIssuers
from tooling.devstack import free_port
from tests.support import ServiceProcess, body, china_today, payload_of, person_registered, wait_registered

ISSUERS = DevIssuers.generate()  # the app's issuer and the windows' sign-on, believed by every gateway here
SIGNATURE = "sha256:" + hashlib.sha256(b"signed commitment").hexdigest()
HOSPITAL, HOSPITAL_REGION = "H610300-GW", "610300"
PROBLEM = "application/problem+json"


# Tests poll the API as fast as they like; the rate limit has gateways of its own (test_gateway_access.py).
UNLIMITED = {"GATEWAY_LOOKUP_RATE_PER_MINUTE": "1000000", "GATEWAY_LOOKUP_BURST": "100000",
             "GATEWAY_COMMAND_RATE_PER_MINUTE": "1000000", "GATEWAY_COMMAND_BURST": "100000"}


def gateway_env(infra, log_dir, **env: str) -> dict[str, str]:
    """A gateway's environment: the issuers file, a reply topic and an audit projection group of
    its own (GATEWAY_GROUP_ID: every gateway of the session projects gateway.audit into the same
    Redis, idempotently, and no test module's gateways wait on a group another module's gateways
    have just left), its public and operator ports."""
    instance = f"tests-{uuid.uuid4().hex[:8]}"
    return {**infra.env(), **ISSUERS.write(log_dir / "issuers").env(), "LOG_LEVEL": "INFO",
            "HTTP_PORT": str(free_port()), "ADMIN_PORT": str(free_port()), "GATEWAY_INSTANCE": instance,
            "GATEWAY_GROUP_ID": instance, **UNLIMITED, **env}


def gateway_process(infra, log_dir, **env: str) -> tuple[ServiceProcess, str]:
    """A gateway as deployed (see gateway_env); its operator URL is `process.admin_url`."""
    settings = gateway_env(infra, log_dir, **env)
    process = ServiceProcess("gateway", settings, log_dir / f"gateway-{settings['HTTP_PORT']}.log")
    process.admin_url = f"http://127.0.0.1:{settings['ADMIN_PORT']}"  # type: ignore[attr-defined]
    return process, f"http://127.0.0.1:{settings['HTTP_PORT']}"


class Family:
    """The bureaus register people; the app and the window reach the platform over HTTP."""

    def __init__(self, bus, redis, http: httpx.AsyncClient, impatient: httpx.AsyncClient) -> None:
        self.bus, self.redis, self.http, self.impatient = bus, redis, http, impatient

    async def person(self, region="610100", scheme="employee", balance="0.00") -> dict:
        p = person_registered(region, scheme, balance)
        await self.bus.send(t.BUREAU_ACCOUNTS, seal("PersonRegistered", p), key=p["person_id"])
        await wait_registered(self.redis, [p["person_id"]], timeout=30)
        return p

    @staticmethod
    def form(grantor, beneficiary, relation="father", order=1, **overrides) -> dict:
        today = china_today()

        def party(p):
            return {k: v for k, v in {"id_number": p["person_id"], "name": p["name"], "region": p["region"],
                                      "phone": p.get("phone"), "employer": p.get("employer"),
                                      "community": p.get("community")}.items() if v is not None}
        return {"grantor": party(grantor), "beneficiary": party(beneficiary), "relation": relation,
                "payment_order": order, "start_date": today.isoformat(),
                "end_date": (today + timedelta(days=365)).isoformat(), "notice_accepted": True,
                "signature_digest": SIGNATURE} | overrides

    async def bind(self, token, grantor, beneficiary, **kw) -> httpx.Response:
        return await self.http.post("/v1/bindings", json=self.form(grantor, beneficiary, **kw), headers=auth(token))

    async def audited(self, command_id) -> dict:
        [record] = await self.bus.watchers[t.GATEWAY_AUDIT].wait_for(
            lambda r: payload_of(r).get("command_id") == command_id, timeout=30)
        return body(record)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def app_token(person) -> str:
    return ISSUERS.mint("app", person_id=person["person_id"])


def window_token(clerk: str, region: str = "610300", role: str = "window") -> str:
    return ISSUERS.mint(role, clerk_id=clerk, region=region)  # type: ignore[arg-type]


WINDOW = window_token("clerk-007")  # a clerk of Baoji (610300): acts for Baoji's grantors


def is_problem(r: httpx.Response, status: int, reason: str | None = None) -> bool:
    data = r.json()
    assert r.status_code == status, (r.status_code, data)
    assert r.headers["content-type"].startswith(PROBLEM), r.headers["content-type"]
    assert {"type", "title", "status", "detail"} <= set(data) and data["status"] == status
    if reason:
        assert data["reason_code"] == reason and data["message_zh"] and data["message_en"], data
    return True
