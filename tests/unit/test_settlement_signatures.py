"""Settlement's side of contract version 3 without a broker: who may say what (domain/authority.py),
how a batch's signers are found (one look-up of the institutions' keys a batch), what is signed,
and where a sender may be answered."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from services.settlement import contract as c
from services.settlement.domain.authority import his_refusal, institution_refusal, reply_prefix
from services.settlement.signatures import Signatures, answered_only_on
from services.settlement.usecases import Answers, SettlementService
from shared import envelope
from shared.identity import make_id_number
from shared.kafka import Outgoing, Received
from shared.signing import KeyRing, SignatureRefused, Signer, SigningKey, verify

NOW = envelope.now()
XIAN = Signer("bureau:610100:k1", "bureau", "610100")
BAOJI = Signer("bureau:610300:k1", "bureau", "610300")
H1 = Signer("his:H1:k1", "his", "610100", "H1")


def test_a_his_speaks_only_for_its_own_institution():
    assert his_refusal(H1, "H1") is None
    assert his_refusal(H1, "H2") is SignatureRefused.NOT_SIGNERS
    assert his_refusal(XIAN, "H1") is SignatureRefused.NOT_SIGNERS   # a bureau does not submit charges
    assert his_refusal(H1, None) is None and his_refusal(H1, 7) is None   # left to INVALID_CHARGE


def test_a_bureau_registers_only_its_own_regions_institutions():
    assert institution_refusal(XIAN, "610100") is None
    assert institution_refusal(BAOJI, "610100") is SignatureRefused.NOT_SIGNERS
    assert institution_refusal(H1, "610100") is SignatureRefused.NOT_SIGNERS


def test_only_a_his_is_answered_and_only_on_its_own_reply_topics():
    assert reply_prefix(H1) == "reply.H1."
    assert reply_prefix(XIAN) is None and reply_prefix(SignatureRefused.UNSIGNED) is None

    def asked(topic: str) -> Received:
        return Received("his.charges", 0, 7, b"k", b"{}", {"reply_to": topic, "correlation_id": "c"})

    own = asked("reply.H1.counter-3")
    assert answered_only_on(own, "reply.H1.") is own
    for other in ("reply.H10.x", "reply.H2.x", "reply.H1", "settlement.results"):
        assert "reply_to" not in answered_only_on(asked(other), "reply.H1.").headers
    assert answered_only_on(own, None).headers == {"correlation_id": "c"}


# -- Signatures --------------------------------------------------------------------------------

def keys_file(*keys: SigningKey) -> KeyRing:
    window = {"not_before": (NOW - timedelta(days=1)).isoformat(), "not_after": (NOW + timedelta(days=1)).isoformat()}
    entries = [{"key_id": k.key_id, "public_key": k.public_b64, **window,
                **({"owner": "bureau", "region": k.key_id.split(":")[1]} if k.key_id.startswith("bureau:")
                   else {"owner": "platform"})} for k in keys]
    return KeyRing.parse(json.dumps({"keys": entries}))


def stored(code: str, region: str, *keys: SigningKey, ended: bool = False) -> bytes:
    end = NOW - timedelta(seconds=1) if ended else NOW + timedelta(days=1)
    return json.dumps({"region": region, "keys": [
        {"key_id": k.key_id, "public_key": k.public_b64, "not_before": (NOW - timedelta(days=2)).isoformat(),
         "not_after": end.isoformat()} for k in keys]}).encode()


class Projection:
    """Stands in for SettlementStore.institution_keys: what was asked, and the stored bytes."""

    def __init__(self, stored_keys: dict[str, bytes]) -> None:
        self.stored, self.asked = stored_keys, []

    async def __call__(self, codes: list[str]) -> dict[str, bytes | None]:
        self.asked.append(codes)
        return {code: self.stored.get(code) for code in codes}


def sent(key: SigningKey | None, value: bytes = b'{"v":1}', topic: str = "his.charges", **headers: str) -> Received:
    signed = key.headers(topic, b"p", value) if key else {}
    return Received(topic, 0, 0, b"p", value, signed | headers)


async def test_a_batch_looks_up_its_signing_institutions_once_and_knows_each_signer():
    h1, h2, bureau = SigningKey.generate("his:H1:k1"), SigningKey.generate("his:H2:k1"), \
        SigningKey.generate("bureau:610100:k1")
    projection = Projection({"H1": stored("H1", "610100", h1), "H2": stored("H2", "610300", h2)})
    signatures = Signatures(keys_file(bureau), None, projection, clock=lambda: NOW)
    batch = [sent(h1), sent(h2), sent(h1), sent(bureau), sent(None), sent(SigningKey.generate("his:H3:k1")),
             sent(h1, **{"x-signature": h2.sign("his.charges", b"p", b'{"v":1}')})]
    verdicts = await signatures.his(batch)
    assert projection.asked == [["H1", "H2", "H3"]]
    assert verdicts[:4] == [Signer("his:H1:k1", "his", "610100", "H1"), Signer("his:H2:k1", "his", "610300", "H2"),
                            Signer("his:H1:k1", "his", "610100", "H1"), Signer("bureau:610100:k1", "bureau", "610100")]
    assert verdicts[4:] == [SignatureRefused.UNSIGNED, SignatureRefused.UNKNOWN_SIGNER, SignatureRefused.BAD_SIGNATURE]
    assert await signatures.his([sent(None)]) == [SignatureRefused.UNSIGNED] and len(projection.asked) == 1


async def test_a_replaced_key_list_is_read_afresh_and_a_key_past_its_end_is_unknown():
    k1, k2 = SigningKey.generate("his:H1:k1"), SigningKey.generate("his:H1:k2")
    projection = Projection({"H1": stored("H1", "610100", k1)})
    signatures = Signatures(keys_file(), None, projection, clock=lambda: NOW)
    assert isinstance((await signatures.his([sent(k1)]))[0], Signer)
    projection.stored["H1"] = stored("H1", "610100", k2) + b" "  # a later registration: k1 retired
    assert await signatures.his([sent(k1), sent(k2)]) == [SignatureRefused.UNKNOWN_SIGNER,
                                                         Signer("his:H1:k2", "his", "610100", "H1")]
    projection.stored["H1"] = stored("H1", "610100", k2, ended=True)
    assert await signatures.his([sent(k2)]) == [SignatureRefused.UNKNOWN_SIGNER]
    projection.stored["H1"] = b"not json"  # a defect: logged, nobody believed
    assert await signatures.his([sent(k2)]) == [SignatureRefused.UNKNOWN_SIGNER]


def test_what_partners_read_is_signed_once_and_settlement_results_is_not():
    own = SigningKey.generate("settlement:k1")
    ring = keys_file(own)
    signatures = Signatures(ring, own, Projection({}), clock=lambda: NOW)
    out = signatures.signed([Outgoing("settlement.results", b"C1", b"a"),
                             Outgoing("bureau.postings.610100", b"610100", b"b"),
                             Outgoing("reply.H1.x", b"C1", b"c", {"correlation_id": "q"})])
    assert out[0].headers is None
    for m in out[1:]:
        assert verify(m.topic, m.key, m.value, m.headers, ring.find, NOW) == Signer(
            "settlement:k1", "platform", service="settlement")
    assert out[2].headers["correlation_id"] == "q"
    assert signatures.signed(out[:1]) == out[:1]


# -- the charge path: NOT_SIGNERS before any other reading -------------------------------------

PATIENT = make_id_number("610102", date(2010, 1, 1), 1)
CHARGE = {"charge_id": "C-1", "institution_code": "H1", "institution_region": "610100",
          "patient_id": PATIENT, "patient_name": "张小明", "code_holder_id": PATIENT,
          "presented_via": "own_device", "visit_kind": "outpatient", "total": "160.00", "fund_paid": "100.00",
          "individual_borne": "60.00", "charged_at": (NOW - timedelta(minutes=1)).isoformat(timespec="seconds")}


@pytest.mark.parametrize("payload,reason", [
    (CHARGE | {"institution_code": "H2"}, "NOT_SIGNERS"),
    (CHARGE | {"institution_code": "H2", "total": "1.00"}, "NOT_SIGNERS"),  # not its to say, whatever else
    ({k: v for k, v in CHARGE.items() if k != "institution_code"}, "INVALID_CHARGE"),
])
def test_a_charge_naming_another_institution_than_its_signers_is_refused_not_signers(payload, reason):
    service = SettlementService(store=None, broker=None, clock=lambda: NOW).charges  # type: ignore[arg-type]
    answers = Answers()
    msg = Received("his.charges", 0, 0, b"k", envelope.seal(c.CHARGE_SUBMITTED, payload), {})
    assert service._admit(msg, NOW, answers, H1) is None
    [out] = answers.outcomes
    refused = json.loads(out.value)
    assert (refused["event_type"], refused["payload"]["reason_code"]) == ("ChargeRejected", reason)
    assert service._admit(Received("his.charges", 0, 0, b"k", envelope.seal(c.CHARGE_SUBMITTED, CHARGE), {}),
                          NOW, Answers(), H1).institution_code == "H1"


def test_refusal_texts_are_the_contracts():
    from services.settlement.domain.reasons import ChargeRefused, Reason
    from shared.signing import REFUSAL_TEXTS

    for code, (zh, en) in REFUSAL_TEXTS.items():
        refused = ChargeRefused(Reason(code.value))
        assert (refused.message_zh, refused.message_en) == (zh, en)


def test_signature_refusals_get_an_outcome_id_no_authentic_answer_of_the_same_message_has():
    from services.settlement.domain import ids

    authentic = {ids.event_id(c.CHARGE_REJECTED, "H1", "e-1", r) for r in ("UNKNOWN_PATIENT", "INVALID_CHARGE")}
    refused = {ids.event_id(c.CHARGE_REJECTED, "H1", "e-1", r.value) for r in SignatureRefused}
    assert len(refused) == 4 and not authentic & refused


def test_an_unsigned_message_is_answered_unsigned_when_readable_and_dead_lettered_naming_it_when_not():
    service = SettlementService(store=None, broker=None, clock=lambda: NOW).charges  # type: ignore[arg-type]
    answers = Answers()
    readable = Received("his.charges", 0, 1, b"k", envelope.seal(c.CHARGE_SUBMITTED, CHARGE),
                        {"reply_to": "reply.H1.x"})
    service._unbelieved(answered_only_on(readable, None), SignatureRefused.UNSIGNED, answers)
    service._unbelieved(Received("his.charges", 0, 2, b"k", b"not json", {}), SignatureRefused.UNSIGNED, answers)
    [out] = answers.outcomes
    assert json.loads(out.value)["payload"]["reason_code"] == "UNSIGNED" and out.topic == "settlement.results"
    assert answers.replies == []  # a sender that proved nothing is not answered on the topic it names
    [(dead, why)] = answers.dead
    assert dead.offset == 2 and why.startswith("UNSIGNED: ")
