"""docs/partners.md, section 2: the worked example of signing is what the platform's own code
computes, byte for byte, and the guide's Java and Python snippets agree with it.

The guide marks each block of the example with an HTML comment just before its fence,
`<!-- signing-example: NAME -->`; a block's text is everything between the fences (no trailing
newline), so the guide cannot drift from `shared.signing` without this test failing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared import topics
from shared.institutions import InstitutionRegistered
from shared.signing import (ALGORITHM, ED25519, REFUSAL_TEXTS, SIGNATURE, SIGNER, InstitutionKey, SigningKey,
                            Signer, SignatureRefused, institution_keys, signed_bytes, verify)

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "partners.md"
JAVA = ROOT / "docs" / "examples" / "PartnerSigning.java"
_BLOCK = re.compile(r"<!-- signing-example: (?P<name>[a-z0-9-]+) -->\n```[a-z]*\n(?P<text>.*?)\n```", re.S)
_EXAMPLE = re.compile(r"<!-- example: (?P<attrs>[^>]*?) -->\n```[a-z]*\n(?P<text>.*?)\n```", re.S)
EXAMPLE_SEED = b"fma partner guide example key"


def blocks() -> dict[str, str]:
    found: dict[str, str] = {}
    for match in _BLOCK.finditer(GUIDE.read_text(encoding="utf-8")):
        assert match["name"] not in found, f"signing-example {match['name']} appears twice"
        found[match["name"]] = match["text"]
    return found


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    found = blocks()
    wanted = {"private-key", "public-key", "key-id", "topic", "key", "value", "signed-bytes",
              "signed-bytes-sha256", "signature", "java", "python-verify"}
    assert wanted <= found.keys(), f"the guide lacks {sorted(wanted - found.keys())}"
    return found


def _key(example: dict[str, str]) -> SigningKey:
    return SigningKey.from_b64(example["key-id"], example["private-key"])


def _parts(example: dict[str, str]) -> tuple[str, bytes, bytes]:
    return example["topic"], example["key"].encode(), example["value"].encode("utf-8")


def test_the_example_key_is_the_one_the_guide_says_it_is(example) -> None:
    """The SHA-256 of the ASCII text the guide names, and the public key shown is its public key."""
    assert base64.b64decode(example["private-key"]) == hashlib.sha256(EXAMPLE_SEED).digest()
    assert _key(example).public_b64 == example["public-key"]
    assert example["key-id"].startswith("his:H61010300001:")


def test_the_signed_bytes_are_shown_byte_for_byte(example) -> None:
    topic, key, value = _parts(example)
    expected = signed_bytes(topic, key, example["key-id"], value)
    assert example["signed-bytes"].encode("utf-8") == expected
    assert hashlib.sha256(expected).hexdigest() == example["signed-bytes-sha256"]
    # The sizes the guide's prose gives.
    text = GUIDE.read_text(encoding="utf-8")
    assert f"{len(value)} 字节" in text and f"{len(value)} bytes" in text
    assert f"{len(expected)} 字节" in text and f"{len(expected)} bytes" in text


def test_signing_gives_exactly_the_shown_signature_and_verify_accepts_it(example) -> None:
    topic, key, value = _parts(example)
    signing = _key(example)
    assert signing.sign(topic, key, value) == example["signature"]
    headers = signing.headers(topic, key, value)
    assert headers == {SIGNER: example["key-id"], ALGORITHM: ED25519, SIGNATURE: example["signature"]}
    # The headers block the guide shows after the signature.
    shown = "\n".join(f"{k}: {v}" for k, v in headers.items())
    assert f"```text\n{shown}\n```" in GUIDE.read_text(encoding="utf-8")

    # As the platform knows the key: from an InstitutionRegistered listing it.
    now = datetime(2026, 11, 20, 10, 15, 2, tzinfo=timezone(timedelta(hours=8)))
    listed = InstitutionKey(key_id=example["key-id"], public_key=example["public-key"],
                            not_before=now - timedelta(days=30), not_after=now + timedelta(days=300))
    known = {k.key_id: k for k in institution_keys("H61010300001", "610100", [listed])}
    signer = verify(topic, key, value, headers, known.get, now)
    assert signer == Signer(example["key-id"], "his", "610100", "H61010300001")
    # ... and nothing else: another topic, key, value or signer, or a key not yet valid.
    assert verify(topics.HIS_RECONCILIATION, key, value, headers, known.get, now) is SignatureRefused.BAD_SIGNATURE
    assert verify(topic, b"610103198809210172", value, headers, known.get, now) is SignatureRefused.BAD_SIGNATURE
    assert verify(topic, None, value, headers, known.get, now) is SignatureRefused.BAD_SIGNATURE
    assert verify(topic, key, value.replace(b'"300.00"', b'"310.00"'), headers, known.get, now) \
        is SignatureRefused.BAD_SIGNATURE
    assert verify(topic, key, value, headers, known.get, now - timedelta(days=31)) is SignatureRefused.UNKNOWN_SIGNER


def test_the_example_value_is_the_charge_of_section_5_1(example) -> None:
    """The worked example signs a real example of the guide, and the registration of section 3
    lists the example's public key under its key id."""
    value = json.loads(example["value"])
    guide = GUIDE.read_text(encoding="utf-8")
    examples = {m["attrs"].split("|")[0].strip(): m["text"] for m in _EXAMPLE.finditer(guide)
                if "| input |" in m["attrs"]}
    assert value == json.loads(examples["charge-own-and-cash"])
    assert example["key"] == value["payload"]["patient_id"] and example["topic"] == topics.HIS_CHARGES
    registration = json.loads(examples["institution-hospital"])
    event = InstitutionRegistered.model_validate(registration["payload"])
    assert [(k.key_id, k.public_key) for k in event.public_keys] == [(example["key-id"], example["public-key"])]


