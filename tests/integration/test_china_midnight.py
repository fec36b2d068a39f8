"""China midnight at the end of a month, through the real broker and Redis: settlement, binding and
notify start with their clock (CLOCK_OFFSET_SECONDS) a little before 00:00 China time on a month's
last day, and the test runs across that midnight. Every expected day comes from the same moved
clock (this process is given the same offset), never from the host's date; `make test` runs this
module on a UTC host and on an Asia/Shanghai one, where a host's date would be a day apart.

What each day is (the charges' `charged_at` fixes the consumption day, so no step races midnight):
- a binding may start "today" (the new month's first day), not "yesterday" (the old month's last);
- a charge consumed at 23:59:58 is of the old day: a binding that starts today does not pay it;
- its posting and the HIS ledger day are the day it settled: the new one;
- a monthly limit counts in the month of each charge's day (the new month for today's charges);
- the HIS daily report of yesterday is closed, today's is not; payment SMS are sent today."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, datetime, time, timedelta

import pytest

from shared import clock, envelope, topics as t
from tests.partners.hospital import HOSPITAL, REGION, Family
from tests.support import binding_form, body, charge_submitted, command, payload_of, running

pytestmark = pytest.mark.integration

# How long before midnight the platform's clock starts: enough for the three services to start.
LEAD = timedelta(seconds=25)


def next_month_end_midnight(real: datetime) -> datetime:
    """The next 00:00 China time that begins a month and is more than LEAD away."""
    day = real.astimezone(envelope.CHINA_TZ).date()
    while True:
        first_of_next = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        midnight = datetime.combine(first_of_next, time(0), envelope.CHINA_TZ)
        if midnight - real > LEAD:
            return midnight
        day = first_of_next


@pytest.fixture(scope="module")
def midnight(infra, tmp_path_factory):
    """The platform's month-end midnight; the services, and this process, run on its clock."""
    real = datetime.now(envelope.CHINA_TZ)
    at = next_month_end_midnight(real)
    offset = int(((at - LEAD) - real).total_seconds())
    clock.set_offset(offset)
    try:
        env = {**infra.env(), "LOG_LEVEL": "INFO", "CLOCK_OFFSET_SECONDS": str(offset), "SMS_PROVIDER": "sink"}
        with running(("settlement", "binding", "notify"), env, tmp_path_factory.mktemp("china_midnight")):
            yield at
    finally:
        clock.set_offset(0)


class Desk(Family):
    """The bureau, the hospital's HIS and the window, with charges consumed at a given moment and
    the HIS's daily totals."""

    async def charge(self, patient: dict, borne_fen: int, charged_at: datetime) -> dict:
        charge = charge_submitted(patient, HOSPITAL, REGION, borne_fen, fund_fen=5_000)
        charge["charged_at"] = charged_at.isoformat(timespec="seconds")
        await self.bus.send(t.HIS_CHARGES, command("ChargeSubmitted", charge), key=patient["person_id"])
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: payload_of(r).get("charge_id") == charge["charge_id"]
            and body(r)["event_type"] in ("ChargeSettled", "ChargeRejected"), timeout=60)
        assert body(r)["event_type"] == "ChargeSettled", body(r)
        return payload_of(r)

    async def report(self, day: date, **totals) -> dict:
        event_id = str(uuid.uuid4())
        payload = {"institution_code": HOSPITAL, "day": day.isoformat(), "charge_count": 0,
                   "individual_borne_total": "0.00", "own_total": "0.00", "family_total": "0.00",
                   "cash_total": "0.00", "refund_count": 0, "refund_total": "0.00"} | totals
        await self.bus.send(t.HIS_RECONCILIATION, command("InstitutionDailyTotals", payload, event_id), key=HOSPITAL)
        [r] = await self.bus.watchers[t.SETTLEMENT_RESULTS].wait_for(
            lambda r: body(r)["event_type"] == "InstitutionReconciled" and payload_of(r)["report_for"] == event_id)
        return payload_of(r)


