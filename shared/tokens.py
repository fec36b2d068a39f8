"""Bearer tokens of the HTTP API: who is asking, and for whom they may act.

HS256 JWTs signed with `GATEWAY_JWT_KEY`. The gateway verifies them; `make run`, the simulator and
the tests mint them with the same key. The claims are the layout every party codes against:

- `role` `app`: `sub` is the real-name-authenticated person's ID number; that person only.
- `role` `window`: `clerk_id` and `region` (the clerk's bureau); may act for anyone.
- `role` `supervisor`: a window clerk who may also read the whole region's audit list.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Literal

import jwt

from shared.identity import is_valid_id_number

ALGORITHM = "HS256"
MIN_KEY_BYTES = 32
Role = Literal["app", "window", "supervisor"]
_CLERK = re.compile(r"[A-Za-z0-9_-]{1,32}")
_REGION = re.compile(r"\d{6}")


class InvalidToken(Exception):
    """Missing, expired, badly signed or not of a known shape: answered 401."""


@dataclass(frozen=True)
class Principal:
    role: Role
    person_id: str | None = None  # app
    clerk_id: str | None = None   # window, supervisor
    region: str | None = None     # window, supervisor

    @property
    def at_window(self) -> bool:
        return self.role in ("window", "supervisor")


def mint(key: str, role: Role, *, person_id: str | None = None, clerk_id: str | None = None,
         region: str | None = None, ttl_seconds: int = 8 * 3600, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {"role": role, "iat": issued, "exp": issued + ttl_seconds}
    if role == "app":
        claims["sub"] = person_id
    else:
        claims |= {"clerk_id": clerk_id, "region": region}
    _principal(claims)  # refuse to mint what verify would refuse
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(key: str, token: str) -> Principal:
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["exp", "role"]})
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    return _principal(claims)


def _principal(claims: dict) -> Principal:
    role = claims.get("role")
    if role == "app":
        sub = claims.get("sub")
        if not isinstance(sub, str) or not is_valid_id_number(sub):
            raise InvalidToken("an app token names a valid ID number in `sub`")
        return Principal("app", person_id=sub)
    if role in ("window", "supervisor"):
        clerk, region = claims.get("clerk_id"), claims.get("region")
        if not (isinstance(clerk, str) and _CLERK.fullmatch(clerk) and isinstance(region, str)
                and _REGION.fullmatch(region)):
            raise InvalidToken("a window token names `clerk_id` and a 6-digit `region`")
        return Principal(role, clerk_id=clerk, region=region)
    raise InvalidToken("unknown role")
