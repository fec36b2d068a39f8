"""`python -m simulator`: seed a small province and play it at a steady rate.

    python -m simulator --rate 20 --duration 0 --size small [--seed-only | --no-seed]
                        [--bootstrap HOST:PORT] [--gateway URL] [--app-issuer FILE] [--status-file PATH]

`--rate` is messages per second of every kind (HIS charges and refunds, bureau events); about
four in five are charges. Defaults come from the environment: KAFKA_BOOTSTRAP_SERVERS,
GATEWAY_URL, APP_TOKEN_ISSUER_FILE (the app back end's token issuer, which mints the grantors' app
tokens), the Kafka security settings (KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_CAFILE, ...) and the
services' CLOCK_OFFSET_SECONDS (the partners it plays keep the platform's time). Without
a gateway the bindings go to binding.commands directly, as the gateway would put them there.

Every message is signed as the partner it plays would sign it (contract version 3), with the
development keys of DEV_KEYS_DIR; the platform's signatures on postings and replies are checked
against PARTNER_KEYS_FILE. SIGINT or SIGTERM stop it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from shared.settings import ClockSettings
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
    ap.add_argument("--app-issuer", type=Path, default=os.environ.get("APP_TOKEN_ISSUER_FILE") or None,
                    help="the app's token issuer (a private JWK file, shared.tokens.TokenIssuer)")
    ap.add_argument("--status-file", type=Path, default=None, help="JSON tally rewritten every second")
    a = ap.parse_args(argv)
    if a.rate <= 0:
        ap.error("--rate must be positive")
    if a.gateway and not a.app_issuer:
        ap.error("--gateway needs --app-issuer (or APP_TOKEN_ISSUER_FILE) to mint the grantors' app tokens")
    return Options(bootstrap=a.bootstrap, rate=a.rate, duration=a.duration, seed=a.seed, size=a.size,
                   do_seed=not a.no_seed, do_play=not a.seed_only, gateway=a.gateway, app_issuer=a.app_issuer,
                   status_file=a.status_file)


async def main(opts: Options) -> int:
    ClockSettings().apply_clock()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    province = build_province(opts.size, opts.seed)
    tally = await simulate(opts, province, stop)
    say(f"done: {tally.settled} charges settled, {sum(tally.refused.values())} refused {dict(tally.refused)}, "
        f"{tally.refunds} refunds, {tally.fraud_suspected} fraud suspected, SMS {dict(tally.sms)}, "
        f"{tally.bureau_refused} bureau events refused; platform signatures: {tally.platform_verified} verified, "
        f"{sum(tally.unverified.values())} not {dict(tally.unverified)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
