"""The one table `make bench` prints, and the same figures as JSON under bench/results/.

A row is a figure with its unit, the issue's target beside it when there is one, and met / not
met: printed, never asserted. A section that fails leaves a row 'failed: reason' and the rest go on.
"""

from __future__ import annotations

import json
import os
import platform
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# BENCH_RESULTS: somewhere else than bench/results/ (a trial run that should not replace latest.json)
RESULTS = Path(os.environ.get("BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


@dataclass
class Row:
    section: str
    measure: str
    value: float | str | None
    unit: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    def shown_value(self) -> str:
        if isinstance(self.value, float):
            text = f"{self.value:,.1f}" if abs(self.value) < 100 else f"{self.value:,.0f}"
        elif isinstance(self.value, int):
            text = f"{self.value:,}"
        else:
            text = str(self.value)
        return f"{text} {self.unit}".strip()

    def verdict(self) -> str:
        return "" if self.met is None else ("met" if self.met else "NOT met")


@dataclass
class Report:
    sizes: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(self, section: str, measure: str, value: Any, unit: str = "", target: str = "",
            met: bool | None = None, note: str = "") -> None:
        row = Row(section, measure, value, unit, target, met, note)
        self.rows.append(row)
        print(f"  [{section}] {measure}: {row.shown_value()}" + (f"  ({note})" if note else ""), flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    async def section(self, name: str, work: Callable[[], Awaitable[None]], timeout: float) -> None:
        """Run one section; a failure or a timeout becomes a row and the run goes on."""
        print(f"\n== {name}", flush=True)
        started = time.monotonic()
        try:
            import asyncio

            await asyncio.wait_for(work(), timeout)
        except Exception as exc:  # noqa: BLE001 - one section failing must not stop the others
            # the section's own deadline raises a TimeoutError without a message; a wait inside says what it waited for
            ran_out = isinstance(exc, TimeoutError) and not str(exc)
            reason = "timed out after %.0f s" % timeout if ran_out else f"{exc.__class__.__name__}: {str(exc)[:300]}"
            self.add(name, "section", f"failed: {reason}")
            if not ran_out:
                traceback.print_exc()
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)

    def table(self) -> str:
        headers = ("section", "measure", "value", "target", "")
        footnotes = []
        cells = []
        for r in self.rows:
            mark = ""
            if r.note:
                footnotes.append(r.note)
                mark = f" [{len(footnotes)}]"
            cells.append((r.section, r.measure + mark, r.shown_value(), r.target, r.verdict()))
        widths = [min(60, max(len(h), *(len(c[i]) for c in cells))) if cells else len(h)
                  for i, h in enumerate(headers)]
        line = lambda c: " | ".join(str(x).ljust(w) for x, w in zip(c, widths)).rstrip()  # noqa: E731
        out = [line(headers), "-+-".join("-" * w for w in widths)]
        section = None
        for c in cells:
            out.append(line(("" if c[0] == section else c[0], *c[1:])))
            section = c[0]
        out += [f"[{i}] {n}" for i, n in enumerate(footnotes, start=1)]
        out += [f"* {n}" for n in self.notes]
        return "\n".join(out)

    def write(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(self.started))
        body = {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                        "system": platform.platform()},
            "sizes": self.sizes,
            "rows": [asdict(r) for r in self.rows],
            "notes": self.notes,
            "table": self.table(),
        }
        text = json.dumps(body, ensure_ascii=False, indent=1)
        (RESULTS / f"{stamp}.json").write_text(text)
        latest = RESULTS / "latest.json"
        latest.write_text(text)
        return latest


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]
