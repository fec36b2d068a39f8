"""`make run DURATION=…` as a newcomer runs it: everything comes up, the URLs and tokens are
printed, the simulator's charges settle, and at the end a summary, exit 0, no process left."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import jwt

from shared.identity import is_valid_id_number

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (entry / "cmdline").read_bytes() and alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_make_run_with_a_duration_settles_charges_then_stops_everything(tmp_path):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "DEMO")}
    env |= {"DURATION": "40", "RUN_DIR": str(run_dir), "DEVSTACK_NO_DOCKER": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "tooling.launch"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "== the platform is up ==" in out and "== summary ==" in out, out[-3000:]

    # one line per HTTP surface
    assert re.search(r"API\s+http://127\.0\.0\.1:\d+/docs", out), out
    for service in ("binding", "settlement", "notify"):
        assert re.search(rf"{service} metrics\s+http://127\.0\.0\.1:\d+/metrics", out), out

    # the tokens: a window clerk's and a seeded grantor's, shown with the masked ID number only
    tokens = re.findall(r"^\s{4}(eyJ[\w-]+\.[\w-]+\.[\w-]+)$", out, re.M)
    claims = [jwt.decode(t, options={"verify_signature": False}) for t in tokens]
    assert {c["role"] for c in claims} == {"window", "app"}
    grantor = next(c["sub"] for c in claims if c["role"] == "app")
    assert is_valid_id_number(grantor) and grantor not in out.replace(tokens[1], "").replace(tokens[0], "")
    assert re.search(r"app token for \d{3}\*{11}\d{3}[\dX]", out)

    # the province settled
    settled = re.search(r"charges: ([\d,]+) settled, ([\d,]+) refused", out)
    assert settled and int(settled[1].replace(",", "")) > 0, out[-2000:]
    # every bureau event the simulator sent (credits, local debits, snapshots with their
    # postings_applied_through) was accepted: its books and the platform's agree
    assert re.search(r"bureau events: credits [\d,]+, local debits [\d,]+, snapshots [\d,]+ sent; 0 refused", out), \
        out[-2000:]
    assert (run_dir / "logs" / "settlement.log").stat().st_size > 0
    # contract version 3: everything the simulator's partners sent was signed and believed (no
    # charge refused for its signature), and every posting and reply the platform wrote for them
    # carried the platform's signature (the bureaus and the HIS checked each one)
    play = (run_dir / "logs" / "simulator.log").read_text()
    checked = re.search(r"platform signatures: (\d+) verified, (\d+) not", play)
    assert checked and int(checked[1]) > 0 and checked[2] == "0", play[-2000:]
    assert not re.search(r"UNSIGNED|UNKNOWN_SIGNER|BAD_SIGNATURE|NOT_SIGNERS", play), play[-2000:]

    # nothing left behind: the processes it named, and anything started with its directory
    started = re.search(r"processes\s+(.+)$", out, re.M)
    assert started, out
    pids = [int(p) for p in re.findall(r"\S+ (\d+)", started[1])]
    assert len(pids) >= 5  # broker, Redis, binding, settlement, notify (and gateway, simulator)
    assert [p for p in pids if alive(p)] == []
    assert processes_mentioning(str(run_dir)) == []
    assert "processes left: none" in out
