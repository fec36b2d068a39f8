"""The session's platform: binding, settlement and notify as processes, started once and shared by
every test module that uses them with the standard settings; a module that needs other settings
has the services to itself while it runs (`Platform.alone`), then the standard ones come back.

At most one process of each service runs at a time: two would share a consumer group (or, in
groups of their own, both handle every message and both write the one Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis.asyncio import Redis

from services.settlement.storage.accounts import SettlementStore
from tooling.devstack import Infra, LocalRedis, free_port
from tests.ledger_calls import HOSPITAL, XIAN, make_store
from tests.partners.hospital import Counter
from tests.partners.town import Town, town_notify_env
from tests.support import ServiceProcess, SmsGateway, sms_gateway_env

STANDARD = ("binding", "settlement", "notify")


class Platform:
    """The session's service processes, each started with the settings last asked for and kept
    running while the next module asks for the same."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._running: dict[str, ServiceProcess] = {}
        self._starts = 0

    def serve(self, names: tuple[str, ...], env: dict[str, str]) -> dict[str, ServiceProcess]:
        """The named services running with `env`; one running with other settings is restarted."""
        for name in names:
            current = self._running.get(name)
            if current is not None and (current.env != env or current.process is None
                                        or current.process.poll() is not None):
                current.stop()
                del self._running[name]
            if name not in self._running:
                self._starts += 1
                service = ServiceProcess(name, env, self._log_dir / f"{name}-{self._starts}.log")
                service.start()
                self._running[name] = service
        return {name: self._running[name] for name in names}

    @contextmanager
    def alone(self, names: tuple[str, ...], env: dict[str, str]) -> Iterator[dict[str, ServiceProcess]]:
        """Only the named services, with `env`, for as long as the block runs (a module's own
        settings); nothing of the platform runs after it until a module asks again."""
        self.stop(*(set(self._running) - set(names)))
        try:
            yield self.serve(names, env)
        finally:
            self.stop(*names)

    def stop(self, *names: str) -> None:
        for name in names or tuple(self._running):
            service = self._running.pop(name, None)
            if service is not None:
                service.stop()


@pytest.fixture(scope="session")
def platform_pool(tmp_path_factory) -> Iterator[Platform]:
    platform = Platform(tmp_path_factory.mktemp("platform"))
    yield platform
    platform.stop()


@pytest.fixture(scope="session")
def sms_gateway() -> Iterator[SmsGateway]:
    """The SMS gateway notify sends through on the standard platform: it records every request."""
    gateway = SmsGateway()
    yield gateway
    gateway.server.shutdown()


def standard_env(infra: Infra, gateway: SmsGateway) -> dict[str, str]:
    """The standard platform's settings: notify sends through the session's SMS gateway at any
    hour and looks for expired deliveries every second."""
    return sms_gateway_env(infra, gateway) | {"NOTIFY_EXPIRY_CHECK_SECONDS": "1"}


@pytest.fixture(scope="module")
def standard_platform(infra, sms_gateway, platform_pool) -> dict[str, ServiceProcess]:
    """Binding, settlement and notify with the standard settings (started by the first module
    that asks, restarted only after a module that had other settings)."""
    return platform_pool.serve(STANDARD, standard_env(infra, sms_gateway))


@pytest.fixture(scope="module")
def services(standard_platform) -> dict[str, ServiceProcess]:
    """The standard platform's processes by name; a module with other settings overrides this."""
    return standard_platform


@pytest.fixture(scope="module")
def binding_service(standard_platform) -> ServiceProcess:
    return standard_platform["binding"]


@pytest.fixture
async def counter(bus, clean_redis, services) -> Counter:
    """A hospital's HIS and the window on the module's `services` (standard unless it has its own)."""
    counter = Counter(bus, clean_redis)
    await counter.hospital()
    return counter


@pytest.fixture(scope="module")
def notify(infra, platform_pool) -> Iterator[ServiceProcess]:
    """Notify alone, with its sink, in a consumer group of its own: every dead letter and every
    command on the topics it reads is notify's (binding's events are published by the tests)."""
    port = free_port()
    with platform_pool.alone(("notify",), town_notify_env(infra, port)) as services:
        services["notify"].metrics_url = f"http://127.0.0.1:{port}/metrics"
        yield services["notify"]


@pytest.fixture
async def town(bus, clean_redis, notify) -> Town:
    town = Town(bus, clean_redis, notify)
    await town.institution()
    return town


# -- The settlement Functions called directly, on a Valkey of their own -------------------------

@pytest.fixture(scope="session")
def valkey(tmp_path_factory) -> Iterator[LocalRedis]:
    """A private Valkey for the tests that call the settlement Functions directly (no service
    reads it), shared by every such module."""
    server = LocalRedis(free_port(), tmp_path_factory.mktemp("settlement-valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def client(valkey) -> Iterator[Redis]:
    client = Redis.from_url(valkey.url)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
async def store(client) -> SettlementStore:
    store = make_store(client)
    await store.load_functions()
    return store


@pytest.fixture
async def clean_store(client, store) -> None:
    """The private Valkey emptied (FUNCTION libraries survive FLUSHDB), Xi'an's hospital registered."""
    await client.flushdb()
    await store.register_institutions([(HOSPITAL, XIAN, "hospital")])


@pytest.fixture(scope="module", autouse=True)
def _platform_for_module(request, platform_pool):
    """A module that reaches the session's broker or Redis without the standard platform starts
    its own processes or none: the platform's must not run beside them."""
    items = [i for i in request.session.items if i.module is request.module]
    if any("infra" in i.fixturenames for i in items) and not any("standard_platform" in i.fixturenames
                                                                  for i in items):
        platform_pool.stop()


def pytest_collection_modifyitems(session, config, items):
    """Modules on the standard platform first, so it starts once; otherwise the order of files.
    Only this directory's tests move, within the places they hold among all collected."""
    here = Path(__file__).parent
    slots = [n for n, item in enumerate(items) if here in Path(item.fspath).parents]
    modules: dict = {}
    for n in slots:
        modules.setdefault(items[n].module, []).append(items[n])
    ordered = sorted(modules.values(), key=lambda group: not any("standard_platform" in i.fixturenames
                                                                  for i in group))
    for n, item in zip(slots, [item for group in ordered for item in group]):
        items[n] = item
