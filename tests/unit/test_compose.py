"""Static checks of the deployment file ``docker-compose.yml``.

No Docker engine is needed: the file is only read and parsed. ``compose_spec``
is a declared dev dependency, so it is imported unconditionally -- if it is
missing, collection of this module fails instead of silently skipping.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
# Each app service's HTTP port (its /healthz, /readyz, /metrics; the gateway's API too): the
# defaults docs/operations.md gives, published on 127.0.0.1 only.
HTTP_PORTS = {"gateway": 8080, "binding": 8081, "settlement": 8082, "notify": 8083}
APP_SERVICES = tuple(HTTP_PORTS)


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def services(compose_text: str) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(compose_text)
    assert isinstance(document, dict), "docker-compose.yml must be a mapping"
    found = document.get("services")
    assert isinstance(found, dict) and found, "docker-compose.yml defines no services"
    return found


def _as_list(value: Any) -> list[str]:
    """Normalise a compose command / entrypoint (string or list) to a list."""
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [str(item) for item in value]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """Normalise ``environment`` (mapping or ``KEY=VALUE`` list) to a dict."""
    env = service.get("environment") or {}
    if isinstance(env, dict):
        return {str(k): "" if v is None else str(v) for k, v in env.items()}
    result: dict[str, str] = {}
    for item in env:
        key, _, value = str(item).partition("=")
        result[key] = value
    return result


def _depends_on(service: dict[str, Any]) -> list[str]:
    deps = service.get("depends_on") or []
    return list(deps.keys()) if isinstance(deps, dict) else [str(d) for d in deps]


def test_compose_file_is_valid_according_to_the_compose_specification(
    compose_text: str,
) -> None:
    PyCompose.from_yaml(compose_text).validate()


def test_every_depends_on_target_is_a_defined_service(
    services: dict[str, dict[str, Any]],
) -> None:
    undefined = {
        name: target
        for name, service in services.items()
        for target in _depends_on(service)
        if target not in services
    }
    assert not undefined, f"depends_on names undefined services: {undefined}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_runs_its_own_python_module(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    assert name in services, f"service {name!r} is missing"
    command = " ".join(_as_list(services[name].get("command")))
    assert f"python -m services.{name}" in command


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_waits_for_healthy_kafka_and_redis(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    deps = services[name].get("depends_on")
    assert isinstance(deps, dict), "depends_on must use the long (condition) form"
    for target in ("kafka", "redis"):
        assert deps.get(target, {}).get("condition") == "service_healthy"


def test_kafka_is_the_official_apache_image_in_kraft_mode(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    assert str(kafka.get("image", "")).startswith("apache/kafka:")
    roles = _environment(kafka).get("KAFKA_PROCESS_ROLES", "").split(",")
    assert "controller" in roles and "broker" in roles


def test_redis_runs_with_append_only_persistence(
    services: dict[str, dict[str, Any]],
) -> None:
    command = _as_list(services["redis"].get("command"))
    assert "--appendonly" in command
    assert command[command.index("--appendonly") + 1] == "yes"


def test_redis_fsyncs_every_write_before_answering(
    services: dict[str, dict[str, Any]],
) -> None:
    # Balances live in this Redis: an acknowledged debit must survive a host crash.
    command = _as_list(services["redis"].get("command"))
    assert command.count("--appendfsync") == 1, command
    assert command[command.index("--appendfsync") + 1] == "always"


def test_redis_is_a_primary_with_a_replica_on_its_own_disk_watched_by_three_sentinels(services):
    replica = _as_list(services["redis-replica"].get("command"))
    assert replica[replica.index("--replicaof") + 1:replica.index("--replicaof") + 3] == ["redis", "6379"]
    assert replica[replica.index("--appendfsync") + 1] == "always"
    assert services["redis-replica"]["volumes"] != services["redis"]["volumes"]
    sentinels = [name for name in services if name.startswith("redis-sentinel-")]
    assert len(sentinels) == 3
    for name in sentinels:
        script = " ".join(_as_list(services[name]["command"]))
        assert "sentinel monitor fma redis 6379 2" in script and "--sentinel" in script


@pytest.mark.parametrize("name", APP_SERVICES)
def test_services_find_the_primary_through_the_sentinels(services, name):
    env = _environment(services[name])
    hosts = {h.split(":")[0] for h in env["REDIS_SENTINELS"].split(",")}
    assert hosts == {n for n in services if n.startswith("redis-sentinel-")}
    assert env["REDIS_SENTINEL_SERVICE"] == "fma"


def test_settlement_acknowledges_nothing_the_replica_lacks(services):
    assert _environment(services["settlement"])["REDIS_MIN_REPLICAS"] == "1"


def test_no_published_port_uses_variable_interpolation(
    services: dict[str, dict[str, Any]],
) -> None:
    offenders = [
        f"{name}: {port}"
        for name, service in services.items()
        for port in service.get("ports") or []
        if "${" in str(port)  # str() also covers the long (mapping) syntax
    ]
    assert not offenders, f"ports must be literal: {offenders}"


def test_every_service_in_the_source_tree_is_deployed(services: dict[str, dict[str, Any]]) -> None:
    runnable = {p.parent.name for p in (ROOT / "services").glob("*/__main__.py")}
    assert runnable <= set(APP_SERVICES), f"services without a port here: {runnable - set(APP_SERVICES)}"
    assert runnable <= set(services), f"services/ has {runnable - set(services)}, docker-compose.yml does not"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_publishes_its_http_port_on_localhost_only(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    port = HTTP_PORTS[name]
    env = _environment(services[name])
    assert env.get("HTTP_PORT") == str(port)
    # Inside the container it listens on every interface; the host publishes it on loopback only.
    assert env.get("HTTP_HOST") == "0.0.0.0"
    published = [f"127.0.0.1:{port}:{port}"] + (["127.0.0.1:8090:8090"] if name == "gateway" else [])  # + its operator port
    assert [str(p) for p in services[name].get("ports") or []] == published


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_service_is_healthy_only_when_its_http_probe_answers(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    check = services[name].get("healthcheck")
    assert isinstance(check, dict), f"{name} has no healthcheck"
    test = _as_list(check.get("test"))
    # The slim image has no curl: Python's urllib raises on a 503 or no answer, failing the check.
    assert test[:3] == ["CMD", "python", "-c"], test
    url = f"http://127.0.0.1:{HTTP_PORTS[name]}/"
    assert "urllib.request.urlopen" in test[3]
    assert f"{url}readyz" in test[3] or f"{url}healthz" in test[3], test[3]
    for key in ("interval", "timeout", "retries", "start_period"):
        assert key in check, f"{name} healthcheck lacks {key}"


def test_gateway_believes_the_operators_token_issuers_and_holds_no_shared_token_key(
    services: dict[str, dict[str, Any]],
) -> None:
    """Contract version 3: public keys of listed issuers (a file mounted read-only), no HMAC secret."""
    assert "gateway" in services
    env = _environment(services["gateway"])
    path = env.get("GATEWAY_TOKEN_ISSUERS", "")
    assert any(str(v).endswith(f":{path}:ro") for v in services["gateway"].get("volumes", [])), path
    assert all("GATEWAY_JWT_KEY" not in _environment(service) for service in services.values())
    assert "127.0.0.1:8090:8090" in services["gateway"]["ports"]  # the operator port, on the host's loopback


def test_secrets_are_never_written_in_the_file(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        env = _environment(service)
        for var in ("NAME_DIGEST_KEY", "SMS_ACCESS_KEY_SECRET"):
            if var in env:
                assert env[var].startswith(f"${{{var}:?"), f"{name}: {var} must come from the environment"


# -- broker security (contract version 3: the broker knows every client) ---------------------------

SCRAM_USERS = ("admin", *APP_SERVICES)


def _format_properties(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The properties kafka-format writes before `kafka-storage format` (its heredoc)."""
    script = services["kafka-format"]["command"][0]
    body = script.split("<<EOF\n", 1)[1].split("\nEOF\n", 1)[0]
    return dict(line.split("=", 1) for line in body.splitlines())


