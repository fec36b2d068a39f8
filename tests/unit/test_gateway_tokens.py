"""Bearer tokens (shared/tokens.py, contract version 3): the gateway believes a token only from
an issuer the operator lists, signed by one of that issuer's keys (chosen by `kid`), for the
gateway's audience, within the issuer's lifetime and with a role that issuer may mint."""

from __future__ import annotations

import json

import jwt
import pytest

from shared.tokens import AUDIENCE, InvalidToken, IssuersFileError, TokenIssuer, TrustedIssuers
from tooling.devkeys import DevIssuers

ME = "610102198503150018"
NOW = 1_800_000_000
ISSUERS = DevIssuers.generate(max_lifetime_seconds=3600)
TRUSTED = ISSUERS.trusted(clock_skew_seconds=30)


def refused(token: str, match: str | None = None, now: float = NOW) -> str:
    with pytest.raises(InvalidToken, match=match) as caught:
        TRUSTED.verify(token, now=now)
    return str(caught.value)


def window(now: float = NOW, **claims) -> str:
    return ISSUERS.windows.mint("window", clerk_id="clerk-1", region="610100", now=now, **claims)


def test_a_token_of_a_listed_issuer_names_its_principal_issuer_and_id():
    who = TRUSTED.verify(window(jti="t-1"), now=NOW)
    assert (who.role, who.clerk_id, who.region, who.jti, who.issued_at, who.issuer) == (
        "window", "clerk-1", "610100", "t-1", NOW, ISSUERS.windows.iss)
    assert TRUSTED.verify(ISSUERS.app.mint("app", person_id=ME, now=NOW), now=NOW).person_id == ME


def test_an_issuer_not_listed_or_a_key_not_its_own_is_refused():
    stranger = TokenIssuer.generate("someone-else", ["window"], kid=ISSUERS.windows.kid)
    refused(stranger.mint("window", clerk_id="c", region="610100", now=NOW), "issuer")
    impostor = TokenIssuer.generate(ISSUERS.windows.iss, ["window"], kid=ISSUERS.windows.kid)  # same names, new key
    refused(impostor.mint("window", clerk_id="c", region="610100", now=NOW), "Signature")
    refused(window(kid="windows-k2"), "kid")
    refused(window(kid=ISSUERS.app.kid), "kid")  # the app issuer's key id is not the windows' issuer's


def test_the_audience_must_be_the_gateways():
    refused(window(aud="another-service"), "Audience")
    refused(window(aud=None), "aud")
    assert TRUSTED.verify(window(aud=[AUDIENCE, "x"]), now=NOW).role == "window"


@pytest.mark.parametrize("claim", ["iss", "aud", "iat", "exp", "kid"])
def test_a_token_missing_a_required_claim_is_refused(claim):
    refused(window(**{claim: None}))


def test_a_token_living_longer_than_its_issuers_lifetime_is_refused():
    assert TRUSTED.verify(window(ttl_seconds=3600), now=NOW).role == "window"
    refused(window(ttl_seconds=3601), "lives longer")
    refused(window(iat=NOW - 7200, exp=NOW + 60), "lives longer")  # backdated to look short-lived


def test_the_clock_skew_allowed_is_bounded():
    assert TRUSTED.verify(window(now=NOW + 25), now=NOW).role == "window"       # issued 25 s "ahead"
    refused(window(now=NOW + 31), "future")
    assert TRUSTED.verify(window(ttl_seconds=60), now=NOW + 80).role == "window"  # 20 s past exp
    refused(window(ttl_seconds=60), "expired", now=NOW + 91)
    with pytest.raises(IssuersFileError):
        DevIssuers.generate().trusted(clock_skew_seconds=301)


def test_each_issuer_mints_only_its_own_roles():
    refused(ISSUERS.app.mint("window", clerk_id="clerk-1", region="610100", now=NOW), "role")
    refused(ISSUERS.app.mint("supervisor", clerk_id="clerk-1", region="610100", now=NOW), "role")
    refused(ISSUERS.windows.mint("app", person_id=ME, now=NOW), "role")
    assert TRUSTED.verify(ISSUERS.windows.mint("supervisor", clerk_id="c", region="610100", now=NOW),
                          now=NOW).role == "supervisor"


def test_no_shared_secret_or_unsigned_token_is_accepted():
    claims = {"iss": ISSUERS.windows.iss, "aud": AUDIENCE, "iat": NOW, "exp": NOW + 60, "role": "window",
              "clerk_id": "c", "region": "610100"}
    hmac = jwt.encode(claims, "a-secret-anyone-could-share-0123456789", algorithm="HS256",
                      headers={"kid": ISSUERS.windows.kid})
    refused(hmac, "alg")
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": ISSUERS.windows.kid})
    refused(unsigned)


def test_es256_keys_are_believed_as_well():
    es = TokenIssuer.generate("es-issuer", ["app"], kid="es-1", algorithm="ES256")
    trusted = TrustedIssuers.from_dict({"issuers": [es.entry()]})
    assert trusted.verify(es.mint("app", person_id=ME)).person_id == ME


def test_the_longest_lifetime_with_the_skew_is_what_a_revocation_outlives():
    short = TokenIssuer.generate("a", ["app"], max_lifetime_seconds=600)
    long = TokenIssuer.generate("w", ["window"], max_lifetime_seconds=7200)
    assert TrustedIssuers.from_dict({"issuers": [short.entry(), long.entry()]}, 30).longest_lifetime_seconds == 7230


@pytest.mark.parametrize("change,why", [
    (lambda e: e | {"roles": ["app", "window"]}, "only role"),
    (lambda e: e | {"roles": ["admin"]}, "roles"),
    (lambda e: e | {"max_lifetime_seconds": 0}, "max_lifetime_seconds"),
    (lambda e: e | {"max_lifetime_seconds": "3600"}, "max_lifetime_seconds"),
    (lambda e: e | {"jwks": {"keys": []}}, "jwks"),
    (lambda e: e | {"jwks": {"keys": [ISSUERS.windows._jwk(private=True)]}}, "private"),
    (lambda e: e | {"jwks": {"keys": [e["jwks"]["keys"][0], e["jwks"]["keys"][0]]}}, "unique"),
    (lambda e: e | {"jwks": {"keys": [e["jwks"]["keys"][0] | {"crv": "Ed448"}]}}, "neither"),
    (lambda e: e | {"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}}, "neither"),
    (lambda e: {k: v for k, v in e.items() if k != "iss"}, "iss"),
])
def test_an_issuers_file_not_of_the_documented_shape_stops_the_gateway(change, why):
    with pytest.raises(IssuersFileError, match=why):
        TrustedIssuers.from_dict({"issuers": [change(ISSUERS.windows.entry())]})


def test_the_issuers_file_and_private_keys_are_written_for_make_run_and_read_back(tmp_path):
    written = ISSUERS.write(tmp_path / "issuers")
    listed = json.loads(written.issuers_file.read_text())
    assert [i["roles"] for i in listed["issuers"]] == [["app"], ["window", "supervisor"]]
    assert all("d" not in k for i in listed["issuers"] for k in i["jwks"]["keys"])  # public keys only
    assert written.app_key_file.stat().st_mode & 0o077 == 0
    token = TokenIssuer.load(written.app_key_file).mint("app", person_id=ME)
    assert TrustedIssuers.load(written.issuers_file).verify(token).person_id == ME
    with pytest.raises(IssuersFileError):
        TrustedIssuers.load(tmp_path / "missing.json")
