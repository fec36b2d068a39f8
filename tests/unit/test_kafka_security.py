"""What reaches the Kafka client for each security setting (contract version 3, "The broker knows
every client").

SASL/SCRAM has no local peer (Tansu cannot be given a user, platform-notes.md), so the SASL
settings are proved here: the keyword arguments aiokafka's producer, consumer and admin client
are built with, through every path the project builds them (make_broker, ensure_topics' admin
client, the projection gate, `from_env` for the simulator, bench and tests), for each protocol
and mechanism; and the password is never shown (repr, errors, logs). TLS itself runs for real in
tests/integration/test_kafka_tls.py.
"""

from __future__ import annotations

import logging
import ssl

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from shared.catchup import ProjectionGate
from shared.kafka import admin_client, ensure_topics, make_broker
from shared.kafka_security import KafkaSecurity, client_kwargs, from_env
from shared.settings import KafkaClientSettings, ServiceSettings
from tooling.devstack import DevCertificates, Infra, free_port

PASSWORD = "s3cret-Pa55-never-shown"
VARIABLES = ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD",
             "KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Each test says its own settings: nothing inherited from the shell or the session's stack."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> DevCertificates:
    return DevCertificates.create(tmp_path_factory.mktemp("tls"))


def settings(**fields) -> ServiceSettings:
    return ServiceSettings(kafka_bootstrap_servers="broker-1:9093,broker-2:9093", **fields)


def sasl(protocol: str = "SASL_SSL", mechanism: str = "SCRAM-SHA-512", **more) -> ServiceSettings:
    return settings(kafka_security_protocol=protocol, kafka_sasl_mechanism=mechanism,
                    kafka_sasl_username="settlement", kafka_sasl_password=PASSWORD, **more)


def what_aiokafka_got(client) -> dict:
    """The security an aiokafka client was built with (producer, consumer or admin client)."""
    inner = getattr(client, "client", None) or client._client
    return {"security_protocol": inner._security_protocol, "ssl_context": inner._ssl_context,
            "sasl_mechanism": inner._sasl_mechanism if inner._security_protocol.startswith("SASL") else None,
            "sasl_plain_username": inner._sasl_plain_username, "sasl_plain_password": inner._sasl_plain_password}


async def clients_of_make_broker(s: ServiceSettings) -> list:
    """The producer and a consumer FastStream builds for a service's broker (as it does on connect)."""
    broker = make_broker(s, client_id="test")
    return [AIOKafkaProducer(**broker._connection_kwargs), broker.config.broker_config.builder("some.topic")]


async def every_client(s: ServiceSettings) -> list:
    gate = ProjectionGate.of(s, {"some.topic": "some.group"})
    return [*await clients_of_make_broker(s), admin_client(s), AIOKafkaConsumer(**gate._client())]


# -- what reaches aiokafka -----------------------------------------------------------------------

async def test_plaintext_by_default_everywhere():
    for client in await every_client(settings()):
        got = what_aiokafka_got(client)
        assert got["security_protocol"] == "PLAINTEXT" and got["ssl_context"] is None
        assert got["sasl_plain_username"] is None and got["sasl_plain_password"] is None
    assert make_broker(settings(), client_id="test").specification.security is None


# SASL_PLAINTEXT with PLAIN is refused: the password would cross the network as it is (below).
@pytest.mark.parametrize("protocol,mechanism", [("SASL_SSL", "SCRAM-SHA-512"), ("SASL_SSL", "SCRAM-SHA-256"),
                                                ("SASL_SSL", "PLAIN"), ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
                                                ("SASL_PLAINTEXT", "SCRAM-SHA-256")])
async def test_sasl_reaches_every_client_of_a_service(protocol, mechanism):
    for client in await every_client(sasl(protocol, mechanism)):
        got = what_aiokafka_got(client)
        assert got["security_protocol"] == protocol
        assert got["sasl_mechanism"] == mechanism
        assert got["sasl_plain_username"] == "settlement" and got["sasl_plain_password"] == PASSWORD
        assert (got["ssl_context"] is not None) == (protocol == "SASL_SSL")


