"""家庭共济消费查询 without I/O."""

from datetime import date

from services.settlement.domain.consumption import Spent, by_beneficiary


def test_consumption_is_grouped_per_beneficiary_within_the_dates():
    rows = [Spent("C1", date(2026, 11, 1), "A", 100, 0, "2026-11-01T10:00:00+08:00"),
            Spent("C2", date(2026, 11, 3), "B", 50, 10, "2026-11-03T10:00:00+08:00"),
            Spent("C0", date(2026, 10, 30), "A", 70, 0, "2026-10-30T10:00:00+08:00"),
            Spent("C3", date(2026, 11, 2), "A", 30, 0, "2026-11-02T09:00:00+08:00")]
    grouped = by_beneficiary(rows, date(2026, 11, 1), date(2026, 11, 30))
    assert {b: [r.charge_id for r in rs] for b, rs in grouped.items()} == {"A": ["C1", "C3"], "B": ["C2"]}