def paid(settled: dict) -> list[tuple[str, str]]:
    return [(x["source"], x["amount"]) for x in settled["lines"]]


def china_day(iso: str) -> date:
    return envelope.china_today(datetime.fromisoformat(iso))


async def test_days_across_china_midnight_at_the_end_of_a_month(midnight, bus, clean_redis):
    desk = Desk(bus, clean_redis)
    await desk.hospital()
    patient = await desk.person(balance="10.00")
    grantor = await desk.person(balance="200.00")

    # Every step below happens after midnight; waiting for it is the test's subject, not a barrier
    # between processes (all run on the host's clock moved by the same offset).
    await asyncio.sleep(max(0.0, (midnight - envelope.now()).total_seconds() + 1))
    today, yesterday = midnight.date(), midnight.date() - timedelta(days=1)
    assert envelope.china_today() == today and today.day == 1 and yesterday.month != today.month

    refused = await desk.binding_command("CreateBinding", binding_form(grantor, patient, 1, start=yesterday),
                                         patient["person_id"])
    assert (refused["event_type"], refused["payload"].get("reason_code")) == ("BindingRejected", "INVALID_DATES")
    created = await desk.binding_command("CreateBinding", binding_form(grantor, patient, 1, start=today),
                                         patient["person_id"])
    assert created["event_type"] == "BindingCreated", created["payload"]
    binding_id = created["payload"]["binding_id"]
    limited = await desk.binding_command("SetGrantorLimit", {"binding_id": binding_id, "monthly_limit": "50.00",
                                                             "requested_by": grantor["person_id"]}, binding_id)
    assert limited["event_type"] == "GrantorLimitSet", limited["payload"]

    # Consumed two seconds before midnight: yesterday's charge, which a binding from today does not pay.
    late = await desk.charge(patient, 4_000, midnight - timedelta(seconds=2))
    assert paid(late) == [("own", "10.00"), ("cash", "30.00")]
    first = await desk.charge(patient, 3_000, envelope.now())
    assert paid(first) == [("grantor", "30.00"), ("cash", "0.00")]
    second = await desk.charge(patient, 3_000, envelope.now())
    assert paid(second) == [("grantor", "20.00"), ("cash", "10.00")]  # 50.00 a month: 20.00 left this month
    used = await clean_redis.hgetall(f"stl:used:{binding_id}")
    assert used == {today.strftime("%Y%m").encode(): b"5000"}  # the new month's, nothing in the old one

    # The own-account debit of yesterday's charge is posted today, when it settled.
    [posting] = [payload_of(r) for r in await bus.watchers[t.bureau_postings(REGION)].wait_for(
        lambda r: payload_of(r).get("charge_id") == late["charge_id"])]
    assert (posting["person_id"], posting["direction"], posting["amount"]) == (patient["person_id"], "debit", "10.00")
    assert china_day(posting["posted_at"]) == today

    # The HIS ledger's day is the settling day: all three charges are today's, none yesterday's,
    # and yesterday is over while today is not.
    answer = await desk.report(today, charge_count=3, individual_borne_total="100.00", own_total="10.00",
                               family_total="50.00", cash_total="40.00")
    assert (answer["result"], answer["differences"], answer["day_closed"]) == ("balanced", [], False), answer
    answer = await desk.report(yesterday)
    assert (answer["result"], answer["day_closed"]) == ("balanced", True), answer

    # notify, in quiet hours at 00:00 but payments never wait, sends the grantor's SMS today.
    [sms] = [payload_of(r) for r in await bus.watchers[t.NOTIFY_DELIVERIES].wait_for(
        lambda r: body(r)["event_type"] == "SmsSent" and payload_of(r).get("charge_id") == first["charge_id"]
        and payload_of(r).get("recipient_role") == "grantor")]
    assert china_day(sms["sent_at"]) == today
