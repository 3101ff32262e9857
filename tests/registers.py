"""Registers written by hand for the tests: a pupil present every session except the
ones a test names."""

from datetime import date

from sqlmodel import Session

from imports.marks import MarkRow, store_marks
from models.calendar import load_calendar
from models.tables import Pupil
from models.upn import make_upn


def d(text: str) -> date:
    return date.fromisoformat(text)


def add_pupil(session: Session, school_id: int, serial: int) -> Pupil:
    pupil = Pupil(
        school_id=school_id,
        upn=make_upn(886, 2001, 26, serial),
        forename="Test",
        surname=f"Pupil{serial}",
        date_of_birth=date(2018, 1, 1),
        year_group=3,
    )
    session.add(pupil)
    session.flush()
    return pupil


def register(
    session: Session,
    school_id: int,
    pupil: Pupil,
    first: str,
    last: str,
    marks: dict[tuple[str, str], str] | None = None,
) -> None:
    """Present every school session from `first` to `last`, except the sessions in
    `marks` ({(day, "AM"|"PM"): code}); a code of "" leaves the session unmarked."""
    calendar = load_calendar(session=session, school_id=school_id)
    marks = marks or {}
    rows = []
    for day in calendar.school_days(d(first), d(last)):
        for half, present in (("AM", "/"), ("PM", "\\")):
            code = marks.get((day.isoformat(), half), present)
            if code:
                rows.append(MarkRow(len(rows) + 1, pupil.upn, day, half, code))
    store_marks(
        session=session,
        school_id=school_id,
        rows=rows,
        recorded_by="Office",
        role="office",
        source="test",
        kind="test",
        sha256=f"{pupil.id}-{first}-{last}",
    )


def both(day: str, code: str) -> dict[tuple[str, str], str]:
    return {(day, "AM"): code, (day, "PM"): code}
