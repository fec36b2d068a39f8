"""Each rule in one place (issue 21): a monthly limit's bounds and the binding refusals' words are
written once in the shared kernel (shared/limits.py, shared/refusals.py); the binding service's
rules and reasons, the gateway's request type and own refusals, and the console (served
GET /console/catalogue.json) all read them from there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from shared import limits, refusals
from shared.money import format_yuan
from services.binding.domain import rules
from services.binding.domain.reasons import MESSAGES, BindingRefused, Reason
from services.gateway import console
from services.gateway.contract import LimitRequest
from services.gateway.domain.problems import OWN_MESSAGES, own_refusal
from tests.unit.test_binding_limits_disputes import GRANTOR, TODAY, binding


CONSOLE = Path(console.__file__).resolve().parent


def test_every_binding_reason_has_its_words_in_the_shared_catalogue_and_nothing_else_is_there():
    assert set(refusals.BINDING_REFUSALS) == {r.value for r in Reason}
    assert all(MESSAGES[r] == refusals.BINDING_REFUSALS[r.value] for r in Reason)


def test_the_gateways_own_refusals_use_the_binding_services_words():
    for code, words in OWN_MESSAGES.items():
        assert words == (refusals.BINDING_REFUSALS | refusals.GATEWAY_REFUSALS)[code]
    assert own_refusal("INVALID_LIMIT").message_zh == MESSAGES[Reason.INVALID_LIMIT][0]


@pytest.mark.parametrize("fen,allowed", [(limits.MIN_MONTHLY_LIMIT_FEN, True), (limits.MAX_MONTHLY_LIMIT_FEN, True),
                                         (limits.MAX_MONTHLY_LIMIT_FEN + 1, False), (-1, False)])
def test_binding_rules_and_the_gateway_draw_the_limit_at_the_same_bound(fen: int, allowed: bool):
    try:
        LimitRequest.model_validate({"monthly_limit": format_yuan(fen)})
        gateway_allows = True
    except ValidationError as error:
        assert error.errors()[0]["type"] == "invalid_limit"
        gateway_allows = False
    assert gateway_allows is allowed
    assert limits.is_allowed_monthly_limit(fen) is allowed
    if not allowed:
        with pytest.raises(BindingRefused) as refused:
            rules.set_grantor_limit(binding(), GRANTOR, fen, TODAY)
        assert refused.value.reason is Reason.INVALID_LIMIT
    else:
        assert rules.set_grantor_limit(binding(), GRANTOR, fen, TODAY).monthly_limit == fen


def test_the_limit_pattern_says_what_the_parser_accepts():
    class Form(BaseModel):
        monthly_limit: limits.MonthlyLimit

    for text in ["0", "0.00", "500.5", "1000000.00", "1000000.01", "01.00", "-1.00", "12345678", "1.005"]:
        try:
            Form(monthly_limit=text)
            parsed = True
        except ValidationError:
            parsed = False
        in_pattern = re.fullmatch(limits.MONTHLY_LIMIT_PATTERN, text) is not None
        assert parsed == (in_pattern and limits.is_allowed_monthly_limit(round(float(text) * 100))), text


async def test_the_console_is_served_the_catalogue_as_json(api):  # noqa: F811 (fixture)
    r = await api.get("/console/catalogue.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    body = r.json()
    assert body["monthly_limit"] == {"min": "0.00", "max": "1000000.00", "pattern": limits.MONTHLY_LIMIT_PATTERN}
    assert body["refusals"]["INVALID_LIMIT"] == {"zh": MESSAGES[Reason.INVALID_LIMIT][0],
                                                 "en": MESSAGES[Reason.INVALID_LIMIT][1]}
    assert set(body["refusals"]) == {r.value for r in Reason} | set(refusals.GATEWAY_REFUSALS)


def test_the_console_holds_no_copy_of_the_bound_nor_of_the_refusals_words():
    sources = "".join((CONSOLE / name).read_text(encoding="utf-8") for name in ("console.js", "texts.js",
                                                                                   "index.html"))
    assert "1000000" not in sources and "REASONS" not in sources
    for zh, _ in refusals.BINDING_REFUSALS.values():
        for words in (zh, zh + "。"):  # (v.notice shares only its English words: its Chinese is its own)
            assert f'"{words}"' not in sources, words