async def test_the_default_mechanism_is_scram_sha_512():
    assert ServiceSettings().kafka_sasl_mechanism == "SCRAM-SHA-512"
    [producer, *_] = await clients_of_make_broker(settings(kafka_security_protocol="SASL_SSL",
                                                           kafka_sasl_username="u", kafka_sasl_password=PASSWORD))
    assert what_aiokafka_got(producer)["sasl_mechanism"] == "SCRAM-SHA-512"


@pytest.mark.parametrize("mechanism,kind", [("SCRAM-SHA-512", SASLScram512), ("SCRAM-SHA-256", SASLScram256),
                                            ("PLAIN", SASLPlaintext)])
def test_faststream_gets_the_security_object_of_the_mechanism(mechanism, kind):
    security = sasl("SASL_SSL", mechanism).kafka_security().faststream()
    assert type(security) is kind and security.use_ssl and isinstance(security.ssl_context, ssl.SSLContext)
    assert (security.username, security.password) == ("settlement", PASSWORD)
    plain = sasl("SASL_PLAINTEXT", "SCRAM-SHA-256").kafka_security().faststream()
    assert not plain.use_ssl and plain.ssl_context is None
    tls = settings(kafka_security_protocol="SSL").kafka_security().faststream()
    assert type(tls) is BaseSecurity and tls.use_ssl


async def test_tls_checks_the_broker_against_the_ca_file_and_its_host_name(certificates):
    s = settings(kafka_security_protocol="SSL", kafka_ssl_cafile=certificates.ca)
    for client in await every_client(s):
        got = what_aiokafka_got(client)
        context = got["ssl_context"]
        assert got["security_protocol"] == "SSL" and got["sasl_plain_password"] is None
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("organizationName", "family-mutual-aid devstack"),), (("commonName", "devstack CA"),))]


def test_without_a_ca_file_the_systems_cas_are_trusted():
    context = KafkaSecurity(protocol="SSL").ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats() == ssl.create_default_context().cert_store_stats()


def test_mutual_tls_loads_the_client_certificate_with_its_key(certificates, tmp_path):
    security = KafkaSecurity(protocol="SSL", ssl_cafile=certificates.ca, ssl_certfile=certificates.client_cert,
                             ssl_keyfile=certificates.client_key)
    assert isinstance(security.ssl_context(), ssl.SSLContext)
    # the key really is read with the certificate: another key does not fit it
    mismatched = KafkaSecurity(protocol="SSL", ssl_cafile=certificates.ca, ssl_certfile=certificates.client_cert,
                               ssl_keyfile=certificates.server_key)
    with pytest.raises(ssl.SSLError):
        mismatched.ssl_context()


# -- refusals --------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,says", [
    ({"kafka_security_protocol": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"}, "needs KAFKA_SASL_USERNAME"),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_password": PASSWORD}, "needs KAFKA_SASL_USERNAME"),
    ({"kafka_sasl_username": "u", "kafka_sasl_password": PASSWORD}, "does not authenticate with SASL"),
    ({"kafka_security_protocol": "SSL", "kafka_sasl_password": PASSWORD}, "does not authenticate with SASL"),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "u",
      "kafka_sasl_password": PASSWORD}, "sends the password in the clear"),
    ({"kafka_ssl_cafile": "/etc/ca.pem"}, "KAFKA_SSL_CAFILE set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use TLS"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/etc/client.pem"}, "needs both KAFKA_SSL_CERTFILE"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/etc/client.key"}, "needs both KAFKA_SSL_CERTFILE"),
])
def test_combinations_that_cannot_work_are_refused_at_start(fields, says):
    with pytest.raises(ValidationError, match=says) as refused:
        settings(**fields)
    assert PASSWORD not in str(refused.value) and PASSWORD not in repr(refused.value)


