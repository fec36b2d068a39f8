"""docs/partners.md, section 13: the detail answer that owes the fund (a non-zero `owed_to_fund`)
is what the settlement ledger answers. The ledger is built on the real Redis by the settlement
Functions themselves, as the service writes it: the pharmacy's charge of section 12.3 settled
(paid by the grantor), then its upheld dispute reversed the day reported. The guide's detail
report is answered by the ledger's own detail path; the answer must hold every field the guide
shows (those that follow the clock, `event_id`, `occurred_at` and `compared_at`, are left out there).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from shared.envelope import CHINA_TZ
from services.settlement import his_contract as h
from services.settlement.metrics import ReconciliationMetrics
from services.settlement.storage.accounts import ChargeToSettle, Reversal, SettlementStore
from services.settlement.storage.ledger import LedgerStore
from services.settlement.usecases.his_reconciliation import Ledger
from tests.ledger_calls import bind

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "partners.md"
_BLOCK = re.compile(r"<!-- checked: his-detail-owed \| (?P<role>input|output) \| [^>]*-->\n```json\n(?P<text>.*?)\n```",
                    re.S)
# The guide's section 12.3: the pharmacy's charge, the upheld dispute, its reversal the day reported.
PHARMACY, CHARGE, DISPUTE = "P61030200007", "YD20261123-0021", "DSP-7b8cd15e7d025ef7ac17d8fa"
PATIENT, GRANTOR, BINDING = "610302195006080423", "610102197503120316", "BND-12-3"
SETTLED_AT, REVERSED_AT = "2026-11-23T16:40:00+08:00", "2026-11-25T10:15:00+08:00"
KEPT = 400 * 86_400
ANSWERED_AT = datetime(2026, 11, 26, 2, 5, 1, tzinfo=CHINA_TZ)


def guide_example() -> dict[str, dict]:
    found = {m["role"]: orjson.loads(m["text"]) for m in _BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))}
    assert set(found) == {"input", "output"}, "the guide's his-detail-owed example is missing a block"
    return found


def contains(answer: object, shown: object) -> bool:
    """Whether `answer` holds every field the guide shows, with the same value."""
    if isinstance(shown, dict):
        return isinstance(answer, dict) and all(k in answer and contains(answer[k], v) for k, v in shown.items())
    return answer == shown


async def test_the_guides_detail_answer_owing_the_fund_is_what_the_ledger_answers(clean_redis):
    example = guide_example()
    settlement = SettlementStore(clean_redis, provinces=["610100", "610300"], rejection_ttl=KEPT, record_ttl=KEPT)
    await settlement.load_functions()
    await settlement.register_institutions([(PHARMACY, "610300", "pharmacy")])
    await settlement.register([(PATIENT, "610300", "r", None), (GRANTOR, "610100", "e", 52_000)])
    await bind(clean_redis, PATIENT, GRANTOR, 1, "610100", binding_id=BINDING)
    [paid] = await settlement.settle([ChargeToSettle("evt-12-3", PHARMACY, "610300", CHARGE, "digest", 12_000, PATIENT,
                                                     20261123, SETTLED_AT)])
    assert paid.status == "SETTLED" and [(x.source, x.amount) for x in paid.lines if x.amount] == [("grantor", 12_000)]
    [reversed_] = await settlement.reverse([Reversal(DISPUTE, PHARMACY, CHARGE, GRANTOR, BINDING, REVERSED_AT)])
    assert reversed_.status == "REVERSED", reversed_

    ledger = Ledger(LedgerStore(clean_redis, ledger_ttl=KEPT, report_ttl=KEPT), broker=None,  # type: ignore[arg-type]
                    keep_days=400, metrics=ReconciliationMetrics(CollectorRegistry()), clock=lambda: ANSWERED_AT)
    report = example["input"]
    detail = h.InstitutionDailyDetail.model_validate(report["payload"])
    [answer] = await ledger._on_detail(report["event_id"], detail)
    body = orjson.loads(answer)
    assert body["payload"]["owed_to_fund"]["reversal_total"] != "0.00"
    assert contains(body, example["output"]), orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
