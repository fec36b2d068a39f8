"""BENCH_PROFILE=1: py-spy samples a service's process during a run (settlement during the
full-speed run; settlement, notify and binding during section 10's grantor-paid run) and writes to
bench/results/ a flame graph (SVG), the collapsed stacks (for speedscope or inferno) and a top
list: the functions where the samples were, by own time and by time inside them."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.report import RESULTS


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, pid: int, name: str = "settlement", during: str = "the full-speed run") -> None:
        self.pid, self.name, self.during = pid, name, during
        self.processes: list[subprocess.Popen] = []
        stem = f"profile-{name}" if during == "the full-speed run" else f"profile-{name}-grantor-paid"
        self.raw = RESULTS / f"{stem}.txt"
        self.svg = RESULTS / f"{stem}.svg"
        self.top = RESULTS / f"{stem}-top.txt"

    def start(self) -> None:
        binary = py_spy()
        if binary is None:
            return
        RESULTS.mkdir(parents=True, exist_ok=True)
        for fmt, path in (("raw", self.raw), ("flamegraph", self.svg)):
            # --nonblocking: sample without stopping the process, so it runs at (nearly) full speed
            self.processes.append(subprocess.Popen(
                [binary, "record", "--pid", str(self.pid), "--rate", "97", "--nonblocking", "--format", fmt,
                 "--output", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))

    def share(self, path: str) -> float | None:
        """After `stop`: the share of the samples spent inside the file `path` (see `share_in`)."""
        return share_in(self.raw.read_text(), path) if self.raw.exists() else None

    def stop(self) -> str:
        if not self.processes:
            return "profile: py-spy not found (pip install py-spy)"
        errors = []
        for p in self.processes:
            p.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                _, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                err = b"timed out writing"
            if p.returncode not in (0, -signal.SIGINT):
                errors.append(err.decode(errors="replace").strip()[-200:])
        if not self.raw.exists():
            return f"profile failed: {errors}"
        self.top.write_text(top(self.raw.read_text(), self.name))
        return (f"profile of the {self.name} process during {self.during}: {self.svg.name}, {self.raw.name}, "
                f"{self.top.name} in bench/results/" + (f" (errors: {errors})" if errors else ""))


def share_in(collapsed: str, path: str) -> float | None:
    """The share of samples with a frame of the file `path` in their stack (inclusive time)."""
    total = inside = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            total += int(count)
            inside += int(count) if f"{path}:" in stack else 0
    return inside / total if total else None


def top(collapsed: str, name: str = "settlement", most: int = 40) -> str:
    """Own and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inside[frame] += n
    if not total:
        return "no samples\n"
    out = [f"{total} samples of the {name} process's active threads (py-spy's view; an event loop waiting in select may still show)", "", "own time:"]
    out += [f"{n / total:6.1%}  {f}" for f, n in own.most_common(most)]
    out += ["", "inclusive (time inside the function and what it calls):"]
    out += [f"{n / total:6.1%}  {f}" for f, n in inside.most_common(most)]
    return "\n".join(out) + "\n"
