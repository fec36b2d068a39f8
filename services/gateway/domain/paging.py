"""家庭共济消费查询 as the API shows it: a grantor's payments over a date range, one page at a
time, with totals over the whole range. Pure: the settlement service's answer in, a page out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

MAX_RANGE_DAYS = 366
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50
DEFAULT_RANGE_DAYS = 30


class BadRange(ValueError):
    """`from` after `to`, or a range longer than MAX_RANGE_DAYS: answered 422."""


def date_range(date_from: date | None, date_to: date | None, today: date) -> tuple[date, date]:
    """The range asked for; by default the 30 days up to today (China time)."""
    end = date_to or (date_from + timedelta(days=DEFAULT_RANGE_DAYS - 1) if date_from else today)
    start = date_from or end - timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if start > end:
        raise BadRange("`from` is after `to`")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise BadRange(f"a range spans at most {MAX_RANGE_DAYS} days")
    return start, end


@dataclass(frozen=True)
class Page:
    page: int
    page_size: int
    total_items: int
    items: list[dict[str, Any]]

    @property
    def total_pages(self) -> int:
        return -(-self.total_items // self.page_size)


def payments(listed: dict[str, Any]) -> list[dict[str, Any]]:
    """Every payment of a ConsumptionListed payload, each with its (masked) beneficiary, newest
    first; ties in a fixed order (charge id), so pages never overlap or skip."""
    rows = [{"beneficiary_id": b["beneficiary_id"], **p}
            for b in listed.get("beneficiaries", []) for p in b.get("payments", [])]
    rows.sort(key=lambda r: (r.get("charge_id", ""), r.get("institution_code", "")))
    rows.sort(key=lambda r: r.get("settled_at", ""), reverse=True)
    return rows


def page_of(rows: list[dict[str, Any]], page: int, page_size: int) -> Page:
    """Page `page` (1-based) of `rows`; a page past the end is empty, not an error."""
    start = (page - 1) * page_size
    return Page(page, page_size, len(rows), rows[start:start + page_size])


# What settlement tells of each beneficiary's binding this month (I-7): passed through as given.
MONTH_FIELDS = ("binding_id", "monthly_limit", "used_this_month", "left_this_month", "paused")


def totals(listed: dict[str, Any]) -> dict[str, Any]:
    """The range's totals and each beneficiary's, as the settlement service summed them, with
    the binding's limit, what it used and has left this month, and whether it is paused."""
    return {"total_paid": listed.get("total_paid", "0.00"), "total_refunded": listed.get("total_refunded", "0.00"),
            "beneficiaries": [{"beneficiary_id": b["beneficiary_id"], "payments": len(b.get("payments", [])),
                               "total_paid": b.get("total_paid"), "total_refunded": b.get("total_refunded"),
                               **{k: b[k] for k in MONTH_FIELDS if k in b}}
                              for b in listed.get("beneficiaries", [])]}
