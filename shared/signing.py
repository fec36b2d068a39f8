"""Signatures of partner messages (contract version 3): what is signed, how, and who signed it.

Every message a partner writes carries three headers: `x-signer` (a key id), `x-signature-alg`
(`ed25519`) and `x-signature` (base64 of the Ed25519 signature). The signed bytes are

    b"fma-sig-v1\\n" + topic + b"\\n" + message key + b"\\n" + signer + b"\\n" + value

exactly as sent, so a signature cannot be moved to another topic, key or signer. The platform
believes a partner's authority only from the key that signed: bureaus', the gateway's and the
platform's public keys come from the operator's file (`PARTNER_KEYS_FILE`, a `KeyRing`), an
institution's from its bureau-signed InstitutionRegistered (`institution_keys`). Ed25519 by the
`cryptography` package (OpenSSL); deterministic, so any conforming library gives the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey as SodiumSigningKey, VerifyKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from shared import clock

PREFIX = b"fma-sig-v1\n"
SIGNER = "x-signer"
ALGORITHM = "x-signature-alg"
SIGNATURE = "x-signature"
ED25519 = "ed25519"
SIGNATURE_HEADERS = (SIGNER, ALGORITHM, SIGNATURE)

Owner = Literal["bureau", "gateway", "platform", "his"]
# Key ids travel in a header and name keys in Redis: a bounded alphabet, never raw input.
KEY_ID_PATTERN = r"^[A-Za-z0-9_.:-]{3,80}$"
_KEY_ID = re.compile(KEY_ID_PATTERN)


class SignatureRefused(StrEnum):
    """Why a partner message was not believed (contract version 3)."""

    UNSIGNED = "UNSIGNED"
    UNKNOWN_SIGNER = "UNKNOWN_SIGNER"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    NOT_SIGNERS = "NOT_SIGNERS"


REFUSAL_TEXTS: dict[SignatureRefused, tuple[str, str]] = {
    SignatureRefused.UNSIGNED: ("消息未签名", "the message carries no signature"),
    SignatureRefused.UNKNOWN_SIGNER: ("签名密钥未登记、已停用或未生效",
                                      "the signing key is not known, retired or not yet valid"),
    SignatureRefused.BAD_SIGNATURE: ("签名无效", "the signature does not match the message"),
    SignatureRefused.NOT_SIGNERS: ("签名方无权代表该机构或地区", "the signer may not speak for this institution or region"),
}


def signed_bytes(topic: str, key: bytes | None, signer: str, value: bytes) -> bytes:
    """The bytes a signature covers (contract.md, version 3)."""
    return b"".join((PREFIX, topic.encode(), b"\n", key or b"", b"\n", signer.encode(), b"\n", value))


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


class SigningKey:
    """One private Ed25519 key and its key id: how the platform, and in tests a partner, signs."""

    def __init__(self, key_id: str, private: Ed25519PrivateKey) -> None:
        if not _KEY_ID.fullmatch(key_id):
            raise ValueError(f"key id {key_id!r} is outside {KEY_ID_PATTERN}")
        self.key_id, self._private = key_id, private
        # Signing goes through libsodium (about 26 µs against 38 µs here); `cryptography` keeps the
        # key's generation, files and encodings. Ed25519 is deterministic: the same bytes either way.
        self._sodium = SodiumSigningKey(private.private_bytes_raw())

    @classmethod
    def generate(cls, key_id: str) -> SigningKey:
        return cls(key_id, Ed25519PrivateKey.generate())

    @classmethod
    def from_b64(cls, key_id: str, private_b64: str) -> SigningKey:
        raw = _b64decode(private_b64.strip())
        if len(raw) != 32:
            raise ValueError("an Ed25519 private key is 32 bytes")
        return cls(key_id, Ed25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def load(cls, key_id: str, path: Path) -> SigningKey:
        """A key file holds the base64 of the 32 raw private bytes (SIGNING_KEY_FILE)."""
        return cls.from_b64(key_id, Path(path).read_text())

    @property
    def private_b64(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        return base64.b64encode(self._private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())).decode()

    @property
    def public_b64(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return base64.b64encode(self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()

    def sign(self, topic: str, key: bytes | None, value: bytes) -> str:
        """base64 of the signature over `signed_bytes`."""
        return base64.b64encode(self._sodium.sign(signed_bytes(topic, key, self.key_id, value)).signature).decode()

    def headers(self, topic: str, key: bytes | None, value: bytes) -> dict[str, str]:
        """The three headers a signed message carries."""
        return {SIGNER: self.key_id, ALGORITHM: ED25519, SIGNATURE: self.sign(topic, key, value)}

    def __repr__(self) -> str:  # never the private bytes
        return f"SigningKey({self.key_id!r})"


class PublicKeyEntry(BaseModel):
    """One key of the operator's PARTNER_KEYS_FILE."""

    model_config = ConfigDict(extra="forbid")

    key_id: str = Field(pattern=KEY_ID_PATTERN)
    owner: Literal["bureau", "gateway", "platform"]
    region: str | None = Field(None, pattern=r"^[0-9]{6}$")
    public_key: str = Field(min_length=40, max_length=60)
    not_before: AwareDatetime
    not_after: AwareDatetime

    @model_validator(mode="after")
    def _bureaus_have_a_region(self) -> PublicKeyEntry:
        if (self.owner == "bureau") != (self.region is not None):
            raise ValueError("a bureau key names its region, and only a bureau key does")
        return self


