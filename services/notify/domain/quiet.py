"""Quiet hours (免打扰): non-urgent messages wait until they end; payment messages never wait."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def contains(self, moment: datetime) -> bool:
        t = moment.timetz().replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end  # spans midnight, e.g. 22:00-07:00

    def ends_after(self, moment: datetime) -> datetime:
        """When a message held at `moment` may go out: the next end of quiet hours, or now."""
        if not self.contains(moment):
            return moment
        end = moment.replace(hour=self.end.hour, minute=self.end.minute, second=self.end.second, microsecond=0)
        return end if end > moment else end + timedelta(days=1)


def parse_quiet_hours(text: str) -> QuietHours:
    """"22:00-07:00" (seconds allowed: "22:00:00-07:00:30")."""
    start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    return QuietHours(start, end)
