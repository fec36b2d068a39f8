"""What the platform costs with no traffic at all: CPU of each process (binding, settlement, notify,
the gateway, the broker with its TLS front, Redis) over a quiet stretch, as % of one core.

`make bench` measures it once the services are up and their projections have read what their
topics hold (section 9). `python -m bench.idle [seconds]` measures it alone on a stack of its own
(start, wait until ready, measure, stop), e.g. to compare fetch-wait settings:
`KAFKA_BACKGROUND_FETCH_MAX_WAIT_MS=10 python -m bench.idle` is every subscription polling as
fast as the answering ones, `KAFKA_QUIET_FETCH_MAX_WAIT_MS=0` the answering ones never going over
to their quiet wait (shared/fetch_waits.py).
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
from pathlib import Path

from bench.stack import CpuMeter, Service, fetch_wait_env, process_names
from tooling.devkeys import DevIssuers
from tooling.devstack import free_port, start_local

SERVICES = ("binding", "settlement", "notify", "gateway")
QUIET_SECONDS = 15.0
SETTLE_SECONDS = 5.0


def gateway_env(work: Path) -> dict[str, str]:
    """The gateway needs the issuers it believes and its operator port; no token is used here."""
    return DevIssuers.create(work / "issuers").env() | {"ADMIN_PORT": str(free_port())}


async def measure(meter: CpuMeter, seconds: float = QUIET_SECONDS) -> tuple[dict[str, float], str]:
    """% of one core by process over `seconds` of nothing, and the meter's one-line summary. The
    services' start-up work (group joins, first sweeps) is let pass first."""
    await asyncio.sleep(SETTLE_SECONDS)
    meter.start()
    await asyncio.sleep(seconds)  # the measurement itself: a stretch of wall time with no traffic
    line = meter.stop()
    return {name: used / seconds * 100 for name, used in meter.seconds.items()}, line


def platform(shares: dict[str, float]) -> float:
    """The platform's part of a CpuMeter's figures (shares or seconds): every process but the bench's own."""
    return sum(v for k, v in shares.items() if k != "bench")


async def main(seconds: float) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    infra = start_local(work)
    services: dict[str, Service] = {}
    try:
        base = {"LOG_LEVEL": "INFO", "SMS_PROVIDER": "sink", "NAME_DIGEST_KEY": secrets.token_hex(32)}
        for name in SERVICES:
            extra = gateway_env(work) if name == "gateway" else {}
            services[name] = Service(name, {**infra.service_env(name), **base, **extra}, work / f"{name}.log")
            services[name].launch()
        await asyncio.gather(*(s.ready() for s in services.values()))
        shares, line = await measure(CpuMeter(process_names(services)), seconds)
        print(f"idle {seconds:.0f} s, {fetch_wait_env()[1]}: platform {platform(shares):.0f}% "
              f"of one core\n  {line}")
    finally:
        for s in services.values():
            s.stop()
        infra.stop()


if __name__ == "__main__":
    asyncio.run(main(float(sys.argv[1]) if len(sys.argv) > 1 else QUIET_SECONDS))
