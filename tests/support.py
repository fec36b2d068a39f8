"""Test helpers: a real Kafka client that publishes envelopes and watches topics, service
processes started as production starts them, and builders of valid contract messages."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from datetime import date
from itertools import count
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared import envelope
from shared.identity import make_id_number
from shared.kafka_security import KafkaSecurity, client_kwargs
from shared.signing import SigningKey
from tooling.devkeys import DevKeys
from tooling.devstack import die_with_parent, free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
# The binding service has no default NAME_DIGEST_KEY: one random key per test session, so every
# binding process of the session digests names alike (a test may name its own).
NAME_DIGEST_KEY = secrets.token_hex(32)
_seq = count(int(time.time()) % 700)

def new_person_id(region: str = "610100") -> str:
    """A valid, unique resident ID number, so tests never see each other's people."""
    n = next(_seq)
    return make_id_number(region[:4] + "02", date(1950 + n % 50, 1 + n % 12, 1 + n % 28), (n * 7919) % 1000)

def china_today() -> date:
    """Today in Shaanxi, as the services see it: never the host's time zone."""
    return envelope.china_today()

def command(event_type: str, payload: dict[str, Any], event_id: str | None = None) -> bytes:
    return envelope.seal(event_type, payload, event_id=event_id or str(uuid.uuid4()))

