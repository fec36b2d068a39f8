"""`make run`: bring up the broker, Redis and every service, print what is there, stop cleanly.

Stops on Ctrl-C, SIGTERM, or after `DURATION` seconds, exactly the same way: every process it
started ends, a summary is printed, exit status 0. `DEMO=0` skips the demo data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from shared.devstack import die_with_parent, start_infra, stop_process

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("binding", "settlement", "notify")


class Service:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.ready = threading.Event()
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", f"services.{name}"], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=die_with_parent)
        threading.Thread(target=self._forward, daemon=True).start()

    def _forward(self) -> None:
        marker = f"service ready: {self.name}"
        for line in self.process.stdout:
            text = line.decode("utf-8", "replace").rstrip()
            print(f"[{self.name}] {text}", flush=True)
            if marker in text:
                self.ready.set()

    def stop(self) -> int:
        return stop_process(self.process)


def main() -> int:
    duration = float(os.environ.get("DURATION") or 0)
    demo = os.environ.get("DEMO", "1") != "0"
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    began = time.monotonic()
    run_dir = ROOT / ".run"
    print("starting the broker and Redis ...", flush=True)
    infra = start_infra(run_dir / f"infra-{os.getpid()}")
    print(f"Kafka  {infra.kafka_bootstrap}   Redis  {infra.redis_url}   ({infra.origin})", flush=True)
    env = {**os.environ, **infra.env(), "PYTHONUNBUFFERED": "1"}
    services = [Service(name, env) for name in SERVICES if (ROOT / "services" / name / "__main__.py").exists()]
    try:
        deadline = time.monotonic() + 90
        while not stop.is_set() and not all(s.ready.is_set() for s in services):
            if time.monotonic() > deadline or any(s.process.poll() is not None for s in services):
                print("a service did not become ready; stopping", flush=True)
                stop.set()
                break
            time.sleep(0.1)
        if not stop.is_set():
            print("\n== the platform is up ==", flush=True)
            for s in services:
                print(f"  {s.name:<11} ready (Kafka consumer; no HTTP surface yet)", flush=True)
            print("  HTTP surfaces arrive with the issues that ask for them; none yet.", flush=True)
            if demo:
                from shared.demo import seed

                seed(infra.kafka_bootstrap)
            print("Ctrl-C stops everything." + (f" Stopping by itself after {duration:g} s." if duration else ""),
                  flush=True)
        while not stop.wait(0.2):
            if duration and time.monotonic() - began >= duration:
                break
    finally:
        codes = {s.name: s.stop() for s in services}
        infra.stop()
    print("\n== summary ==")
    print(f"  ran {time.monotonic() - began:.1f} s; services stopped: "
          + ", ".join(f"{n} (exit {c})" for n, c in codes.items()))
    print("  broker and Redis stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