@pytest.mark.parametrize("variable,value", [("KAFKA_SECURITY_PROTOCOL", "TLS"), ("KAFKA_SASL_MECHANISM", "GSSAPI")])
def test_unknown_protocols_and_mechanisms_are_refused(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        ServiceSettings()


# -- the password is never shown ----------------------------------------------------------------

def test_the_password_is_not_in_any_printed_form_of_the_settings():
    s = sasl()
    security = s.kafka_security()
    shown = [repr(s), str(s), s.model_dump_json(), repr(s.model_dump()), repr(security), str(security),
             security.describe(), repr(security.client_kwargs()), str(security.client_kwargs()),
             repr(client_kwargs("b:9093", security)), repr(security.faststream())]
    assert not [text for text in shown if PASSWORD in text]
    assert security.describe() == "SASL_SSL, SCRAM-SHA-512 as settlement, CA the system CAs"
    # ...while the client itself gets it as it is
    assert security.client_kwargs()["sasl_plain_password"] == PASSWORD


async def test_the_password_is_not_logged_when_the_broker_cannot_be_reached(caplog):
    """Every client path of a service trying a broker that is not there, logging at DEBUG."""
    s = sasl("SASL_PLAINTEXT").model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").info("settings %s, security %s", s, s.kafka_security().client_kwargs())
    with pytest.raises(Exception):
        await ensure_topics(s, ["some.topic"])
    broker = make_broker(s, client_id="test")
    with pytest.raises(Exception):
        await broker.start()
    await broker.stop()
    tried = [r for r in caplog.records if r.name.startswith(("aiokafka", "test.kafka"))]
    assert tried, "the clients logged nothing: the check would prove nothing"
    assert PASSWORD not in caplog.text


# -- clients that are not services ---------------------------------------------------------------

def test_from_env_reads_the_variables_a_service_reads(monkeypatch, certificates):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "simulator")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(certificates.ca))
    security = from_env()
    assert security == ServiceSettings().kafka_security() == KafkaClientSettings().kafka_security()
    got = client_kwargs("127.0.0.1:9093", linger_ms=5)  # the simulator's and the bench's way
    assert got["bootstrap_servers"] == "127.0.0.1:9093" and got["linger_ms"] == 5
    assert (got["security_protocol"], got["sasl_mechanism"], got["sasl_plain_username"],
            got["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-256", "simulator", PASSWORD)
    assert got["ssl_context"].get_ca_certs()


def test_from_env_is_plaintext_when_nothing_is_set():
    assert client_kwargs("127.0.0.1:9092") == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


def test_empty_variables_mean_unset(monkeypatch):
    for name in VARIABLES[2:]:
        monkeypatch.setenv(name, "")
    assert from_env() == KafkaSecurity()


def test_a_security_passed_to_a_child_process_reads_back_the_same(monkeypatch, certificates):
    """Infra.env() hands the broker's security to services and the simulator as variables; every
    variable is written, empty when unset, so none left in the parent's environment adds to it."""
    security = KafkaSecurity(protocol="SSL", ssl_cafile=certificates.ca, ssl_certfile=certificates.client_cert,
                             ssl_keyfile=certificates.client_key)
    env = Infra("127.0.0.1:1", "redis://127.0.0.1:2/0", False, "test", security=security).env()
    assert set(VARIABLES) <= set(env)
    for name in VARIABLES:
        monkeypatch.setenv(name, env[name])
    assert from_env() == security
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "left over")  # then a child gets the empty value over it
    for name, value in KafkaSecurity().env().items():
        monkeypatch.setenv(name, value)
    assert from_env() == KafkaSecurity()


def test_an_infra_gives_in_process_clients_its_security(certificates):
    security = KafkaSecurity(protocol="SSL", ssl_cafile=certificates.ca)
    infra = Infra("127.0.0.1:1", "redis://127.0.0.1:2/0", False, "test", security=security)
    assert infra.settings(kafka_topic_partitions=3).kafka_security() == security
    assert infra.settings().kafka_topic_partitions == 6
    got = infra.kafka_client(enable_auto_commit=False)
    assert got["security_protocol"] == "SSL" and got["enable_auto_commit"] is False
