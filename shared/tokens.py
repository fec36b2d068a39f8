"""Bearer tokens of the HTTP API: who is asking, who vouches for it, and for whom they may act.

Asymmetric JWTs only (contract version 3): the gateway holds public keys, never a secret that
could mint. The operator lists the issuers it believes in a JSON file (`GATEWAY_TOKEN_ISSUERS`):

    {"issuers": [{"iss": "https://app.example/fma", "jwks": {"keys": [<JWK>, ...]},
                  "roles": ["app"], "max_lifetime_seconds": 3600}, ...]}

Keys are Ed25519 (`kty` OKP, alg EdDSA) or P-256 (`kty` EC, alg ES256), picked by the token's
`kid` header among its issuer's keys. Every token carries `iss`, `aud` (`fma-gateway`), `iat`
and `exp` (`exp - iat` at most the issuer's `max_lifetime_seconds`), and a `role` its issuer may
mint (the app's issuer `app` only; the windows' sign-on `window` and `supervisor`). Beside those,
the claims every party codes against:

- `role` `app`: `sub` is the real-name-authenticated person's ID number; that person only.
- `role` `window`: `clerk_id` and `region` (the clerk's bureau); acts for grantors of that region.
- `role` `supervisor`: a window clerk who may also read the region's audit list.
- `jti` (optional, minted always here): the token's id, by which one token can be revoked.

`TokenIssuer` is the other side, for `make run`, the simulator and the tests: an issuer's
private key that mints (`tooling.devkeys.DevIssuers` makes the two a local platform needs).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from shared.identity import is_valid_id_number

AUDIENCE = "fma-gateway"
Role = Literal["app", "window", "supervisor"]
ROLES = frozenset({"app", "window", "supervisor"})
# The algorithm a key of each type signs with; nothing else is accepted (no HS*, no "none").
ALGORITHM_OF = {("OKP", "Ed25519"): "EdDSA", ("EC", "P-256"): "ES256"}
DEFAULT_CLOCK_SKEW_SECONDS = 30
MAX_CLOCK_SKEW_SECONDS = 300
_CLERK = re.compile(r"[A-Za-z0-9_-]{1,32}")
_REGION = re.compile(r"\d{6}")
_KID = re.compile(r"[\x21-\x7e]{1,128}")


class InvalidToken(Exception):
    """Missing, expired, badly signed, from an unknown issuer or key, or not of a known shape: 401."""


class IssuersFileError(ValueError):
    """The issuers file cannot be read or is not of the documented shape: the gateway does not start."""


@dataclass(frozen=True)
class Principal:
    role: Role
    person_id: str | None = None  # app
    clerk_id: str | None = None   # window, supervisor
    region: str | None = None     # window, supervisor
    jti: str | None = None
    issued_at: int = 0
    issuer: str = ""

    @property
    def at_window(self) -> bool:
        return self.role in ("window", "supervisor")

    @property
    def key(self) -> str:
        """Who this is, for per-principal state (rate limits, idempotency keys): a person as the
        app, or a clerk of a region. Never holds an ID number in clear (Redis keys are listed by
        operators): the person is named by a digest."""
        if self.role == "app":
            return "app:" + hashlib.sha256(f"fma-principal:{self.person_id}".encode()).hexdigest()[:32]
        return f"clerk:{self.region}:{self.clerk_id}"


# -- the gateway's side: issuers it believes --------------------------------------------------

@dataclass(frozen=True)
class Issuer:
    """One issuer the operator lists: its public keys by `kid`, the roles it may mint and the
    longest lifetime of its tokens."""

    iss: str
    keys: Mapping[str, jwt.PyJWK]
    roles: frozenset[str]
    max_lifetime_seconds: int

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> "Issuer":
        iss, roles, lifetime = entry.get("iss"), entry.get("roles"), entry.get("max_lifetime_seconds")
        if not isinstance(iss, str) or not iss:
            raise IssuersFileError("every issuer has an `iss` (a non-empty string)")
        if not isinstance(roles, list) or not roles or not set(roles) <= ROLES:
            raise IssuersFileError(f"issuer {iss}: `roles` is a non-empty list of {sorted(ROLES)}")
        if "app" in roles and len(set(roles)) > 1:
            # The app's issuer mints for persons, the windows' sign-on for clerks: one issuer both
            # would let a compromised app back end sign clerks in.
            raise IssuersFileError(f"issuer {iss}: `app` is an issuer's only role (windows have their own)")
        if not isinstance(lifetime, int) or isinstance(lifetime, bool) or not 1 <= lifetime <= 86_400:
            raise IssuersFileError(f"issuer {iss}: `max_lifetime_seconds` is an integer from 1 to 86400")
        jwks = entry.get("jwks")
        listed = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(listed, list) or not listed:
            raise IssuersFileError(f"issuer {iss}: `jwks` is {{\"keys\": [<JWK>, ...]}} with at least one key")
        keys: dict[str, jwt.PyJWK] = {}
        for jwk in listed:
            kid = jwk.get("kid") if isinstance(jwk, Mapping) else None
            if not isinstance(kid, str) or not _KID.fullmatch(kid) or kid in keys:
                raise IssuersFileError(f"issuer {iss}: every key has a unique printable `kid`")
            if "d" in jwk:
                raise IssuersFileError(f"issuer {iss}: key {kid} holds a private part (`d`): list public keys only")
            algorithm = ALGORITHM_OF.get((jwk.get("kty"), jwk.get("crv")))
            if algorithm is None or jwk.get("alg", algorithm) != algorithm:
                raise IssuersFileError(f"issuer {iss}: key {kid} is neither Ed25519 (EdDSA) nor P-256 (ES256)")
            try:
                keys[kid] = jwt.PyJWK(dict(jwk), algorithm=algorithm)
            except jwt.PyJWTError as exc:
                raise IssuersFileError(f"issuer {iss}: key {kid} cannot be read ({exc})") from exc
        return cls(iss, keys, frozenset(roles), lifetime)


@dataclass(frozen=True)
class TrustedIssuers:
    """Every issuer of the file, by `iss`; `verify` is the gateway's whole token check."""

    issuers: Mapping[str, Issuer]
    clock_skew_seconds: int = DEFAULT_CLOCK_SKEW_SECONDS

    @classmethod
    def load(cls, path: str | os.PathLike, clock_skew_seconds: int = DEFAULT_CLOCK_SKEW_SECONDS) -> "TrustedIssuers":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise IssuersFileError(f"GATEWAY_TOKEN_ISSUERS {path}: {exc}") from exc
        return cls.from_dict(data, clock_skew_seconds)

    @classmethod
    def from_dict(cls, data: Any, clock_skew_seconds: int = DEFAULT_CLOCK_SKEW_SECONDS) -> "TrustedIssuers":
        listed = data.get("issuers") if isinstance(data, Mapping) else None
        if not isinstance(listed, list) or not listed:
            raise IssuersFileError('the issuers file is {"issuers": [...]} with at least one issuer')
        issuers: dict[str, Issuer] = {}
        for entry in listed:
            issuer = Issuer.from_entry(entry if isinstance(entry, Mapping) else {})
            if issuer.iss in issuers:
                raise IssuersFileError(f"issuer {issuer.iss} is listed twice")
            issuers[issuer.iss] = issuer
        if not 0 <= clock_skew_seconds <= MAX_CLOCK_SKEW_SECONDS:
            raise IssuersFileError(f"the clock skew allowed is 0 to {MAX_CLOCK_SKEW_SECONDS} seconds")
        return cls(issuers, clock_skew_seconds)

    @property
    def longest_lifetime_seconds(self) -> int:
        """How long any token stays valid at most (with the skew): what a revocation must outlive."""
        return max(i.max_lifetime_seconds for i in self.issuers.values()) + self.clock_skew_seconds

    def verify(self, token: str, now: float | None = None) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"not a JWT ({exc})") from exc
        issuer = self.issuers.get(unverified.get("iss")) if isinstance(unverified.get("iss"), str) else None
        if issuer is None:
            raise InvalidToken("no `iss`, or an issuer this gateway does not know")
        kid = header.get("kid")
        key = issuer.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("no `kid`, or not a key of its issuer")
        if header.get("alg") != key.algorithm_name:
            raise InvalidToken(f"`alg` is not {key.algorithm_name}, the algorithm of key {kid}")
        at = time.time() if now is None else now
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[key.algorithm_name], audience=AUDIENCE, issuer=issuer.iss,
                leeway=self.clock_skew_seconds,
                options={"require": ["iss", "aud", "iat", "exp"], "verify_iat": False, "verify_exp": False,
                         "verify_nbf": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        issued, expires = claims["iat"], claims["exp"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (issued, expires)):
            raise InvalidToken("`iat` and `exp` are integers (seconds)")
        if issued > at + self.clock_skew_seconds:
            raise InvalidToken("issued in the future")
        if expires <= at - self.clock_skew_seconds:
            raise InvalidToken("expired")
        if not 0 < expires - issued <= issuer.max_lifetime_seconds:
            raise InvalidToken(f"lives longer than its issuer's {issuer.max_lifetime_seconds} s")
        if claims.get("role") not in issuer.roles:
            raise InvalidToken("a role its issuer may not mint")
        return _principal(claims, issuer.iss)


def _principal(claims: Mapping[str, Any], issuer: str) -> Principal:
    role, jti = claims.get("role"), claims.get("jti")
    if jti is not None and not (isinstance(jti, str) and _KID.fullmatch(jti)):
        raise InvalidToken("`jti` is a printable string of at most 128 characters")
    common = {"jti": jti, "issued_at": int(claims.get("iat", 0)), "issuer": issuer}
    if role == "app":
        sub = claims.get("sub")
        if not isinstance(sub, str) or not is_valid_id_number(sub):
            raise InvalidToken("an app token names a valid ID number in `sub`")
        return Principal("app", person_id=sub, **common)
    if role in ("window", "supervisor"):
        clerk, region = claims.get("clerk_id"), claims.get("region")
        if not (isinstance(clerk, str) and _CLERK.fullmatch(clerk) and isinstance(region, str)
                and _REGION.fullmatch(region)):
            raise InvalidToken("a window token names `clerk_id` and a 6-digit `region`")
        return Principal(role, clerk_id=clerk, region=region, **common)
    raise InvalidToken("unknown role")


# -- the issuers' side: minting (make run, the simulator, the tests) ----------------------------

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class TokenIssuer:
    """An issuer's signing key: mints tokens the gateway believes once `entry()` is in its file."""

    iss: str
    kid: str
    private_key: PrivateKey = field(repr=False)
    roles: tuple[str, ...]
    max_lifetime_seconds: int = 3600

    @classmethod
    def generate(cls, iss: str, roles: Iterable[str], *, kid: str | None = None, max_lifetime_seconds: int = 3600,
                 algorithm: Literal["EdDSA", "ES256"] = "EdDSA") -> "TokenIssuer":
        key = ed25519.Ed25519PrivateKey.generate() if algorithm == "EdDSA" else ec.generate_private_key(ec.SECP256R1())
        return cls(iss, kid or f"{algorithm.lower()}-{uuid.uuid4().hex[:8]}", key, tuple(roles), max_lifetime_seconds)

    @property
    def algorithm(self) -> str:
        return "EdDSA" if isinstance(self.private_key, ed25519.Ed25519PrivateKey) else "ES256"

    def _jwk(self, private: bool) -> dict[str, Any]:
        codec = OKPAlgorithm if self.algorithm == "EdDSA" else ECAlgorithm
        key = self.private_key if private else self.private_key.public_key()
        return json.loads(codec.to_jwk(key)) | {"kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def public_jwk(self) -> dict[str, Any]:
        return self._jwk(private=False)

    def entry(self, extra_keys: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
        """This issuer as the issuers file lists it (public key only)."""
        return {"iss": self.iss, "jwks": {"keys": [self.public_jwk(), *extra_keys]}, "roles": list(self.roles),
                "max_lifetime_seconds": self.max_lifetime_seconds}

    def save(self, path: Path) -> Path:
        """The private JWK with iss, roles and lifetime, readable by its owner only."""
        path.touch(mode=0o600)
        path.write_text(json.dumps({"iss": self.iss, "roles": list(self.roles),
                                    "max_lifetime_seconds": self.max_lifetime_seconds, "jwk": self._jwk(private=True)}))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TokenIssuer":
        data = json.loads(Path(path).read_text())
        jwk = data["jwk"]
        codec = OKPAlgorithm if jwk["kty"] == "OKP" else ECAlgorithm
        return cls(data["iss"], jwk["kid"], codec.from_jwk(json.dumps(jwk)), tuple(data["roles"]),
                   int(data["max_lifetime_seconds"]))

    def mint(self, role: Role, *, person_id: str | None = None, clerk_id: str | None = None,
             region: str | None = None, ttl_seconds: int | None = None, now: float | None = None,
             jti: str | None = None, **overrides: Any) -> str:
        """A token of `role`; `ttl_seconds` defaults to the issuer's longest lifetime (a negative
        one mints an expired token, for tests). `overrides` replace or (as None) drop claims, so
        tests can mint what the gateway must refuse."""
        issued = int(now if now is not None else time.time())
        ttl = self.max_lifetime_seconds if ttl_seconds is None else ttl_seconds
        claims: dict[str, Any] = {"iss": self.iss, "aud": AUDIENCE, "role": role, "iat": issued,
                                  "exp": issued + ttl, "jti": jti or str(uuid.uuid4())}
        if role == "app":
            claims["sub"] = person_id
        else:
            claims |= {"clerk_id": clerk_id, "region": region}
        headers = {"kid": self.kid}
        if "kid" in overrides:  # a header, not a claim
            kid = overrides.pop("kid")
            headers = {"kid": kid} if kid is not None else {}
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(claims, self.private_key, algorithm=self.algorithm, headers=headers or None)
