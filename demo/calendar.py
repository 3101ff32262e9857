"""Kent-style term dates for the demo schools, as data.

The same dates as the test calendar: 2025/26 and 2026/27 (the current year). INSET days
on the first day of a term (2 September 2026, 4 January 2027) fall outside the
half-terms below, so only INSET days inside a half-term need a row. Bank holidays come
from the `holidays` package through SchoolCalendar.
"""

from datetime import date, timedelta

from sqlmodel import Session

from models.calendar import SchoolCalendar, Term, academic_year_of
from models.tables import DayKind, HalfTerm, NonSchoolDay

HALF_TERMS: tuple[Term, ...] = (
    Term("Autumn 1", date(2025, 9, 3), date(2025, 10, 24), 2025),
    Term("Autumn 2", date(2025, 11, 3), date(2025, 12, 19), 2025),
    Term("Spring 1", date(2026, 1, 5), date(2026, 2, 13), 2025),
    Term("Spring 2", date(2026, 2, 23), date(2026, 3, 27), 2025),
    Term("Summer 1", date(2026, 4, 13), date(2026, 5, 22), 2025),
    Term("Summer 2", date(2026, 6, 1), date(2026, 7, 21), 2025),
    Term("Autumn 1", date(2026, 9, 3), date(2026, 10, 23), 2026),
    Term("Autumn 2", date(2026, 11, 2), date(2026, 12, 18), 2026),
    Term("Spring 1", date(2027, 1, 5), date(2027, 2, 12), 2026),
    Term("Spring 2", date(2027, 2, 22), date(2027, 3, 26), 2026),
    Term("Summer 1", date(2027, 4, 12), date(2027, 5, 28), 2026),
    Term("Summer 2", date(2027, 6, 7), date(2027, 7, 21), 2026),
)

# INSET days inside a half-term: (day, note).
INSET_DAYS: tuple[tuple[date, str], ...] = ((date(2026, 11, 6), "INSET day"),)


class OutsideDemoCalendarError(ValueError):
    pass


def demo_calendar() -> SchoolCalendar:
    """The demo schools' calendar, built without a database."""
    return SchoolCalendar(HALF_TERMS, [day for day, _ in INSET_DAYS])


def add_calendar(session: Session, school_id: int) -> None:
    """Write the demo term dates and INSET days as the school's HalfTerm and NonSchoolDay
    rows (in the caller's transaction)."""
    session.add_all(
        HalfTerm(
            school_id=school_id,
            academic_year=term.academic_year,
            name=term.name,
            starts=term.starts,
            ends=term.ends,
        )
        for term in HALF_TERMS
    )
    session.add_all(
        NonSchoolDay(school_id=school_id, day=day, kind=DayKind.INSET, note=note)
        for day, note in INSET_DAYS
    )
    session.flush()


def last_school_day_before(day: date, calendar: SchoolCalendar | None = None) -> date:
    """The last school day strictly before `day`: the default end of the demo register,
    so that today's marks are left for the school to take."""
    calendar = calendar or demo_calendar()
    years = {term.academic_year for term in calendar.half_terms}
    earlier = calendar.school_days(calendar.days[0], day - timedelta(days=1))
    if academic_year_of(day) not in years or not earlier:
        raise OutsideDemoCalendarError(
            f"{day.isoformat()} is outside the demo calendar (school days from "
            f"{calendar.days[0].isoformat()} to {calendar.days[-1].isoformat()}); "
            "give the last day to generate explicitly"
        )
    return earlier[-1]
