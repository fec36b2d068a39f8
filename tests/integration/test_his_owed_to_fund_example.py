"""docs/partners.md, section 13: the detail answer that owes the fund (a non-zero `owed_to_fund`)
is what the settlement ledger answers. The ledger is built on the real Redis from the
PaymentReversed the platform publishes for the upheld dispute of section 12.3 (through
`Ledger.project`, as the ledger group reads settlement.results), and the guide's detail report is
answered by the ledger's own detail path; the answer must hold every field the guide shows
(those that follow the clock, `event_id`, `occurred_at` and `compared_at`, are left out there)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry

from shared.envelope import CHINA_TZ
from shared.kafka import Received
from services.settlement import his_contract as h
from services.settlement import outcomes
from services.settlement.metrics import ReconciliationMetrics
from services.settlement.storage.ledger import LedgerStore
from services.settlement.usecases.his_reconciliation import Ledger

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "partners.md"
_BLOCK = re.compile(r"<!-- checked: his-detail-owed \| (?P<role>input|output) \| [^>]*-->\n```json\n(?P<text>.*?)\n```",
                    re.S)
# The guide's section 12.3: the pharmacy's charge, the upheld dispute, its reversal the day reported.
PHARMACY, CHARGE, DISPUTE = "P61030200007", "YD20261123-0021", "DSP-7b8cd15e7d025ef7ac17d8fa"
REVERSED_AT = "2026-11-25T10:15:00+08:00"
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
    store = LedgerStore(clean_redis, ledger_ttl=400 * 86_400, report_ttl=400 * 86_400)
    await store.load_functions()
    ledger = Ledger(store, broker=None, caught_up=None, keep_days=400,  # type: ignore[arg-type]
                    metrics=ReconciliationMetrics(CollectorRegistry()), clock=lambda: ANSWERED_AT)
    reversed_ = outcomes.payment_reversed(PHARMACY, CHARGE, DISPUTE, "610302195006080423", "610102197503120316",
                                          "BND-12-3", 12_000, 0, [], REVERSED_AT)
    await ledger.project([Received("settlement.results", 0, 0, CHARGE.encode(), reversed_, {})])

    report = example["input"]
    detail = h.InstitutionDailyDetail.model_validate(report["payload"])

    async def ledger_read() -> bool:
        return True  # the ledger was written above, before the report: it has read all there is

    [answer] = await ledger._on_detail(report["event_id"], detail, ledger_read)
    body = orjson.loads(answer)
    assert body["payload"]["owed_to_fund"]["reversal_total"] != "0.00"
    assert contains(body, example["output"]), orjson.dumps(body, option=orjson.OPT_INDENT_2).decode()