def _broker_properties(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The kafka service's KAFKA_* variables as the apache/kafka image turns them into properties
    (KAFKA_ dropped, ___ to -, __ to _, _ to ., lower case)."""
    return {name.removeprefix("KAFKA_").replace("___", "-").replace("__", "\0").replace("_", ".")
            .replace("\0", "_").lower(): value
            for name, value in _environment(services["kafka"]).items() if name.startswith("KAFKA_")}


def test_kafka_lets_in_only_scram_logins_and_allows_only_what_an_acl_grants(services):
    props = _broker_properties(services)
    protocols = dict(pair.split(":") for pair in props["listener.security.protocol.map"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}, "no listener without a login"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert props["super.users"] == "User:admin"
    # the controller listener: the container's loopback only, the admin's login
    assert "CONTROLLER://localhost:9093" in props["listeners"].split(",")
    assert 'username="admin"' in props["listener.name.controller.plain.sasl.jaas.config"]
    assert props["listener.name.client.scram-sha-512.sasl.jaas.config"].startswith(
        "org.apache.kafka.common.security.scram.ScramLoginModule required")


def test_the_storage_is_formatted_with_the_brokers_own_listeners_and_a_scram_user_each(services):
    formatted, broker = _format_properties(services), _broker_properties(services)
    for key, value in formatted.items():
        assert broker.get(key) == value, f"kafka-format's {key}={value}, the broker's {broker.get(key)}"
    script = services["kafka-format"]["command"][0]
    assert re.findall(r'scram (\w+) "\$\$(\w+)_PASSWORD"', script) == [(u, u.upper()) for u in SCRAM_USERS]
    assert _environment(services["kafka-format"])["CLUSTER_ID"] == _environment(services["kafka"])["CLUSTER_ID"]
    assert "--ignore-formatted" in script
    assert _depends_on(services["kafka"]) == ["kafka-format"]
    assert services["kafka"]["depends_on"]["kafka-format"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_service_logs_in_as_its_own_principal_with_a_password_from_the_environment(services, name):
    env = _environment(services[name])
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT" and env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["KAFKA_SASL_USERNAME"] == name
    password = env["KAFKA_SASL_PASSWORD"]
    assert password.startswith(f"${{KAFKA_{name.upper()}_PASSWORD:?") and password.endswith("}"), password
    # what the service's settings make of it (with a password in place of the variable)
    from shared.settings import ServiceSettings

    # Only what compose gives: the test session's own broker settings (TLS to the local stack, in
    # this process's environment once an integration fixture ran) must not leak in.
    no_tls = {"kafka_ssl_cafile": None, "kafka_ssl_certfile": None, "kafka_ssl_keyfile": None}
    security = ServiceSettings(**{k.lower(): v for k, v in env.items() if k.startswith("KAFKA_SASL_")
                                  or k == "KAFKA_SECURITY_PROTOCOL"} | no_tls
                               | {"kafka_sasl_password": "x" * 32}).kafka_security()
    assert security.client_kwargs()["sasl_plain_username"] == name


@pytest.mark.parametrize("name", APP_SERVICES)
def test_services_start_once_their_acls_are_in_place(services, name):
    deps = services[name]["depends_on"]
    assert deps["kafka-acls"]["condition"] == "service_completed_successfully"
    acls = services["kafka-acls"]
    assert acls["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "/opt/platform/kafka-acls.sh platform" in " ".join(_as_list(acls["command"]))
    [mount] = acls["volumes"]
    script = ROOT / mount.split(":")[0]
    assert script.is_file() and script.stat().st_mode & 0o111, f"{script} must exist and be executable"


def test_the_broker_health_check_logs_in_as_the_admin(services):
    test = " ".join(_as_list(services["kafka"]["healthcheck"]["test"]))
    assert "kafka-broker-api-versions.sh" in test and "--command-config" in test and "SCRAM-SHA-512" in test


def test_no_kafka_password_is_written_in_the_file(services):
    for name, service in services.items():
        for var, value in _environment(service).items():
            if var.endswith("PASSWORD"):
                assert value.startswith("${KAFKA_") and ":?" in value, f"{name}: {var} must come from the environment"
            if "JAAS_CONFIG" in var:
                for secret in re.findall(r'(?:password|user_admin)="([^"]*)"', value):
                    assert secret.startswith("${KAFKA_ADMIN_PASSWORD:?"), f"{name}: {var} holds a password"
