"""Who signs what the simulator (and the bench) publishes, exactly as the partners would
(contract version 3), and the check a partner makes of what the platform tells it.

A HIS message is signed with its institution's key (`his:<code>:k1`), a bureau message with the
key of the bureau of the region it speaks for (`bureau:<region>:k1`), and what the app's back end
and the service windows put on binding.commands (and the SMS uplink) with the gateway's key: the
simulator plays them all. The keys are the development keys of the running stack (DEV_KEYS_DIR,
tooling/devkeys.py); the platform's public keys are the operator's file (PARTNER_KEYS_FILE).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.signing import KeyRing, SignatureRefused, Signer, SigningKey, verify
from shared.topics import (BINDING_COMMANDS, BUREAU_ACCOUNTS, BUREAU_DISPUTES, BUREAU_INSTITUTIONS, HIS_CHARGES,
                           HIS_RECONCILIATION, SMS_UPLINK)
from tooling.devkeys import DevKeys

HIS_TOPICS = frozenset({HIS_CHARGES, HIS_RECONCILIATION})
BUREAU_TOPICS = frozenset({BUREAU_ACCOUNTS, BUREAU_INSTITUTIONS, BUREAU_DISPUTES})
GATEWAY_TOPICS = frozenset({BINDING_COMMANDS, SMS_UPLINK})

Headers = list[tuple[str, bytes]]


def reply_topic(institution_code: str, name: str = "sim") -> str:
    """A reply topic a HIS may ask for: it must begin `reply.<its institution code>.`."""
    return f"reply.{institution_code}.{name}"


class Partners:
    """The simulated partners' private keys: which one signs a message, and its headers."""

    def __init__(self, keys: DevKeys) -> None:
        self.keys = keys

    @classmethod
    def from_env(cls) -> Partners:
        return cls(DevKeys.from_env())

    def signer(self, topic: str, payload: Mapping[str, Any]) -> SigningKey:
        """The partner a message speaks for: the institution of a HIS message, the bureau of a
        bureau message's region, the gateway for binding.commands and the uplink."""
        if topic in HIS_TOPICS:
            return self.keys.institution(str(payload["institution_code"]))
        if topic in BUREAU_TOPICS:
            return self.keys.bureau(str(payload["region"]))
        if topic in GATEWAY_TOPICS:
            return self.keys.gateway()
        raise ValueError(f"{topic} is not a partner topic: nobody signs it")

    def headers(self, topic: str, key: bytes | None, value: bytes, payload: Mapping[str, Any],
                extra: Mapping[str, str] | None = None) -> Headers:
        """Kafka headers of the signed message (aiokafka's form), with `extra` ones beside."""
        signed = self.signer(topic, payload).headers(topic, key, value)
        return [(k, v.encode()) for k, v in {**(extra or {}), **signed}.items()]

    def institution_public_keys(self, code: str) -> list[dict[str, str]]:
        """What the institution's InstitutionRegistered carries (`public_keys`)."""
        return self.keys.institution_public_keys(code)


class PlatformCheck:
    """How a bureau or a HIS checks what the platform told it: signed by a platform key the
    operator lists (PARTNER_KEYS_FILE), over these very bytes, by the service expected."""

    def __init__(self, ring: KeyRing, service: str = "settlement") -> None:
        self._ring, self.service = ring, service

    @classmethod
    def from_env(cls, service: str = "settlement") -> PlatformCheck:
        path = os.environ.get("PARTNER_KEYS_FILE")
        if not path:
            raise RuntimeError("PARTNER_KEYS_FILE is not set: the platform's signatures cannot be checked")
        return cls(KeyRing.load(Path(path)), service)

    def check(self, topic: str, key: bytes | None, value: bytes, headers: Any, now: datetime) -> str | None:
        """None when the message is the platform's, else why not (a refusal code)."""
        found = verify(topic, key, value, as_text(headers), self._ring.find, now)
        if isinstance(found, SignatureRefused):
            return found.value
        return None if _is_platform(found, self.service) else SignatureRefused.NOT_SIGNERS.value


def _is_platform(signer: Signer, service: str) -> bool:
    return signer.owner == "platform" and signer.service == service


def as_text(headers: Any) -> dict[str, str]:
    """aiokafka's header pairs (name, bytes) as a dict of text; a header that is not UTF-8 is empty."""
    out: dict[str, str] = {}
    for name, raw in headers or ():
        try:
            out[name] = raw.decode() if isinstance(raw, bytes | bytearray) else str(raw or "")
        except UnicodeDecodeError:
            out[name] = ""
    return out
