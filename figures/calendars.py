"""School calendars for the hot paths (imports and figures), built once per distinct set
of term dates.

Building a SchoolCalendar works out England's bank holidays (the `holidays` package), a
few milliseconds: nothing for one school, seconds for a local authority's 600 schools
that mostly share their term dates. The rows are read on every call, so a changed
calendar is seen at once; only the calendar built from identical rows is reused.
"""

from datetime import date
from functools import lru_cache

from sqlalchemy import select
from sqlmodel import Session

from models.calendar import SchoolCalendar, Term
from models.tables import HalfTerm, NonSchoolDay


def school_calendar(session: Session, school_id: int) -> SchoolCalendar:
    """The school's calendar from its HalfTerm and NonSchoolDay rows (as load_calendar)."""
    terms, closed = HalfTerm.__table__, NonSchoolDay.__table__
    connection = session.connection()
    rows = connection.execute(
        select(terms.c.name, terms.c.starts, terms.c.ends, terms.c.academic_year).where(
            terms.c.school_id == school_id
        )
    )
    days = connection.execute(select(closed.c.day).where(closed.c.school_id == school_id))
    return _calendar(
        tuple(sorted((Term(*row) for row in rows), key=_term_order)),
        tuple(sorted(day for (day,) in days)),
    )


def _term_order(term: Term) -> tuple:
    return (term.starts, term.ends, term.name, term.academic_year)


@lru_cache(maxsize=256)
def _calendar(terms: tuple[Term, ...], closed: tuple[date, ...]) -> SchoolCalendar:
    return SchoolCalendar(terms, closed)
