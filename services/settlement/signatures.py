"""Who sent what settlement reads, and the platform's word on what it tells partners (contract
version 3, `shared.signing`).

- Bureaus' keys are the operator's trust anchor (`KeyRing`, PARTNER_KEYS_FILE): a bureau message
  is verified with no I/O.
- An institution's keys come with its bureau-signed InstitutionRegistered (settlement's projection,
  `stl:ikeys`): the keys of a batch's distinct signing institutions are read in one HMGET, and each
  stored key list is parsed once (kept by its bytes, so a registration that replaces it is read
  afresh on the next batch).
- What partners read (postings and reports on `bureau.postings.<region>`, every reply on a `reply.`
  topic) is signed once, with the service's own key (SIGNING_KEY_ID / SIGNING_KEY_FILE);
  settlement.results is internal and unsigned.

The time spent verifying and signing is counted (`fma_signature_seconds_total`), so a bench can
show it apart from settling.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter as TallyCounter
from collections.abc import Awaitable, Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError

from shared import envelope
from shared.kafka import Outgoing, Received, is_reply_topic
from shared.logs import shown
from shared.signing import (SIGNER, InstitutionKey, KeyRing, PartnerKey, SignatureRefused, Signer, SigningKey,
                            institution_keys, verify_received)
from shared.topics import BUREAU_POSTINGS
from services.settlement.storage.layouts import decode_institution_keys

log = logging.getLogger("settlement")
Verdict = Signer | SignatureRefused
# Parsed key lists kept (by their stored bytes); more than this many distinct lists clears the lot.
_PARSED_MOST = 4096


def _institution_of(key_id: str) -> str | None:
    """`his:<code>:<label>` names its institution; any other key id names none."""
    parts = key_id.split(":")
    return parts[1] if len(parts) == 3 and parts[0] == "his" and parts[1] else None


def is_partner_topic(topic: str) -> bool:
    """What a partner reads, so what the platform signs: a region's postings topic, a reply topic."""
    return topic.startswith(BUREAU_POSTINGS + ".") or is_reply_topic(topic)


class Signatures:
    def __init__(self, partners: KeyRing, own: SigningKey | None,
                 institution_keys_of: Callable[[list[str]], Awaitable[dict[str, bytes | None]]],
                 clock: Callable[[], datetime] = envelope.now, registry: CollectorRegistry | None = None) -> None:
        self._partners, self._own, self._keys_of, self._clock = partners, own, institution_keys_of, clock
        self._parsed: dict[bytes, dict[str, PartnerKey]] = {}
        registry = registry or CollectorRegistry()
        seconds = Counter("fma_signature_seconds", "Seconds spent verifying partners' signatures and signing the "
                          "platform's messages.", ["op"], registry=registry)
        self._seconds = {op: seconds.labels(op) for op in ("verify", "sign")}
        self._count = Counter("fma_signatures", "Partner messages verified (verdict: verified or the refusal) "
                              "and platform messages signed.", ["op", "verdict"], registry=registry)

    # -- what partners sent -------------------------------------------------------------------
    def partner(self, msg: Received) -> Verdict:
        """A bureau's (or any key-ring partner's) message: its signer, or why it is not believed."""
        started = time.perf_counter()
        verdict = verify_received(msg, self._partners.find, self._clock())
        self._counted("verify", started, [verdict])
        return verdict

    async def his(self, batch: list[Received]) -> list[Verdict]:
        """A batch from a HIS topic: each message's signer. One Redis round trip for the keys of
        every institution that signed in the batch (none when no message names a HIS key)."""
        codes = {code for msg in batch if (code := _institution_of(msg.headers.get(SIGNER, "")))}
        stored = await self._keys_of(sorted(codes)) if codes else {}
        known: dict[str, PartnerKey] = {}
        for code, raw in stored.items():
            if raw:
                known.update(self._parse(code, raw))
        started = time.perf_counter()
        now = self._clock()

        def find(key_id: str) -> PartnerKey | None:
            return known.get(key_id) or self._partners.find(key_id)

        verdicts = [verify_received(msg, find, now) for msg in batch]
        self._counted("verify", started, verdicts)
        return verdicts

    def _parse(self, code: str, raw: bytes) -> dict[str, PartnerKey]:
        if (parsed := self._parsed.get(raw)) is not None:
            return parsed
        try:
            region, keys = decode_institution_keys(raw)
            parsed = {k.key_id: k for k in institution_keys(
                code, region, [InstitutionKey.model_validate(k) for k in keys])}
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            # written by this service from a validated registration: a defect, and no key believed
            log.error("institution %s: stored keys unreadable (%s); its messages are not believed", shown(code),
                      exc.__class__.__name__)
            parsed = {}
        if len(self._parsed) >= _PARSED_MOST:
            self._parsed.clear()
        self._parsed[raw] = parsed
        return parsed

    def _counted(self, op: str, started: float, verdicts: list[Verdict]) -> None:
        self._seconds[op].inc(time.perf_counter() - started)
        tally = TallyCounter(v.value if isinstance(v, SignatureRefused) else "verified" for v in verdicts)
        for verdict, n in tally.items():
            self._count.labels(op, verdict).inc(n)

    # -- what the platform says ---------------------------------------------------------------
    def signed(self, messages: list[Outgoing]) -> list[Outgoing]:
        """The messages with the platform's signature on those a partner reads (each signed once:
        call this once, before the delivery that may be retried)."""
        if not any(is_partner_topic(m.topic) for m in messages):
            return messages
        if self._own is None:
            raise RuntimeError("settlement has no signing key (SIGNING_KEY_ID, SIGNING_KEY_FILE)")
        started = time.perf_counter()
        out, n = [], 0
        for m in messages:
            if is_partner_topic(m.topic):
                m = Outgoing(m.topic, m.key, m.value, {**(m.headers or {}), **self._own.headers(m.topic, m.key, m.value)})
                n += 1
            out.append(m)
        self._seconds["sign"].inc(time.perf_counter() - started)
        self._count.labels("sign", "signed").inc(n)
        return out


def answered_only_on(msg: Received, prefix: str | None) -> Received:
    """The message as its answers see it: a `reply_to` the sender may not be answered on (another
    institution's reply topic, or any for a sender that proved nothing) is taken off, and logged."""
    asked = msg.headers.get("reply_to")
    if not asked or (prefix is not None and asked.startswith(prefix)):
        return msg
    if prefix is not None:
        log.warning("ignored reply_to %s on %s[%d]@%d: not a reply topic of the signer (%s…)", shown(asked),
                    msg.topic, msg.partition, msg.offset, prefix)
    return dataclasses.replace(msg, headers={k: v for k, v in msg.headers.items() if k != "reply_to"})