class Watcher:
    """Reads every partition of some topics from the beginning, without a consumer group (no
    rebalance wait), and lets a test wait for the record it expects."""

    def __init__(self, bootstrap: str, topics: list[str], security: KafkaSecurity | None = None) -> None:
        # security: the broker's (Infra.security); by default the environment's (from_env)
        self._consumer = AIOKafkaConsumer(**client_kwargs(bootstrap, security, enable_auto_commit=False))
        self._topics = topics
        self.records: list[Any] = []
        self._next: dict[TopicPartition, int] = {}  # the offset after the last record read, per partition
        self._changed = asyncio.Condition()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self._consumer.start()
        partitions = []
        for topic in self._topics:
            for p in self._consumer.partitions_for_topic(topic) or await self._partitions(topic):
                partitions.append(TopicPartition(topic, p))
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._pump())

    async def _partitions(self, topic: str) -> set[int]:
        await self._consumer._client.force_metadata_update()  # topic created just before
        return self._consumer.partitions_for_topic(topic) or set()

    async def _pump(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            if batch:
                async with self._changed:
                    for tp, records in batch.items():
                        self.records.extend(records)
                        self._next[tp] = records[-1].offset + 1
                    self._changed.notify_all()

    async def wait_for(self, match: Callable[[Any], bool], timeout: float = 60.0, count: int = 1) -> list[Any]:
        """The first `count` records that match, waiting up to `timeout` seconds for them."""
        async def enough() -> list[Any]:
            async with self._changed:
                while len(found := self.matching(match)) < count:
                    await self._changed.wait()
                return found[:count]
        return await asyncio.wait_for(enough(), timeout)

    async def caught_up(self, timeout: float = 60.0) -> None:
        """Until every record its topics hold now has been read: what was published before this
        call is in `records` after it, on every partition alike."""
        ends = await self._consumer.end_offsets(list(self._consumer.assignment()))

        async def read_all() -> None:
            async with self._changed:
                while any(self._next.get(tp, 0) < end for tp, end in ends.items()):
                    await self._changed.wait()
        await asyncio.wait_for(read_all(), timeout)

    def matching(self, match: Callable[[Any], bool]) -> list[Any]:
        """The records `match` accepts. The topics are shared by the whole session, and some tests
        publish records that are not JSON on purpose: a record `match` cannot read is not a match."""
        def matches(record: Any) -> bool:
            try:
                return match(record)
            except (ValueError, KeyError, TypeError, AttributeError):
                return False
        return [r for r in self.records if matches(r)]

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self._consumer.stop()

class TopicView:
    """One topic of a Watcher that reads many (one consumer for all: fewer fetch sessions)."""

    def __init__(self, watcher: Watcher, topic: str) -> None:
        self._watcher, self._topic = watcher, topic

    async def wait_for(self, match: Callable[[Any], bool], timeout: float = 60.0, count: int = 1) -> list[Any]:
        return await self._watcher.wait_for(lambda r: r.topic == self._topic and match(r), timeout, count)

    def matching(self, match: Callable[[Any], bool]) -> list[Any]:
        return self._watcher.matching(lambda r: r.topic == self._topic and match(r))

def body(record: Any) -> dict[str, Any]:
    return json.loads(record.value)

def payload_of(record: Any) -> dict[str, Any]:
    return body(record)["payload"]

def own_stack(work_dir: Path, **options: Any) -> Any:
    """A broker and Redis of a test module's own (tooling.devstack.start_local) that believes the
    session's partners: its development keys are the session's, or become the session's when the
    module runs first (DEV_KEYS_DIR in this process's environment either way)."""
    from tooling.devstack import start_local

    infra = start_local(work_dir, **options)
    os.environ.update(infra.keys.env())
    return infra


AUTO = "auto"
# Partner topics and who signs them by default (contract version 3).
_HIS_TOPICS = frozenset({"his.charges", "his.reconciliation"})
_BUREAU_TOPICS = frozenset({"bureau.accounts", "bureau.institutions", "bureau.disputes"})
_GATEWAY_TOPICS = frozenset({"binding.commands", "sms.uplink"})


def dev_keys() -> DevKeys:
    """The session's development keys (the infra fixture puts DEV_KEYS_DIR in the environment)."""
    return DevKeys.from_env()


def signed_as(topic: str, value: bytes) -> SigningKey | None:
    """The partner a message speaks for, by its topic and payload: the institution of a HIS
    message, the bureau of a bureau message's region, the gateway for binding.commands and
    sms.uplink; None (unsigned) for other topics and for bytes that name nobody."""
    if topic in _GATEWAY_TOPICS:
        return dev_keys().gateway()
    if topic not in _HIS_TOPICS | _BUREAU_TOPICS:
        return None
    try:
        p = json.loads(value)["payload"]
        who = p["institution_code"] if topic in _HIS_TOPICS else p["region"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(who, str) or not who:
        return None
    try:
        return dev_keys().institution(who) if topic in _HIS_TOPICS else dev_keys().bureau(who)
    except (OSError, ValueError):
        return None  # a region nobody has a key for: sent unsigned


def signed_headers(topic: str, key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
    """Kafka headers of a message signed as the partner it speaks for (`signed_as`), for tests
    that publish with a producer of their own."""
    signer = signed_as(topic, value)
    return [(k, v.encode()) for k, v in signer.headers(topic, key, value).items()] if signer else []


class SigningProducer(AIOKafkaProducer):
    """An aiokafka producer that signs what it sends as the partner it speaks for, unless the
    caller gives headers of its own: a HIS, a bureau or the gateway as tests play them."""

    async def send(self, topic, value=None, key=None, partition=None, timestamp_ms=None, headers=None):
        if headers is None and value is not None:
            headers = signed_headers(topic, key, value)
        return await super().send(topic, value, key=key, partition=partition, timestamp_ms=timestamp_ms,
                                  headers=headers)


class Bus:
    """Publishes like a partner does and watches the platform's outcome topics."""

    def __init__(self, bootstrap: str, security: KafkaSecurity | None = None) -> None:
        self.bootstrap, self.security = bootstrap, security
        self._producer = AIOKafkaProducer(**client_kwargs(bootstrap, security))
        self._watcher: Watcher | None = None
        self.watchers: dict[str, TopicView] = {}

    async def start(self, topics: list[str]) -> None:
        await self._producer.start()
        self._watcher = Watcher(self.bootstrap, topics, self.security)
        await self._watcher.start()
        self.watchers = {topic: TopicView(self._watcher, topic) for topic in topics}

    async def send(self, topic: str, value: bytes, key: str | None = None,
                   headers: dict[str, str] | None = None, signer: SigningKey | None | str = AUTO) -> None:
        """Publish as a partner does: signed by the partner the message speaks for (`signed_as`),
        unless the test names another key (`signer`) or none (`signer=None`: unsigned)."""
        raw_key = key.encode() if key else None
        chosen = signed_as(topic, value) if signer == AUTO else signer
        if chosen is not None:
            headers = chosen.headers(topic, raw_key, value) | (headers or {})
        await self._producer.send_and_wait(
            topic, value, key=raw_key, headers=[(k, v.encode()) for k, v in (headers or {}).items()])

    async def caught_up(self, timeout: float = 60.0) -> None:
        """Until the watchers have read everything published so far, on every partition."""
        assert self._watcher is not None
        await self._watcher.caught_up(timeout)

    async def stop(self) -> None:
        if self._watcher:
            await self._watcher.stop()
        await self._producer.stop()

class ServiceProcess:
    """`python -m services.<name>` in its own process, as production runs it."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name, self.env, self.log_path = name, env, log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        # A free HTTP port of its own unless the test names one: two instances of a service, or
        # two test sessions on one machine, would otherwise both want the service's default port.
        env = {"NAME_DIGEST_KEY": NAME_DIGEST_KEY, **os.environ, "HTTP_PORT": str(free_port()), **self.env}
        self.http_port = int(env["HTTP_PORT"])  # /healthz, /readyz, /metrics
        if env.get("DEV_KEYS_DIR") and "SIGNING_KEY_ID" not in self.env:  # each service signs with its own key
            env |= DevKeys(Path(env["DEV_KEYS_DIR"])).service_env(self.name)
        self.process = subprocess.Popen([sys.executable, "-m", f"services.{self.name}"], cwd=ROOT,
                                        env=env,
                                        stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        log.close()
        marker = f"service ready: {self.name}".encode()
        deadline = time.monotonic() + timeout
        while marker not in self.log_path.read_bytes()[offset:]:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready in {timeout}s:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.process)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def running(names: tuple[str, ...], env: dict[str, str], log_dir: Path) -> Iterator[dict[str, ServiceProcess]]:
    """The named services started in order, each ready before the next; all stopped after."""
    services = {name: ServiceProcess(name, env, log_dir / f"{name}.log") for name in names}
    try:
        for s in services.values():
            s.start()
        yield services
    finally:
        for s in services.values():
            s.stop()


# -- Helpers of the fault and fuzz tests (appended; nothing above changes behaviour) -----------

def pause(service: ServiceProcess) -> None:
    """SIGSTOP: the process stays alive but answers nothing (no heartbeat, no commit)."""
    assert service.process is not None and service.process.poll() is None, f"{service.name} is not running"
    os.kill(service.process.pid, signal.SIGSTOP)


def resume(service: ServiceProcess) -> None:
    assert service.process is not None
    os.kill(service.process.pid, signal.SIGCONT)


async def eventually(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `check` (a function, or one returning an awaitable) until it returns something
    truthy, and return that; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(interval)  # polling interval of a condition with a deadline


async def handled(bus: Bus, group: str, record: Any, timeout: float = 60.0) -> None:
    """Until consumer group `group` has committed past `record` (a record the bus's watchers
    read), then until the watchers have read every topic up to where it ends then.

    The platform's subscribers commit only after the handler returned, its outcomes published
    (shared.kafka.consumer_options: NACK_ON_ERROR), and the SMS gateway or sink reached before
    that. So after this, "nothing came of `record`" is a statement about a record the service
    has handled, not one it has yet to reach: the positive signal a negative assertion needs."""
    tp = TopicPartition(record.topic, record.partition)
    reader = AIOKafkaConsumer(**client_kwargs(bus.bootstrap, bus.security, group_id=group,
                                              enable_auto_commit=False))
    await reader.start()  # never subscribes, so never joins the group: it only reads its offsets
    try:
        async def past() -> bool:
            return (await reader.committed(tp) or 0) > record.offset
        await eventually(past, timeout, f"{group} handled {record.topic}[{record.partition}]@{record.offset}")
    finally:
        await reader.stop()
    await bus.caught_up(timeout)


# -- The SMS gateway notify sends through in tests -------------------------------------------

@dataclass
class Reply:
    status: int = 200
    raw: bytes | None = None              # None: a well-formed OK answer
    delay: float = 0.0                    # answer this late (the client may have given up)
    hold: threading.Event | None = None   # answer only once this is set


class SmsGateway:
    """A scripted SMS gateway in Aliyun's SendSms shape: `plan[phone]` lists the replies to give
    that phone's requests in turn; after them, OK. Every request is kept as received."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.plan: dict[str, list[Reply]] = {}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request["signed"] = bool(self.headers.get("X-Signature"))
                gateway.requests.append(request)
                planned = gateway.plan.get(request["PhoneNumbers"], [])
                reply = planned.pop(0) if planned else Reply()
                if reply.hold:
                    reply.hold.wait(30)
                time.sleep(reply.delay)
                data = reply.raw if reply.raw is not None else json.dumps(
                    {"Code": "OK", "BizId": uuid.uuid4().hex, "RequestId": "r"}).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/sms/send"

    def to(self, phone: str, template: str | None = None) -> list[dict]:
        return [r for r in self.requests if r["PhoneNumbers"] == phone
                and (template is None or r["TemplateCode"] == template)]

    async def wait_for(self, phone: str, count: int = 1, timeout: float = 30) -> list[dict]:
        """Every request to `phone`, once there are `count` of them."""
        return await eventually(lambda: len(found := self.to(phone)) >= count and found, timeout,
                                f"{count} SMS to {phone}", interval=0.01)


def sms_gateway_env(infra: Any, gateway: SmsGateway) -> dict[str, str]:
    """A service environment with notify sending through `gateway`, at any hour."""
    return {**infra.env(), "LOG_LEVEL": "INFO", "SMS_PROVIDER": "http", "SMS_GATEWAY_URL": gateway.url,
            "SMS_ACCESS_KEY_ID": "test-id", "SMS_ACCESS_KEY_SECRET": "test-secret", "SMS_RETRY_BASE_MS": "50",
            "QUIET_HOURS": "00:00-00:00"}


def person_registered(region: str = "610100", scheme: str = "employee", balance: str = "0.00",
                      phone: str = "13912345678") -> dict[str, Any]:
    """A PersonRegistered payload for a new person."""
    p = {"person_id": new_person_id(region), "name": f"参保{uuid.uuid4().hex[:4]}", "region": region,
         "scheme": scheme, "phone": phone}
    return p | ({"employer": "单位", "balance": balance} if scheme == "employee" else {"community": "社区"})


def institution_registered(code: str, region: str, name: str = "测试医院", kind: str = "hospital") -> dict[str, Any]:
    """An InstitutionRegistered payload carrying the institution's development key."""
    return {"institution_code": code, "name": name, "region": region, "kind": kind,
            "public_keys": dev_keys().institution_public_keys(code)}


def binding_form(grantor: dict[str, Any], beneficiary: dict[str, Any], order: int, relation: str = "father",
                 start: date | None = None, end: date | None = None) -> dict[str, Any]:
    """A CreateBinding payload between two registered people, starting today (China time)."""
    start = start or china_today()
    end = end or start.replace(year=start.year + 1, day=min(start.day, 28))

    def party(p: dict[str, Any]) -> dict[str, Any]:
        return {"id_number": p["person_id"], "name": p["name"], "region": p["region"], "phone": p.get("phone"),
                "employer": p.get("employer"), "community": p.get("community")}
    return {"grantor": party(grantor), "beneficiary": party(beneficiary), "relation": relation,
            "payment_order": order, "start_date": start.isoformat(), "end_date": end.isoformat(),
            "notice_accepted": True, "signature_digest": "sha256:" + "ab" * 32, "channel": "window"}


def charge_submitted(patient: dict[str, Any], institution: str, region: str, borne_fen: int, fund_fen: int = 0,
                     charge_id: str | None = None) -> dict[str, Any]:
    """A valid ChargeSubmitted payload, charged now (China time)."""
    return {"charge_id": charge_id or f"C{uuid.uuid4().hex[:16]}", "institution_code": institution,
            "institution_region": region, "patient_id": patient["person_id"], "patient_name": patient["name"],
            "code_holder_id": patient["person_id"], "presented_via": "own_device", "visit_kind": "outpatient",
            "total": yuan(borne_fen + fund_fen), "fund_paid": yuan(fund_fen), "individual_borne": yuan(borne_fen),
            "charged_at": envelope.now().isoformat(timespec="seconds")}


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def fen(amount: str) -> int:
    whole, _, cents = amount.partition(".")
    return int(whole) * 100 + int((cents + "00")[:2]) if not whole.startswith("-") else -fen(amount[1:])


async def wait_registered(redis: Any, person_ids: list[str], timeout: float = 60.0,
                          prefixes: tuple[str, ...] = ("stl:acct", "bnd:person")) -> None:
    """Until every person is in the projections named by `prefixes` (bucketed hashes)."""
    from shared.state import person_bucket

    async def all_there() -> bool:
        pipe = redis.pipeline(transaction=False)
        for pid in person_ids:
            for prefix in prefixes:
                pipe.hexists(f"{prefix}:{person_bucket(pid)}", pid)
        return all(await pipe.execute())
    await eventually(all_there, timeout, f"{len(person_ids)} people in {', '.join(prefixes)}", interval=0.1)


async def cached_balances(redis: Any, person_ids: list[str]) -> dict[str, int | None]:
    """Settlement's balance of each account in fen (first field of its `stl:acct` entry)."""
    from shared.state import person_bucket

    pipe = redis.pipeline(transaction=False)
    for pid in person_ids:
        pipe.hget(f"stl:acct:{person_bucket(pid)}", pid)
    return {pid: int(raw.split(b"|")[0]) if raw else None for pid, raw in zip(person_ids, await pipe.execute())}
