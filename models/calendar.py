"""A school's calendar: which days are school days, its half-terms and its school weeks.

School days are the weekdays inside a half-term that are neither an England bank
holiday nor one of the school's INSET or closure days. Pure: built from rows, no I/O.
"""

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

import holidays


@dataclass(frozen=True)
class Term:
    name: str
    starts: date
    ends: date
    academic_year: int


class NotASchoolDayError(ValueError):
    pass


def week_start(day: date) -> date:
    """The Monday of the week containing `day`."""
    return day - timedelta(days=day.weekday())


def academic_year_of(day: date) -> int:
    """2026 for any day from 1 August 2026 to 31 July 2027."""
    return day.year if day.month >= 8 else day.year - 1


class SchoolCalendar:
    def __init__(self, half_terms: Iterable[Term], non_school_days: Iterable[date] = ()):
        self.half_terms = sorted(half_terms, key=lambda t: t.starts)
        closed = set(non_school_days)
        years = {t.starts.year for t in self.half_terms} | {t.ends.year for t in self.half_terms}
        bank = holidays.country_holidays("GB", subdiv="ENG", years=years) if years else {}
        days: list[date] = []
        for term in self.half_terms:
            day = term.starts
            while day <= term.ends:
                if day.weekday() < 5 and day not in bank and day not in closed:
                    days.append(day)
                day += timedelta(days=1)
        self.days = days
        self._index = {d: i for i, d in enumerate(days)}

    def is_school_day(self, day: date) -> bool:
        return day in self._index

    def why_not_a_school_day(self, day: date) -> str:
        if day.weekday() >= 5:
            why = "a weekend"
        elif not any(t.starts <= day <= t.ends for t in self.half_terms):
            why = "outside the school's terms"
        else:
            why = "a bank holiday, INSET day or closure"
        return f"{day.isoformat()} is not a school day ({why})"

    def check_school_day(self, day: date) -> None:
        if day not in self._index:
            raise NotASchoolDayError(self.why_not_a_school_day(day))

    def school_days(self, first: date, last: date) -> list[date]:
        """School days from `first` to `last`, both included."""
        return self.days[bisect_left(self.days, first) : bisect_right(self.days, last)]

    def school_days_before(self, day: date, count: int) -> date | None:
        """The school day `count` school days before `day` (not counting `day`)."""
        i = bisect_left(self.days, day) - count
        return self.days[i] if i >= 0 else None

    def half_term_of(self, day: date) -> Term | None:
        """The half-term containing `day`, or in a holiday the half-term just ended."""
        current = None
        for term in self.half_terms:
            if term.starts <= day:
                current = term
        return current

    def year_start(self, day: date) -> date | None:
        """The first school day of the academic year containing `day`."""
        year = academic_year_of(day)
        starts = [t.starts for t in self.half_terms if t.academic_year == year]
        if not starts:
            return None
        firsts = self.school_days(min(starts), day)
        return firsts[0] if firsts else None

    @cached_property
    def school_weeks(self) -> list[date]:
        """Mondays of the weeks with at least one school day, in order."""
        return sorted({week_start(d) for d in self.days})

    def school_weeks_back(self, day: date, count: int) -> date | None:
        """The Monday starting a run of `count` school weeks that ends with `day`'s week.

        A school week is any week with at least one session (the National Framework's
        rolling period), so holiday weeks are stepped over and the run can span terms
        and years. None if the calendar holds fewer weeks than that.
        """
        weeks = self.school_weeks
        i = bisect_right(weeks, week_start(day)) - count
        return weeks[i] if i >= 0 else None


def load_calendar(*, session, school_id: int) -> SchoolCalendar:
    """The school's calendar from its HalfTerm and NonSchoolDay rows."""
    from sqlmodel import select

    from models.tables import HalfTerm, NonSchoolDay

    terms = session.exec(select(HalfTerm).where(HalfTerm.school_id == school_id)).all()
    closed = session.exec(select(NonSchoolDay.day).where(NonSchoolDay.school_id == school_id)).all()
    return SchoolCalendar([Term(t.name, t.starts, t.ends, t.academic_year) for t in terms], closed)
