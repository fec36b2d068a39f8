"""Payment references (付款识别码): the short code a grantor's payment SMS carries, by which the
grantor disputes that payment ("非本人授权请回复BF{reference}").

8 characters of Crockford base32 (0-9 A-Z without I L O U) of the first 40 bits of
sha256("{institution}:{charge}:{grantor}"). A reference is unique per grantor, not globally:
it is always looked up together with the grantor who sent it.
"""

from __future__ import annotations

import hashlib
import re

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_PATTERN = r"^[0-9A-HJKMNP-TV-Z]{8}$"
_REFERENCE = re.compile(REFERENCE_PATTERN)
# What a person may type for a character: O for 0, I and L for 1 (Crockford's reading rules).
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SPACES = re.compile(r"[\s\u3000\-]+")


def payment_reference(institution_code: str, charge_id: str, grantor_id: str) -> str:
    """The reference of the payment `grantor_id` made for the charge: 8 Crockford base32 chars."""
    digest = hashlib.sha256(f"{institution_code}:{charge_id}:{grantor_id}".encode()).digest()
    bits = int.from_bytes(digest[:5], "big")  # the first 40 bits: 8 characters of 5 bits
    return "".join(ALPHABET[(bits >> shift) & 31] for shift in range(35, -1, -5))


def read_reference(text: str) -> str | None:
    """The reference in what a person typed or replied ("BF 7K2P9QXM", "bf7k2p9qxm", "7K2P 9QXM"),
    or None when it holds none: upper-cased, spaces dropped, O read as 0 and I/L as 1, an optional
    leading "BF" accepted."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    compact = _SPACES.sub("", text.upper())
    if compact.startswith("BF") and len(compact) == 10:
        compact = compact[2:]
    compact = compact.translate(_READ_AS)
    return compact if _REFERENCE.fullmatch(compact) else None


def may_hold_grantor_line(value: bytes) -> bool:
    """Whether a settlement.results record may hold a grantor line: settlement writes each line's
    source as JSON text, so a record without the bytes `"grantor"` has none (a charge the patient
    or cash paid alone, most of them). Binding's reference projection and notify's payment SMS
    pass such a record over unparsed; one with them is parsed and checked in full."""
    return b'"grantor"' in value
