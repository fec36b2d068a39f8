"""What signatures cost (contract version 3), measured three ways by `make bench` (section 8):

1. per message, on this machine: Ed25519 sign and verify of a ~600-byte message by `cryptography`
   (OpenSSL) and by PyNaCl (libsodium, what the platform uses), alone, and through the platform's
   own path (`SigningKey.headers`, `shared.signing.verify` with a key looked up by id), a few rounds
   each, min / median / max;
2. in the settlement process during the full-speed run: the seconds it counted verifying and
   signing (`fma_signature_seconds_total{op}`, `fma_signatures_total{op,verdict}` on its /metrics),
   per charge and as a share of its CPU per charge;
3. the per-message figures times the messages per charge verified and signed, beside (2).

And SM2 (国密): the libraries on PyPI that give SM2 signatures are measured when one is importable
(none is a dependency of the project); what was found is written in the output either way.

`python -m bench.signatures` prints (1) and the SM2 findings alone, in a few seconds.
"""

from __future__ import annotations

import base64
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey as SodiumSigningKey

from shared.signing import PartnerKey, SigningKey, verify

MESSAGE_BYTES = 600
ROUNDS = 5


@dataclass(frozen=True)
class Spread:
    """µs per operation over `rounds` rounds: the fastest, the median and the slowest round."""

    low: float
    median: float
    high: float
    rounds: int
    each: int

    def __str__(self) -> str:
        return f"{self.low:,.0f} / {self.median:,.0f} / {self.high:,.0f} µs"


def spread(operation: Callable[[], object], each: int, rounds: int = ROUNDS) -> Spread:
    operation()  # warm: first calls load and cache
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(each):
            operation()
        times.append((time.perf_counter() - started) / each * 1e6)
    return Spread(min(times), statistics.median(times), max(times), rounds, each)


def message(size: int = MESSAGE_BYTES) -> bytes:
    """A charge-sized JSON envelope (a ChargeSubmitted is 550–650 bytes)."""
    body = b'{"event_id":"%s","event_type":"ChargeSubmitted","payload":{"x":"' % os.urandom(16).hex().encode()
    return body + b"a" * max(0, size - len(body) - 3) + b'"}}'


def ed25519(each: int = 2_000, rounds: int = ROUNDS) -> dict[str, Spread]:
    """Ed25519 by `cryptography` and by libsodium bare, and along the platform's path (libsodium),
    per ~600-byte message."""
    value = message()
    raw = Ed25519PrivateKey.generate()
    public = raw.public_key()
    raw_signature = raw.sign(value)
    sodium = SodiumSigningKey(raw.private_bytes_raw())
    sodium_public = sodium.verify_key
    own = SigningKey.generate("bench:k1")
    topic, key = "his.charges", b"610102194501010011"
    headers = own.headers(topic, key, value)
    now = datetime.now(timezone.utc)
    known = PartnerKey("bench:k1", "platform", base64.b64decode(own.public_b64), now - timedelta(days=1),
                       now + timedelta(days=1))
    find = {"bench:k1": known}.get
    assert not isinstance(verify(topic, key, value, headers, find, now), str)
    return {"sign": spread(lambda: raw.sign(value), each, rounds),
            "verify": spread(lambda: public.verify(raw_signature, value), each, rounds),
            "sign, libsodium": spread(lambda: sodium.sign(value), each, rounds),
            "verify, libsodium": spread(lambda: sodium_public.verify(value, raw_signature), each, rounds),
            "sign, platform path": spread(lambda: own.headers(topic, key, value), each, rounds),
            "verify, platform path": spread(lambda: verify(topic, key, value, headers, find, now), each, rounds)}


# -- SM2 (国密) ------------------------------------------------------------------------------------

