"""The processes `make run` starts: each in a process group of its own (so Ctrl-C in the terminal
reaches only `make run`, which then stops them in order), ending with its parent even when that
is killed (PR_SET_PDEATHSIG), its output appended to its log file, never to the terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tooling.devstack import die_with_parent


class Child:
    """One process, `python -m <module>`, with its log file and, if it serves HTTP, its port."""

    def __init__(self, name: str, module: str, args: list[str], env: dict[str, str], log_path: Path,
                 cwd: Path, port: int | None = None, admin_port: int | None = None) -> None:
        self.name, self.port, self.admin_port, self.log_path = name, port, admin_port, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._offset = log_path.stat().st_size if log_path.exists() else 0
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, preexec_fn=die_with_parent)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        """Where its /metrics is: the operator port when it has one (the gateway's), else its port."""
        return f"http://127.0.0.1:{self.admin_port or self.port}/metrics"

    def serves_metrics(self) -> bool:
        return self.port is not None and _answers(self.metrics_url)

    def exited(self) -> bool:
        return self.process.poll() is not None

    def ready(self) -> bool:
        """/readyz answers 200, or (a service without HTTP yet) it logged `service ready: <name>`."""
        if self.port is not None:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._offset)
                return f"service ready: {self.name}".encode() in f.read()
        except OSError:
            return False

    def serves(self, path: str) -> bool:
        return self.port is not None and _answers(f"{self.url}{path}")

    def tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def terminate(self) -> None:
        """SIGTERM to its whole process group."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float = 20) -> int:
        """Its exit status, after SIGKILL to the group if it has not ended within `timeout`."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return self.process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def stop_all(children: list[Child], timeout: float = 20) -> dict[str, int]:
    """SIGTERM to all at once, then wait for each: stopping takes the slowest one's time, not the sum."""
    for c in children:
        c.terminate()
    return {c.name: c.wait(timeout) for c in children}


def descendants(pid: int | None = None) -> dict[int, str]:
    """Every live process below `pid` (default: this one), pid -> command name, from /proc (Linux;
    elsewhere empty)."""
    root = pid or os.getpid()
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces or parentheses, so split at the last ')'
        head, _, rest = stat.rpartition(")")
        fields = rest.split()
        if len(fields) < 2 or fields[0] == "Z":
            continue
        parents[int(entry.name)] = int(fields[1])
        names[int(entry.name)] = head.partition("(")[2]
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = names[child]
                frontier.append(child)
    return found


def wait_until(check, timeout: float, interval: float = 0.2, stop=None) -> bool:
    """Until `check()` is true (True), `timeout` passes or `stop` is set (False)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline or (stop is not None and stop.is_set()):
            return False
        if stop is not None:
            stop.wait(interval)
        else:
            time.sleep(interval)  # polling a condition with a deadline
    return True
