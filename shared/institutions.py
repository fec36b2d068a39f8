"""Designated institutions (定点医药机构), registered by the regional bureaus on
`bureau.institutions` (contract.md, version 2). Settlement checks every charge against them and
notify names them in SMS, each from a projection of its own, so the event's shape lives here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.regions import RegionCode
from shared.signing import InstitutionKey
from shared.wire import Text

INSTITUTION_REGISTERED = "InstitutionRegistered"
INSTITUTION_EVENT_TYPES = frozenset({INSTITUTION_REGISTERED})
# Institution codes go into Redis keys and derived ids: a bounded alphabet keeps them unambiguous.
INSTITUTION_CODE_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"


class InstitutionRegistered(BaseModel):
    """A hospital, clinic or pharmacy contracted with insurance in a pooling region."""

    model_config = ConfigDict(extra="ignore")

    institution_code: Text = Field(pattern=INSTITUTION_CODE_PATTERN)
    name: Text = Field(min_length=1, max_length=64)
    region: RegionCode
    kind: Literal["hospital", "clinic", "pharmacy"]
    public_keys: list[InstitutionKey] = Field(min_length=1, max_length=8, description=(
        "Contract version 3: the institution's public keys (its HIS signs with them). A later "
        "registration replaces the list: a key left out, or past its not_after, is retired."))
