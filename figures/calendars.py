"""School calendars for the hot paths (imports and figures), built once per distinct set
of term dates.

Building a SchoolCalendar works out England's bank holidays (the `holidays` package), a
few milliseconds: nothing for one school, seconds for a local authority's 600 schools
that mostly share their term dates. The rows are read on every call, so a changed
calendar is seen at once; only the calendar built from identical rows is reused.
"""

from datetime import date
from functools import lru_cache

from sqlalchemy import bindparam, select
from sqlmodel import Session

from database import driver_rows
from models.calendar import SchoolCalendar, Term
from models.tables import HalfTerm, NonSchoolDay


def school_calendar(session: Session, school_id: int) -> SchoolCalendar:
    """The school's calendar from its HalfTerm and NonSchoolDay rows (as load_calendar)."""
    connection = session.connection()
    rows = driver_rows(connection, _TERMS, school_id=school_id)
    days = driver_rows(connection, _CLOSED, school_id=school_id)
    return _calendar(
        tuple(
            sorted(
                (Term(name, _day(starts), _day(ends), year) for name, starts, ends, year in rows),
                key=_term_order,
            )
        ),
        tuple(sorted(_day(day) for (day,) in days)),
    )


_TERMS = select(
    HalfTerm.__table__.c.name,
    HalfTerm.__table__.c.starts,
    HalfTerm.__table__.c.ends,
    HalfTerm.__table__.c.academic_year,
).where(HalfTerm.__table__.c.school_id == bindparam("school_id"))
_CLOSED = select(NonSchoolDay.__table__.c.day).where(
    NonSchoolDay.__table__.c.school_id == bindparam("school_id")
)


def _day(value: date | str) -> date:
    """A date as the driver gives it (SQLite: text)."""
    return value if isinstance(value, date) else date.fromisoformat(value[:10])


def _term_order(term: Term) -> tuple:
    return (term.starts, term.ends, term.name, term.academic_year)


@lru_cache(maxsize=256)
def _calendar(terms: tuple[Term, ...], closed: tuple[date, ...]) -> SchoolCalendar:
    return SchoolCalendar(terms, closed)