def test_the_python_verification_snippet_accepts_the_example_and_nothing_else(example) -> None:
    namespace: dict = {}
    exec(compile(example["python-verify"], "partners.md: python-verify", "exec"), namespace)
    platform_signed = namespace["platform_signed"]
    topic, key, value = _parts(example)
    headers = {k: v.encode() for k, v in _key(example).headers(topic, key, value).items()}
    keys = {example["key-id"]: example["public-key"]}
    assert platform_signed(topic, key, value, headers, keys) is True
    assert platform_signed(topic, key, value + b" ", headers, keys) is False
    assert platform_signed("his.reconciliation", key, value, headers, keys) is False
    assert platform_signed(topic, key, value, headers, {}) is False
    assert platform_signed(topic, key, value, headers | {"x-signature-alg": b"rsa"}, keys) is False
    assert platform_signed(topic, key, value, headers | {"x-signature": b"not base64!"}, keys) is False
    assert platform_signed(topic, key, value, {}, keys) is False
    # A platform message as the services sign it: a posting on a region's topic, keyed by region.
    settlement = SigningKey.generate("settlement:k1")
    posting_topic, posting = topics.bureau_postings("610100"), b'{"event_type":"Posting"}'
    signed = {k: v.encode() for k, v in settlement.headers(posting_topic, b"610100", posting).items()}
    assert platform_signed(posting_topic, b"610100", posting, signed, {"settlement:k1": settlement.public_b64})
    assert not platform_signed(topics.bureau_postings("610300"), b"610100", posting, signed,
                               {"settlement:k1": settlement.public_b64})


def test_the_java_in_the_guide_is_the_example_file(example) -> None:
    assert example["java"] == JAVA.read_text(encoding="utf-8").rstrip("\n")
    assert JAVA.read_bytes().isascii(), "the Java example must compile the same in any locale"


def test_the_java_example_prints_the_guide_s_signature(example, tmp_path) -> None:
    """Compiled with javac and run: the JDK's Ed25519 gives the guide's signature."""
    javac, java = shutil.which("javac"), shutil.which("java")
    if not (javac and java):
        warnings.warn("javac/java not found: the Java signing example of docs/partners.md was NOT checked")
        pytest.skip("javac and java (JDK 15 or later) are needed to check the Java signing example")
    # The C locale: the source must not depend on the platform's default encoding.
    env = {"PATH": str(Path(javac).parent), "LC_ALL": "C", "LANG": "C"}
    subprocess.run([javac, "-d", str(tmp_path), str(JAVA)], check=True, env=env, capture_output=True, timeout=120)
    run = subprocess.run([java, "-cp", str(tmp_path), "PartnerSigning"], check=True, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.stdout.splitlines() == [f"{SIGNER}: {example['key-id']}", f"{ALGORITHM}: {ED25519}",
                                       f"{SIGNATURE}: {example['signature']}"]


def test_every_table_of_refusal_codes_gives_the_platform_s_texts() -> None:
    """Section 2.4 and the reason code lists of charges, bindings and reconciliation (sections 8,
    11, 13) give each signature refusal with the texts the services answer (binding's capitalised,
    with a full stop)."""
    rows = re.findall(r"^\| `(UNSIGNED|UNKNOWN_SIGNER|BAD_SIGNATURE|NOT_SIGNERS)` \| ([^|]+) \| ([^|]+) \|",
                      GUIDE.read_text(encoding="utf-8"), re.M)
    assert len(rows) == 4 * 4, f"{len(rows)} rows: section 2.4 and the lists of sections 8, 11 and 13 give all four"
    for code, zh, en in rows:
        expected_zh, expected_en = REFUSAL_TEXTS[SignatureRefused(code)]
        en = en.strip()
        assert zh.strip() == expected_zh, code
        assert en in (expected_en, expected_en[0].upper() + expected_en[1:] + "."), code
