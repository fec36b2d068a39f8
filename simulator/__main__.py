"""`python -m simulator`: seed a small province and play it at a steady rate.

    python -m simulator --rate 20 --duration 0 --size small [--seed-only | --no-seed]
                        [--bootstrap HOST:PORT] [--gateway URL] [--jwt-key KEY] [--status-file PATH]

`--rate` is messages per second of every kind (HIS charges and refunds, bureau events); about
four in five are charges. Defaults come from the environment: KAFKA_BOOTSTRAP_SERVERS,
GATEWAY_URL, GATEWAY_JWT_KEY. Without a gateway the bindings go to binding.commands directly, as
the app's back end would publish them. SIGINT or SIGTERM stop it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from simulator.province import SIZES, build_province
from simulator.run import Options, say, simulate


def parse(argv: list[str]) -> Options:
    ap = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=20.0, help="messages per second (default 20)")
    ap.add_argument("--duration", type=float, default=0.0, help="seconds of play; 0 (default) until stopped")
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--seed", type=int, default=13, help="random seed of the province and its traffic")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--seed-only", action="store_true", help="register and bind, then stop")
    mode.add_argument("--no-seed", action="store_true", help="play only (the province is already registered)")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--gateway", default=os.environ.get("GATEWAY_URL") or None,
                    help="the HTTP API's base URL (bindings made through it)")
    ap.add_argument("--jwt-key", default=os.environ.get("GATEWAY_JWT_KEY") or None)
    ap.add_argument("--status-file", type=Path, default=None, help="JSON tally rewritten every second")
    a = ap.parse_args(argv)
    if a.rate <= 0:
        ap.error("--rate must be positive")
    if a.gateway and not a.jwt_key:
        ap.error("--gateway needs --jwt-key (or GATEWAY_JWT_KEY) to mint the grantors' app tokens")
    return Options(bootstrap=a.bootstrap, rate=a.rate, duration=a.duration, seed=a.seed, size=a.size,
                   do_seed=not a.no_seed, do_play=not a.seed_only, gateway=a.gateway, jwt_key=a.jwt_key,
                   status_file=a.status_file)


async def main(opts: Options) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    province = build_province(opts.size, opts.seed)
    tally = await simulate(opts, province, stop)
    say(f"done: {tally.settled} charges settled, {sum(tally.refused.values())} refused {dict(tally.refused)}, "
        f"{tally.refunds} refunds, {tally.fraud_suspected} fraud suspected, SMS {dict(tally.sms)}, "
        f"{tally.bureau_refused} bureau events refused")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
