"""`make run`, step by step: infrastructure, services, URLs and tokens, simulator, live view, stop.

Environment: `DURATION` (seconds, then stop as Ctrl-C does), `DEMO=0` (no simulator),
`SIM_RATE` (messages/s, default 20), `SIM_SIZE` (small | medium | large), `RUN_DIR` (default
`.run`: logs in `<RUN_DIR>/logs/<service>.log`), `HTTP_PORT` (the API and console's port; default
a free one), `ADMIN_PORT` (the gateway's operator port; default a free one).

Tokens (contract version 3): two development issuers are made for the run (tooling.devkeys.DevIssuers,
Ed25519 keys in `<RUN_DIR>/issuers`, mode 0600): the app's, which mints the seeded grantor's token
and the simulator's, and the windows' sign-on, which mints the clerk's; the gateway believes them
through the issuers file (`GATEWAY_TOKEN_ISSUERS`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live

from shared.identity import mask_id_number
from tooling.devkeys import DevIssuers
from tooling.devstack import free_port, start_infra
from tooling.launch import view
from tooling.launch.metrics import Figures, Rate, read, scrape
from tooling.launch.processes import Child, descendants, stop_all, wait_until

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("binding", "settlement", "notify", "gateway")
CLERK, CLERK_REGION = "clerk-xa-0001", "610100"
SIM_SEED = 13


def say(text: str = "") -> None:
    print(text, flush=True)


class Run:
    def __init__(self) -> None:
        self.began = time.monotonic()
        self.duration = float(os.environ.get("DURATION") or 0)
        self.demo = os.environ.get("DEMO", "1") != "0"
        self.rate = os.environ.get("SIM_RATE", "20")
        self.size = os.environ.get("SIM_SIZE", "small")
        self.dir = Path(os.environ.get("RUN_DIR") or ROOT / ".run").resolve()
        self.logs = self.dir / "logs"
        self.stop = threading.Event()
        self.services: list[Child] = []
        self.simulator: Child | None = None
        self.rate_meter = Rate()
        self.header: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def out_of_time(self) -> bool:
        return bool(self.duration) and self.elapsed() >= self.duration

    # -- start -----------------------------------------------------------------------------------

    def start_services(self, env: dict[str, str], infra) -> None:
        for name in SERVICES:
            if not (ROOT / "services" / name / "__main__.py").exists():
                say(f"  {name:<11} not in this build: skipped")
                continue
            # The API and console on HTTP_PORT when it is set (a port the user can bookmark); the
            # other services, and the gateway's operator port, on free ones.
            port = int(os.environ["HTTP_PORT"]) if name == "gateway" and os.environ.get("HTTP_PORT") else free_port()
            admin = None
            log = self.logs / f"{name}.log"
            child_env = env | infra.service_env(name) | {"HTTP_PORT": str(port), "LOG_FORMAT": "json",
                                                         "LOG_FILE": str(log)}
            if name == "gateway":
                admin = int(os.environ.get("ADMIN_PORT") or free_port())
                child_env["ADMIN_PORT"] = str(admin)
            self.services.append(Child(name, f"services.{name}", [], child_env, log, ROOT, port, admin))

    def wait_ready(self, timeout: float = 180) -> bool:
        pending = list(self.services)

        def check() -> bool:
            for s in list(pending):
                if s.exited():
                    raise RuntimeError(f"{s.name} exited with status {s.process.returncode}:\n{s.tail()}")
                if s.ready():
                    say(f"  {s.name:<11} ready ({time.monotonic() - self.began:.0f} s)")
                    pending.remove(s)
            return not pending

        if wait_until(check, timeout, interval=0.25, stop=self.stop):
            return True
        if pending and not self.stop.is_set():
            raise RuntimeError("not ready within %.0f s: %s" % (timeout, ", ".join(
                f"{s.name} (log {s.log_path}):\n{s.tail()}" for s in pending)))
        return False

    def surfaces(self, issuers: DevIssuers) -> list[str]:
        """One line per HTTP surface, the tokens, the processes."""
        lines = []
        gateway = next((s for s in self.services if s.name == "gateway"), None)
        if gateway is None:
            lines.append("  API         not in this build (services/gateway)")
        else:
            lines.append(f"  API         {gateway.url}/docs")
            if gateway.serves("/console"):
                lines.append(f"  console     {gateway.url}/console")
        for s in self.services:
            if s.serves_metrics():
                lines.append(f"  {s.name + ' metrics':<22}{s.metrics_url}")
            else:
                lines.append(f"  {s.name + ' metrics':<22}not served by this build")
        from simulator.province import build_province

        grantor = build_province(self.size, SIM_SEED).demo_grantor()
        app_token = issuers.mint("app", person_id=grantor.person_id)
        window_token = issuers.mint("window", clerk_id=CLERK, region=CLERK_REGION)
        seeded = "a seeded grantor" if self.demo else "not seeded: DEMO=0"
        tokens = self.dir / "tokens.txt"
        tokens.touch(mode=0o600)
        tokens.write_text(f"window {window_token}\napp {app_token}\n")
        lines += [f"  window token (clerk {CLERK}, region {CLERK_REGION}):", f"    {window_token}",
                  f"  app token for {mask_id_number(grantor.person_id)} ({seeded}, region {grantor.region}):",
                  f"    {app_token}",
                  f"  tokens also in {tokens}; logs in {self.logs}/<service>.log"]
        return lines

    def start_simulator(self, env: dict[str, str]) -> None:
        gateway = next((s for s in self.services if s.name == "gateway"), None)
        args = ["--rate", self.rate, "--size", self.size, "--seed", str(SIM_SEED),
                "--status-file", str(self.dir / "simulator.json")]
        if gateway is not None:
            args += ["--gateway", gateway.url]
        self.simulator = Child("simulator", "simulator", args, env, self.logs / "simulator.log", ROOT)

    # -- watch -----------------------------------------------------------------------------------

    def figures(self) -> Figures:
        texts = {s.name: scrape(s.metrics_url) for s in self.services}
        status = None
        try:
            status = json.loads((self.dir / "simulator.json").read_text())
        except (OSError, ValueError):
            pass
        f = read(texts, status)
        f.down = [f"{s.name} ({ended(s.process.returncode)})" for s in self.services if s.exited()]
        if self.simulator is not None and self.simulator.exited():
            f.phase = f"ended ({ended(self.simulator.process.returncode)}; see {self.simulator.log_path})"
        f.per_second = self.rate_meter.add(f.charges)
        return f

    def drained(self) -> bool:
        """Every consumer has read to the end (or no lag is served)."""
        lag = self.figures().lag
        return sum(sum(topics.values()) for topics in lag.values()) == 0

    def watch(self) -> Figures:
        note = "Ctrl-C stops everything." + (f" Stopping by itself after {self.duration:g} s." if self.duration else "")
        f = self.figures()
        if sys.stdout.isatty():
            console = Console()
            with Live(view.live(f, self.elapsed(), self.header, note), console=console, auto_refresh=False,
                      transient=False) as live:
                while not self.stop.wait(1.0) and not self.out_of_time():
                    f = self.figures()
                    live.update(view.live(f, self.elapsed(), self.header, note), refresh=True)
        else:
            say(note)
            last = 0.0
            while not self.stop.wait(1.0) and not self.out_of_time():
                f = self.figures()
                if time.monotonic() - last >= 5:
                    say(view.line(f, self.elapsed()))
                    last = time.monotonic()
        return f


def ended(code: int) -> str:
    """An exit status as a reader takes it: uvicorn ends by re-raising the SIGTERM it handled."""
    if code < 0:
        try:
            return f"ended by {signal.Signals(-code).name}"
        except ValueError:
            return f"ended by signal {-code}"
    return f"exit {code}"


def main() -> int:
    run = Run()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: run.stop.set())
    run.logs.mkdir(parents=True, exist_ok=True)
    say("starting the broker and Redis ...")
    # Redis replicated (a primary, a replica, a sentinel) unless REDIS_REPLICATED=0 (issue 23)
    infra = start_infra(run.dir / f"infra-{os.getpid()}", replicated=os.environ.get("REDIS_REPLICATED", "1") != "0")
    redis = (f"primary {infra.redis_url}, a replica, sentinel {infra.replicas.sentinel_hosts}" if infra.replicas
             else infra.redis_url)
    say(f"  Kafka {infra.kafka_bootstrap}   Redis {redis}   ({infra.origin})")
    issuers = DevIssuers.create(run.dir / "issuers")
    env = {**os.environ, **infra.env(), **issuers.env(), "PYTHONUNBUFFERED": "1", "SMS_PROVIDER": "sink",
           # binding has no default: a random one per run (the run's Redis is new), unless given
           "NAME_DIGEST_KEY": os.environ.get("NAME_DIGEST_KEY") or secrets.token_hex(32)}
    status, figures, codes = 0, Figures(), {}
    try:
        say("starting the services ...")
        run.start_services(env, infra)
        try:
            up = run.wait_ready()
        except RuntimeError as exc:
            say(f"a service did not start: {exc}")
            status, up = 1, False
        if up:
            run.header = run.surfaces(issuers)
            if run.demo:
                run.start_simulator(env)
                run.header.append(f"  simulator   {run.rate} messages/s, size {run.size} "
                                  f"(log {run.logs}/simulator.log)")
            else:
                run.header.append("  simulator   off (DEMO=0)")
            say("\n== the platform is up ==")
            for text in run.header:
                say(text)
            named = {c.pid: c.name for c in [*run.services, *filter(None, [run.simulator])]}
            say("  processes   " + ", ".join(f"{named.get(pid, name)} {pid}" for pid, name in sorted(descendants().items())))
            say("")
            figures = run.watch()
    finally:
        if run.simulator is not None:
            codes.update(stop_all([run.simulator], timeout=15))
            # the last charges it sent are answered before the figures are read
            wait_until(run.drained, timeout=5)
            figures = run.figures()
        codes.update(stop_all(run.services))
        infra.stop()
    left = descendants()
    say("\n== summary ==")
    for text in view.summary(figures, run.elapsed()):
        say(text)
    say("  stopped: " + ", ".join(f"{n} ({ended(c)})" for n, c in codes.items()) + "; broker and Redis stopped")
    say("  processes left: " + (", ".join(f"{name} {pid}" for pid, name in left.items()) or "none"))
    return status
