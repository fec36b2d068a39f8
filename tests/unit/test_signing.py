"""The signature of a partner message (contract version 3): what is signed and who is believed."""

from datetime import datetime, timedelta, timezone

import pytest

from shared.bureau import registration_refusal, transfer_refusal
from shared.signing import (KeyRing, PartnerKey, SignatureRefused, Signer, SigningKey, institution_keys,
                            signed_bytes, verify)
from shared.signing import InstitutionKey

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=timezone.utc)


def ring_of(*keys: SigningKey, owner: str = "bureau", region: str | None = "610100",
            not_before: datetime = NOW - timedelta(days=1), not_after: datetime = NOW + timedelta(days=1)):
    found = {k.key_id: PartnerKey(k.key_id, owner, __import__("base64").b64decode(k.public_b64), not_before,
                                  not_after, region=region) for k in keys}
    return found.get


def test_signed_bytes_are_prefix_topic_key_signer_value_on_lines():
    assert signed_bytes("his.charges", b"k", "his:H1:k1", b"{}") == b"fma-sig-v1\nhis.charges\nk\nhis:H1:k1\n{}"
    assert signed_bytes("t", None, "s:k1", b"v") == b"fma-sig-v1\nt\n\ns:k1\nv"


def test_a_signed_message_names_its_signer():
    key = SigningKey.generate("bureau:610100:k1")
    headers = key.headers("bureau.accounts", b"p", b"value")
    signer = verify("bureau.accounts", b"p", b"value", headers, ring_of(key), NOW)
    assert signer == Signer("bureau:610100:k1", "bureau", "610100")


@pytest.mark.parametrize("change", ["topic", "key", "value", "signer"])
def test_a_signature_does_not_move_to_another_topic_key_value_or_signer(change):
    key, other = SigningKey.generate("bureau:610100:k1"), SigningKey.generate("bureau:610100:k2")
    headers = key.headers("bureau.accounts", b"p", b"value")
    topic, k, value = "bureau.accounts", b"p", b"value"
    if change == "topic":
        topic = "bureau.disputes"
    elif change == "key":
        k = b"q"
    elif change == "value":
        value = b"valuf"
    else:
        headers = headers | {"x-signer": other.key_id}
    assert verify(topic, k, value, headers, ring_of(key, other), NOW) is SignatureRefused.BAD_SIGNATURE


def test_no_headers_is_unsigned_and_an_unknown_key_is_an_unknown_signer():
    key = SigningKey.generate("bureau:610100:k1")
    assert verify("t", None, b"v", {}, ring_of(key), NOW) is SignatureRefused.UNSIGNED
    stranger = SigningKey.generate("bureau:610100:k9")
    assert verify("t", None, b"v", stranger.headers("t", None, b"v"), ring_of(key), NOW) is SignatureRefused.UNKNOWN_SIGNER


def test_a_retired_or_not_yet_valid_key_is_an_unknown_signer():
    key = SigningKey.generate("bureau:610100:k1")
    headers = key.headers("t", None, b"v")
    retired = ring_of(key, not_before=NOW - timedelta(days=9), not_after=NOW - timedelta(seconds=1))
    early = ring_of(key, not_before=NOW + timedelta(seconds=1), not_after=NOW + timedelta(days=9))
    assert verify("t", None, b"v", headers, retired, NOW) is SignatureRefused.UNKNOWN_SIGNER
    assert verify("t", None, b"v", headers, early, NOW) is SignatureRefused.UNKNOWN_SIGNER


@pytest.mark.parametrize("headers", [
    {"x-signer": "bureau:610100:k1", "x-signature-alg": "sm2", "x-signature": "AAAA"},
    {"x-signer": "bureau:610100:k1", "x-signature-alg": "ed25519", "x-signature": "not base64!"},
    {"x-signer": "bureau:610100:k1", "x-signature-alg": "ed25519", "x-signature": ""},
    {"x-signer": "bureau:610100:k1", "x-signature-alg": "ed25519", "x-signature": "A" * 88},
])
def test_hostile_signature_headers_are_bad_signatures(headers):
    key = SigningKey.generate("bureau:610100:k1")
    assert verify("t", None, b"v", headers, ring_of(key), NOW) is SignatureRefused.BAD_SIGNATURE


def test_a_key_id_outside_the_alphabet_is_never_looked_up():
    looked = []
    assert verify("t", None, b"v", {"x-signer": "bureau:610100:k1\n", "x-signature": "x"},
                  lambda k: looked.append(k), NOW) is SignatureRefused.UNKNOWN_SIGNER
    assert looked == []


def test_the_keys_file_lists_bureaus_with_regions_and_refuses_a_key_listed_twice():
    key = SigningKey.generate("bureau:610100:k1")
    entry = {"key_id": key.key_id, "owner": "bureau", "region": "610100", "public_key": key.public_b64,
             "not_before": "2026-01-01T00:00:00+08:00", "not_after": "2027-01-01T00:00:00+08:00"}
    import json
    ring = KeyRing.parse(json.dumps({"keys": [entry]}))
    assert ring.find(key.key_id).region == "610100"
    with pytest.raises(ValueError):
        KeyRing.parse(json.dumps({"keys": [entry, entry]}))
    with pytest.raises(ValueError):
        KeyRing.parse(json.dumps({"keys": [entry | {"region": None}]}))
    with pytest.raises(ValueError):
        KeyRing.parse(json.dumps({"keys": [entry | {"owner": "gateway"}]}))


def test_an_institution_registration_cannot_carry_a_key_named_for_another_institution():
    key = SigningKey.generate("his:H2:k1")
    carried = InstitutionKey(key_id=key.key_id, public_key=key.public_b64,
                             not_before="2026-01-01T00:00:00+08:00", not_after="2027-01-01T00:00:00+08:00")
    with pytest.raises(ValueError):
        institution_keys("H1", "610100", [carried])
    [known] = institution_keys("H2", "610300", [carried])
    assert (known.owner, known.institution, known.region) == ("his", "H2", "610300")


def test_the_signing_key_never_shows_its_private_bytes():
    key = SigningKey.generate("settlement:k1")
    assert key.private_b64 not in repr(key)
    assert SigningKey.from_b64("settlement:k1", key.private_b64).public_b64 == key.public_b64


XIAN, BAOJI = Signer("bureau:610100:k1", "bureau", "610100"), Signer("bureau:610300:k1", "bureau", "610300")


def test_a_bureau_registers_new_people_and_its_own_but_not_another_regions():
    assert registration_refusal(XIAN, "610100", None, None) is None
    assert registration_refusal(XIAN, "610100", "610100", None) is None
    assert registration_refusal(XIAN, "610100", "610300", None) is SignatureRefused.NOT_SIGNERS
    assert registration_refusal(XIAN, "610300", None, None) is SignatureRefused.NOT_SIGNERS


def test_a_person_moves_only_after_his_own_bureau_transferred_him():
    assert transfer_refusal(BAOJI, "610300") is None
    assert transfer_refusal(XIAN, "610300") is SignatureRefused.NOT_SIGNERS
    assert registration_refusal(XIAN, "610100", "610300", "610100") is None
    assert registration_refusal(XIAN, "610100", "610300", "610500") is SignatureRefused.NOT_SIGNERS