# What the registry offers for SM2 signatures, looked at when this section was written (PyPI's
# package list: name, latest version and month, what it is), and measured once beside Ed25519 in a
# throwaway virtualenv on this machine (600-byte message, three rounds, min / median / max, µs):
SM2_FOUND = (
    "gmssl-pyx 2.1.0 (2026-09; C extension of GmSSL 3.2.0, wheels 3.8–3.14): maintained; sign 3,170 / 3,246 / "
    "3,357, verify 660 / 663 / 668 (Ed25519 by cryptography in the same run: sign 38, verify 122)",
    "tongsuopy 1.0.1 (2023-02; Tongsuo's fork of cryptography): no release since 2023; sign 403 / 423 / 448, "
    "verify 341 / 343 / 343",
    "gmssl 3.2.2 (2023-02; pure Python): sign 11,090, verify 17,356",
    "gmssl-fast 0.1.0 (2026-09, a first release; GmSSL linked in): sign 1,147 / 1,180 / 1,189, "
    "verify 2,106 / 2,373 / 2,685",
    "smcryptopy 0.2.1 (2024-03; Rust via cffi): sign 35,510, verify 55,068",
    "also listed, not measured: gmssl-python 2.2.2 (2023-10) and pygmssl 0.1.2 (2024-03), both needing the "
    "GmSSL shared library installed apart; snowland-smx and gd-sm (pure Python)",
)
SM2_VERDICT = ("SM2 not offered (no `x-signature-alg: sm2`): the maintained library (gmssl-pyx) verifies "
               "about 5× and signs about 80× slower than Ed25519 here, the new one (gmssl-fast) verifies "
               "about 17× slower; the only one within 3× to verify (tongsuopy) has had no release since "
               "2023; the rest are pure Python or slower still. No dependency added.")


def sm2(each: int = 300, rounds: int = 3) -> dict[str, tuple[Spread, Spread]]:
    """Sign and verify spreads of every SM2 library importable here (usually none: the project
    depends on none of them), by library."""
    value, found = message(), {}
    try:
        from gmssl_pyx import sm2_key_generate, sm2_sign, sm2_verify  # type: ignore[import-not-found]

        public, private = sm2_key_generate()
        signature = sm2_sign(private, public, value)
        if sm2_verify(public, value, signature):
            found["gmssl-pyx"] = (spread(lambda: sm2_sign(private, public, value), each, rounds),
                                  spread(lambda: sm2_verify(public, value, signature), each, rounds))
    except ImportError:
        pass
    try:
        from gmssl_fast import SM2  # type: ignore[import-not-found]

        pair = SM2.generate()
        signature = pair.sign(value)
        if pair.verify(value, signature):
            found["gmssl-fast"] = (spread(lambda: pair.sign(value), each, rounds),
                                   spread(lambda: pair.verify(value, signature), each, rounds))
    except ImportError:
        pass
    try:
        from tongsuopy.crypto import hashes  # type: ignore[import-not-found]
        from tongsuopy.crypto.asymciphers import ec  # type: ignore[import-not-found]

        key, algorithm = ec.generate_private_key(ec.SM2()), ec.ECDSA(hashes.SM3())
        signature, public = key.sign(value, algorithm), key.public_key()
        found["tongsuopy"] = (spread(lambda: key.sign(value, algorithm), each, rounds),
                              spread(lambda: public.verify(signature, value, algorithm), each, rounds))
    except ImportError:
        pass
    return found


# -- the settlement process's own count ----------------------------------------------------------

_SAMPLE = re.compile(r'^(fma_signature_seconds_total|fma_signatures_total)\{([^}]*)\}\s+([0-9.eE+-]+)$', re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def counted(metrics_text: str) -> dict[tuple[str, str], float]:
    """From a service's /metrics: ("seconds", op) -> seconds and ("count", "op:verdict") -> n."""
    out: dict[tuple[str, str], float] = {}
    for name, labels, value in _SAMPLE.findall(metrics_text):
        label = dict(_LABEL.findall(labels))
        if name == "fma_signature_seconds_total":
            out[("seconds", label.get("op", "?"))] = float(value)
        else:
            out[("count", f"{label.get('op', '?')}:{label.get('verdict', '?')}")] = float(value)
    return out


def difference(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def main() -> None:
    print(f"Ed25519 (cryptography; libsodium where named, and on the platform's path), {MESSAGE_BYTES}-byte message, {ROUNDS} rounds: min / median / max")
    for name, s in ed25519().items():
        print(f"  {name:24s} {s}")
    measured = sm2()
    print("SM2 (国密), measured here:" if measured else "SM2 (国密): no SM2 library importable here; found earlier:")
    for name, (signing, verifying) in measured.items():
        print(f"  {name:24s} sign {signing}, verify {verifying}")
    if not measured:
        for line in SM2_FOUND:
            print(f"  {line}")
    print(SM2_VERDICT)


if __name__ == "__main__":
    main()
