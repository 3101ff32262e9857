"""The School page's register figures: kept between pages and brought up to date from what
changed since they were counted. After each change to the register or the roll, the very
next page shows it (no refresher run in between), and its figures are those of counting
the whole register again.

Three pupils at St Barnabas', present every session from 03/09/2026 to 24/11/2026 except:
Amelia, N both sessions on Tue 24/11; Ben, O both sessions on Mon 16/11; Cara, none.
"""

from datetime import UTC, date, datetime

import pytest
from sqlmodel import Session

import web.queries
from imports.marks import MarkRow, store_marks
from models.tables import Pupil, School
from tests.conftest import add_school
from tests.registers import add_pupil, both, register

FIRST, LAST = "2026-09-03", "2026-11-24"
ON_24TH = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # after both registers have closed
ON_25TH = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)


@pytest.fixture
def school(engine) -> tuple[int, dict[str, Pupil]]:
    with Session(engine, expire_on_commit=False) as session:
        school = add_school(session)
        pupils = {}
        for serial, (name, marks) in enumerate(
            (
                ("Amelia", both(LAST, "N")),
                ("Ben", both("2026-11-16", "O")),
                ("Cara", {}),
            ),
            start=1,
        ):
            pupil = add_pupil(session, school.id, serial)
            pupil.forename = name
            register(session, school.id, pupil, FIRST, LAST, marks)
            pupils[name] = pupil
        session.commit()
        return school.id, pupils


def page(engine, school_id: int, now: datetime) -> web.queries.SchoolPage:
    with Session(engine, expire_on_commit=False) as session:
        school = session.get(School, school_id)
        ctx = web.queries.school_context(session, school, now=now)
        return web.queries.school_page(session, ctx)


def codes(found: web.queries.SchoolPage) -> dict[str, int]:
    return {code: n for code, _, n, _ in found.codes}


def counted_whole(engine, school_id: int, now: datetime) -> web.queries.SchoolPage:
    """The page with nothing kept: the whole register counted again."""
    web.queries.forget_register_counts()
    return page(engine, school_id, now)


def same_figures(a: web.queries.SchoolPage, b: web.queries.SchoolPage) -> bool:
    return (a.codes, a.trend, a.cohorts, a.rate, a.persistent, a.severe) == (
        b.codes,
        b.trend,
        b.cohorts,
        b.rate,
        b.persistent,
        b.severe,
    )


def marks(session: Session, school_id: int, rows: list[MarkRow], sha256: str) -> None:
    store_marks(
        session=session,
        school_id=school_id,
        rows=rows,
        recorded_by="Olive Office",
        role="office_staff",
        source="test",
        kind="case",
        sha256=sha256,
    )
    session.commit()


def test_an_amended_mark_shows_on_the_next_page(engine, school):
    """The office records Amelia's first-day call: her two Ns of 24/11 become I."""
    school_id, pupils = school
    before = page(engine, school_id, ON_24TH)
    assert {c: n for c, n in codes(before).items() if c not in "/\\"} == {"N": 2, "O": 2}
    with Session(engine, expire_on_commit=False) as session:
        rows = [
            MarkRow(n, pupils["Amelia"].upn, date(2026, 11, 24), half, "I", reason="Parent: ill")
            for n, half in ((1, "AM"), (2, "PM"))
        ]
        marks(session, school_id, rows, "amelia-ill")
    after = page(engine, school_id, ON_24TH)
    assert {c: n for c, n in codes(after).items() if c not in "/\\"} == {"I": 2, "O": 2}
    assert codes(after)["/"] == codes(before)["/"]
    # I is authorised: her two sessions still count as absence, so the rate stays.
    assert after.rate == before.rate
    assert same_figures(after, counted_whole(engine, school_id, ON_24TH))


def test_a_new_days_register_shows_on_the_next_page(engine, school):
    """Wednesday 25/11's register: Amelia present, Ben N both sessions, Cara late (L) in
    the morning and present in the afternoon."""
    school_id, pupils = school
    before = page(engine, school_id, ON_25TH)
    assert before.trend[-1].week_start == date(2026, 11, 23)
    day = date(2026, 11, 25)
    day_codes = {
        "Amelia": ("/", "\\"),
        "Ben": ("N", "N"),
        "Cara": ("L", "\\"),
    }
    rows = [
        MarkRow(2 * n + k + 1, pupils[name].upn, day, half, code)
        for n, (name, pair) in enumerate(day_codes.items())
        for k, (half, code) in enumerate(zip(("AM", "PM"), pair, strict=True))
    ]
    with Session(engine, expire_on_commit=False) as session:
        marks(session, school_id, rows, "wednesday")
    after = page(engine, school_id, ON_25TH)
    was, now = codes(before), codes(after)
    assert now["N"] == was["N"] + 2 == 4
    assert now["L"] == 1
    assert now["/"] == was["/"] + 1
    assert now["\\"] == was["\\"] + 2
    # The week's trend point takes the new day: 3 pupils x 2 sessions more possible.
    assert after.trend[-1].week_start == date(2026, 11, 23)
    assert same_figures(after, counted_whole(engine, school_id, ON_25TH))


def test_the_roll_changing_shows_on_the_next_page(engine, school):
    """Ben leaves the roll, Cara is found eligible for free school meals, and Dan joins
    with a register from 02/11 (one U on 23/11): none of it through a marks import."""
    school_id, pupils = school
    before = page(engine, school_id, ON_24TH)
    assert before.pupils == 3
    fsm_before = next(c for c in before.cohorts if c.name == "Free school meals")
    assert fsm_before.pupils == 0
    with Session(engine, expire_on_commit=False) as session:
        ben = session.get(Pupil, pupils["Ben"].id)
        ben.on_roll = False
        cara = session.get(Pupil, pupils["Cara"].id)
        cara.fsm = True
        session.add_all([ben, cara])
        session.commit()
    left = page(engine, school_id, ON_24TH)
    assert left.pupils == 2
    assert "O" not in codes(left)
    assert next(c for c in left.cohorts if c.name == "Free school meals").pupils == 1
    assert same_figures(left, counted_whole(engine, school_id, ON_24TH))
    with Session(engine, expire_on_commit=False) as session:
        dan = add_pupil(session, school_id, 4)
        dan.forename = "Dan"
        register(
            session,
            school_id,
            dan,
            "2026-11-02",
            LAST,
            {("2026-11-23", "AM"): "U"},
        )
        session.commit()
    joined = page(engine, school_id, ON_24TH)
    assert joined.pupils == 3
    assert codes(joined)["U"] == 1
    assert codes(joined)["N"] == 2
    assert same_figures(joined, counted_whole(engine, school_id, ON_24TH))


def test_nothing_changed_keeps_the_count(engine, school):
    """A second page with nothing changed reads nothing of the register again: the count
    is the very one kept."""
    school_id, _ = school
    page(engine, school_id, ON_24TH)
    with Session(engine, expire_on_commit=False) as session:
        ctx = web.queries.school_context(session, session.get(School, school_id), now=ON_24TH)
        first = web.queries.year_first_day(ctx)
        kept = web.queries.register_count(session, school_id, first)
        assert web.queries.register_count(session, school_id, first) is kept