class InstitutionKey(BaseModel):
    """One public key of an institution, as its InstitutionRegistered carries it."""

    model_config = ConfigDict(extra="ignore")

    key_id: str = Field(pattern=KEY_ID_PATTERN)
    public_key: str = Field(min_length=40, max_length=60)
    not_before: AwareDatetime
    not_after: AwareDatetime

    @field_validator("key_id", "public_key", mode="before")
    @classmethod
    def _strings_stay_strings(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value

    @field_validator("public_key")
    @classmethod
    def _is_a_key(cls, value: str) -> str:
        _raw_public(value)
        return value


def _raw_public(b64: str) -> bytes:
    try:
        raw = _b64decode(b64)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("public_key is not base64") from exc
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return raw


@dataclass(frozen=True)
class PartnerKey:
    """A public key the platform knows, with whose it is and when it is valid."""

    key_id: str
    owner: Owner
    public_key: bytes
    not_before: datetime
    not_after: datetime
    region: str | None = None
    institution: str | None = None

    def valid_at(self, at: datetime) -> bool:
        return self.not_before <= at < self.not_after

    @functools.cached_property
    def verifier(self) -> VerifyKey:
        """Loaded once per key, not once per message; libsodium verifies in about 62 µs a message
        here against 131 µs by `cryptography` (OpenSSL)."""
        return VerifyKey(self.public_key)

    def as_signer(self) -> Signer:
        return Signer(self.key_id, self.owner, self.region, self.institution,
                      self.key_id.split(":", 1)[0] if self.owner == "platform" else None)


@dataclass(frozen=True)
class Signer:
    """Who signed a message that verified. `service`: for a platform key, which service's."""

    key_id: str
    owner: Owner
    region: str | None = None
    institution: str | None = None
    service: str | None = None


class KeyRing:
    """The operator's trust anchor: bureaus', the gateway's and the platform's public keys."""

    def __init__(self, keys: Mapping[str, PartnerKey]) -> None:
        self._keys = dict(keys)

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        return cls.parse(Path(path).read_text())

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        document = json.loads(text)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError('a partner keys file is {"keys": [...]}')
        keys: dict[str, PartnerKey] = {}
        for raw in document["keys"]:
            entry = PublicKeyEntry.model_validate(raw)
            if entry.key_id in keys:
                raise ValueError(f"key id {entry.key_id} is listed twice")
            keys[entry.key_id] = PartnerKey(entry.key_id, entry.owner, _raw_public(entry.public_key),
                                            entry.not_before, entry.not_after, region=entry.region)
        return cls(keys)

    def find(self, key_id: str) -> PartnerKey | None:
        return self._keys.get(key_id)

    def __len__(self) -> int:
        return len(self._keys)


def institution_keys(code: str, region: str, keys: list[InstitutionKey]) -> list[PartnerKey]:
    """An institution's keys as the platform knows them; each key id must be `his:<code>:…`, so a
    registration can never carry a key that names another institution."""
    prefix = f"his:{code}:"
    for k in keys:
        if not k.key_id.startswith(prefix):
            raise ValueError(f"institution key ids begin with {prefix!r}")
    return [PartnerKey(k.key_id, "his", _raw_public(k.public_key), k.not_before, k.not_after,
                       region=region, institution=code) for k in keys]


KeyFinder = Callable[[str], PartnerKey | None]


def verify(topic: str, key: bytes | None, value: bytes, headers: Mapping[str, str], find: KeyFinder,
           now: datetime) -> Signer | SignatureRefused:
    """Who signed this message, or why it is not believed. `find` gives the known key of an id."""
    signer_id = headers.get(SIGNER, "")
    algorithm = headers.get(ALGORITHM, "")
    signature = headers.get(SIGNATURE, "")
    if not signer_id and not signature:
        return SignatureRefused.UNSIGNED
    if not _KEY_ID.fullmatch(signer_id):
        return SignatureRefused.UNKNOWN_SIGNER
    known = find(signer_id)
    # `now` is the platform's clock; a key's window was set by its owner in real time, so a clock a
    # test or a drill moved (CLOCK_OFFSET_SECONDS) must neither expire keys early nor revive old ones.
    if known is None or not known.valid_at(clock.real_time(now)):
        return SignatureRefused.UNKNOWN_SIGNER
    if algorithm != ED25519:
        return SignatureRefused.BAD_SIGNATURE
    try:
        raw = _b64decode(signature)
        known.verifier.verify(signed_bytes(topic, key, signer_id, value), raw)
    except (binascii.Error, ValueError, CryptoError):
        return SignatureRefused.BAD_SIGNATURE
    return known.as_signer()


def verify_received(msg: Any, find: KeyFinder, now: datetime) -> Signer | SignatureRefused:
    """`verify` of a `shared.kafka.Received`."""
    return verify(msg.topic, msg.key, msg.value, msg.headers, find, now)


def refusal_texts(code: SignatureRefused) -> tuple[str, str]:
    return REFUSAL_TEXTS[code]
