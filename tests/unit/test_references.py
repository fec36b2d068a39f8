"""Payment references (I-2, shared/references.py): 8 Crockford base32 characters, stable, and read
back from what a person types or replies by SMS."""

from __future__ import annotations

import hashlib
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.references import ALPHABET, REFERENCE_PATTERN, payment_reference, read_reference

no_db = settings(database=None, deadline=None, max_examples=300)
ids = st.text(alphabet="ABCDEFGHJK0123456789-._", min_size=1, max_size=64)


def test_the_reference_is_the_first_40_bits_of_the_sha256_in_crockford_base32():
    digest = hashlib.sha256(b"H610100-01:C1:610102198001011234").digest()
    bits = int.from_bytes(digest[:5], "big")
    expected = "".join(ALPHABET[(bits >> (35 - 5 * i)) & 31] for i in range(8))
    assert payment_reference("H610100-01", "C1", "610102198001011234") == expected
    assert set(ALPHABET) & set("ILOU") == set() and len(ALPHABET) == 32


@no_db
@given(ids, ids, ids)
def test_a_reference_matches_the_pattern_is_stable_and_reads_back(institution, charge, grantor):
    reference = payment_reference(institution, charge, grantor)
    assert re.fullmatch(REFERENCE_PATTERN, reference)
    assert reference == payment_reference(institution, charge, grantor)
    assert read_reference(reference) == reference
    assert read_reference(f"BF{reference}") == reference
    assert read_reference(f" bf {reference[:4].lower()} {reference[4:].lower()} ") == reference


def test_the_grantor_is_part_of_the_reference():
    assert payment_reference("H1", "C1", "A") != payment_reference("H1", "C1", "B")


def test_what_people_type_is_read_the_crockford_way():
    assert read_reference("BF 7K2P9QXM") == "7K2P9QXM"
    assert read_reference("bf7k2p9qxm") == "7K2P9QXM"
    assert read_reference("7K2P 9QXO") == "7K2P9QX0"      # O is 0
    assert read_reference("IL2P9QXM") == "112P9QXM"       # I and L are 1
    assert read_reference("BF7K2P9QXM。") is None          # not a reference: other characters
    assert read_reference("7K2P9QX") is None               # too short
    assert read_reference("7K2P9QXMU") is None             # too long
    assert read_reference("7K2U9QXM") is None              # U is not in the alphabet
    assert read_reference("") is None
    assert read_reference("x" * 1000) is None
