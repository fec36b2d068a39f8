"""Keys for `make run`, the tests, the simulator and the bench: never for a deployment.

`DevKeys.create(dir)` makes, with fresh random keys, what an operator and the partners would hold:
one key per regional bureau (`bureau:<region>:k1`, every region of regions.json), the gateway's
(`gateway:k1`) and each service's (`settlement:k1`, `binding:k1`, `notify:k1`); the public halves
go into `dir/partner_keys.json` (the PARTNER_KEYS_FILE), each private half into a file of its own
(the SIGNING_KEY_FILE format: base64 of the 32 raw bytes). Institutions' keys (`his:<code>:k1`)
are made on first use and travel in their InstitutionRegistered. `DEV_KEYS_DIR` names the folder
to the processes that play the partners.

`DevIssuers` makes the two token issuers of the HTTP API a local platform needs (the app's back end
and the windows' sign-on) with the issuers file the gateway reads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from shared.regions import all_regions
from shared.signing import SigningKey
from shared.tokens import DEFAULT_CLOCK_SKEW_SECONDS, Role, TokenIssuer, TrustedIssuers

SERVICES = ("settlement", "binding", "notify", "gateway")
PARTNER_KEYS = "partner_keys.json"
# Valid from a day ago (clocks of test machines differ a little) for ten years.
_NOT_BEFORE = timedelta(days=1)
_LIFETIME = timedelta(days=3650)


def _window() -> tuple[str, str]:
    start = datetime.now(timezone.utc).replace(microsecond=0) - _NOT_BEFORE
    return start.isoformat(), (start + _LIFETIME).isoformat()


def _file_name(key_id: str) -> str:
    return key_id.replace(":", "_") + ".key"


class DevKeys:
    """A folder of development keys (see the module's docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._loaded: dict[str, SigningKey] = {}

    @classmethod
    def create(cls, folder: Path) -> DevKeys:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        keys = cls(folder)
        not_before, not_after = _window()
        entries: list[dict[str, Any]] = []
        for region in all_regions():
            entries.append(keys._entry(f"bureau:{region.code}:k1", "bureau", not_before, not_after, region.code))
        entries.append(keys._entry("gateway:k1", "gateway", not_before, not_after))
        for service in SERVICES:
            if service != "gateway":
                entries.append(keys._entry(f"{service}:k1", "platform", not_before, not_after))
        (folder / PARTNER_KEYS).write_text(json.dumps({"keys": entries}, indent=1))
        return keys

    @classmethod
    def from_env(cls) -> DevKeys:
        folder = os.environ.get("DEV_KEYS_DIR")
        if not folder:
            raise RuntimeError("DEV_KEYS_DIR is not set: start the stack with tooling.devstack (make run, the tests)")
        return cls(Path(folder))

    def _entry(self, key_id: str, owner: str, not_before: str, not_after: str,
               region: str | None = None) -> dict[str, Any]:
        key = self._new(key_id)
        entry = {"key_id": key_id, "owner": owner, "public_key": key.public_b64,
                 "not_before": not_before, "not_after": not_after}
        return entry | ({"region": region} if region else {})

    def _new(self, key_id: str) -> SigningKey:
        key = SigningKey.generate(key_id)
        path = self.folder / _file_name(key_id)
        path.write_text(key.private_b64)
        path.chmod(0o600)
        self._loaded[key_id] = key
        return key

    @property
    def partner_keys_file(self) -> Path:
        return self.folder / PARTNER_KEYS

    def key_file(self, key_id: str) -> Path:
        return self.folder / _file_name(key_id)

    def signing_key(self, key_id: str) -> SigningKey:
        if key_id not in self._loaded:
            self._loaded[key_id] = SigningKey.load(key_id, self.key_file(key_id))
        return self._loaded[key_id]

    def bureau(self, region: str) -> SigningKey:
        return self.signing_key(f"bureau:{region}:k1")

    def gateway(self) -> SigningKey:
        return self.signing_key("gateway:k1")

    def service(self, name: str) -> SigningKey:
        return self.gateway() if name == "gateway" else self.signing_key(f"{name}:k1")

    def institution(self, code: str, label: str = "k1") -> SigningKey:
        """The institution's key `his:<code>:<label>`, made on first use (kept in the folder, so
        every process that plays this HIS signs with the same key)."""
        key_id = f"his:{code}:{label}"
        if key_id in self._loaded:
            return self._loaded[key_id]
        path = self.key_file(key_id)
        if path.exists():
            return self.signing_key(key_id)
        try:
            with open(path, "x") as f:  # two processes making the same key: the first one wins
                key = SigningKey.generate(key_id)
                f.write(key.private_b64)
            path.chmod(0o600)
        except FileExistsError:
            pass
        return self.signing_key(key_id)

    def institution_public_keys(self, code: str, labels: tuple[str, ...] = ("k1",)) -> list[dict[str, str]]:
        """`InstitutionRegistered.public_keys` for the institution's development keys."""
        not_before, not_after = _window()
        return [{"key_id": f"his:{code}:{label}", "public_key": self.institution(code, label).public_b64,
                 "not_before": not_before, "not_after": not_after} for label in labels]

    def env(self) -> dict[str, str]:
        """What every process of the stack needs to know where the keys are."""
        return {"DEV_KEYS_DIR": str(self.folder), "PARTNER_KEYS_FILE": str(self.partner_keys_file)}

    def service_env(self, name: str) -> dict[str, str]:
        """The settings of one service: the trust anchor and its own signing key."""
        key = self.service(name)
        return self.env() | {"SIGNING_KEY_ID": key.key_id, "SIGNING_KEY_FILE": str(self.key_file(key.key_id))}


APP_ISSUER = "fma-dev-app"
WINDOWS_ISSUER = "fma-dev-window-sign-on"
ISSUERS_FILE = "token_issuers.json"
APP_KEY_FILE, WINDOWS_KEY_FILE = "app_issuer.jwk.json", "windows_issuer.jwk.json"


@dataclass(frozen=True)
class DevIssuers:
    """The two issuers of a local platform, made fresh: the app's back end (role `app`) and the
    windows' sign-on (`window`, `supervisor`), Ed25519 keys. `write(dir)` puts their private keys
    in `dir` (mode 0600) beside the public issuers file the gateway reads (`GATEWAY_TOKEN_ISSUERS`)."""

    app: TokenIssuer
    windows: TokenIssuer
    dir: Path | None = None

    @classmethod
    def generate(cls, max_lifetime_seconds: int = 8 * 3600) -> "DevIssuers":
        return cls(TokenIssuer.generate(APP_ISSUER, ["app"], kid="app-k1", max_lifetime_seconds=max_lifetime_seconds),
                   TokenIssuer.generate(WINDOWS_ISSUER, ["window", "supervisor"], kid="windows-k1",
                                        max_lifetime_seconds=max_lifetime_seconds))

    @classmethod
    def create(cls, dir: Path, max_lifetime_seconds: int = 8 * 3600) -> "DevIssuers":
        return cls.generate(max_lifetime_seconds).write(dir)

    def write(self, dir: Path) -> "DevIssuers":
        dir.mkdir(parents=True, exist_ok=True)
        self.app.save(dir / APP_KEY_FILE)
        self.windows.save(dir / WINDOWS_KEY_FILE)
        (dir / ISSUERS_FILE).write_text(json.dumps({"issuers": [self.app.entry(), self.windows.entry()]}, indent=2))
        return DevIssuers(self.app, self.windows, dir)

    @classmethod
    def open(cls, dir: Path) -> "DevIssuers":
        return cls(TokenIssuer.load(dir / APP_KEY_FILE), TokenIssuer.load(dir / WINDOWS_KEY_FILE), dir)

    def _in_dir(self, name: str) -> Path:
        if self.dir is None:
            raise ValueError("DevIssuers.write(dir) first: the issuers have no files yet")
        return self.dir / name

    @property
    def issuers_file(self) -> Path:
        return self._in_dir(ISSUERS_FILE)

    @property
    def app_key_file(self) -> Path:
        return self._in_dir(APP_KEY_FILE)

    def env(self) -> dict[str, str]:
        """What the gateway reads (the issuers) and what the simulator mints app tokens with."""
        return {"GATEWAY_TOKEN_ISSUERS": str(self.issuers_file), "APP_TOKEN_ISSUER_FILE": str(self.app_key_file)}

    def trusted(self, clock_skew_seconds: int = DEFAULT_CLOCK_SKEW_SECONDS) -> TrustedIssuers:
        return TrustedIssuers.from_dict({"issuers": [self.app.entry(), self.windows.entry()]}, clock_skew_seconds)

    def mint(self, role: Role, **claims: Any) -> str:
        """A token of `role` from the issuer that may mint it."""
        return (self.app if role == "app" else self.windows).mint(role, **claims)
