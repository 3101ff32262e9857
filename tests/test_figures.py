"""Figures on hand-computed registers, on the calendar in conftest.py.

Autumn 1 2026 runs Thu 3 Sep - Fri 23 Oct (37 school days); half-term is the week of
26 Oct; Autumn 2 starts Mon 2 Nov, with an INSET day on Fri 6 Nov; Christmas holidays
run from Sat 19 Dec to Mon 4 Jan; Spring 1 starts Tue 5 Jan 2027.
"""

import pytest
from sqlmodel import Session

from database import make_engine
from figures.compute import compute_figures
from imports.marks import ImportRefused, MarkRow, store_marks
from models.calendar import load_calendar
from models.figures import FigureRules
from models.tables import Pupil
from tests.registers import add_pupil, both, d, register

RULES = FigureRules()


def figures_of(session: Session, school_id: int, pupil: Pupil, as_of: str):
    found = compute_figures(session=session, school_id=school_id, as_of=d(as_of), rules=RULES)
    return next(f for f in found if f.pupil_id == pupil.id)


@pytest.fixture
def session(engine, school):
    with Session(engine, expire_on_commit=False) as session:
        yield session


def test_rolling_ten_school_weeks_step_over_half_term(session, school):
    # As of Wed 25 Nov the ten school weeks are those starting 14 Sep ... 23 Nov: the
    # half-term week of 26 Oct has no sessions and is not counted.
    pupil = add_pupil(session, school.id, 1)
    marks = {
        **both("2026-09-11", "O"),  # Fri before the window: 2, outside
        ("2026-09-14", "AM"): "O",  # first session of the window: 1
        **both("2026-10-23", "G"),  # last day before half-term: 2
        **both("2026-11-02", "O"),  # first day after half-term: 2
        **both("2026-11-19", "G"),  # 2
        ("2026-11-23", "AM"): "U",  # 1
        ("2026-11-24", "PM"): "G",  # 1
        ("2026-11-25", "AM"): "O",  # 1 (as_of itself counts)
        ("2026-11-26", "AM"): "O",  # after as_of
        ("2026-11-17", "AM"): "N",  # N is not counted towards the penalty threshold
    }
    register(session, school.id, pupil, "2026-09-03", "2026-11-26", marks)
    f = figures_of(session, school.id, pupil, "2026-11-25")
    assert f.unauthorised_rolling_window == 10
    assert f.unauthorised_year == 12
    assert f.unexplained_year == 1
    # One session fewer in the window as of the day before.
    assert figures_of(session, school.id, pupil, "2026-11-24").unauthorised_rolling_window == 9


def test_rolling_window_spans_christmas(session, school):
    # As of Tue 12 Jan 2027: weeks of 11 Jan, 4 Jan, 14 Dec ... 2 Nov, 19 Oct. The two
    # Christmas weeks and half-term have no sessions, so the window starts Mon 19 Oct.
    pupil = add_pupil(session, school.id, 2)
    marks = {**both("2026-10-16", "O"), **both("2026-10-19", "O"), **both("2027-01-05", "G")}
    register(session, school.id, pupil, "2026-09-03", "2027-01-12", marks)
    f = figures_of(session, school.id, pupil, "2027-01-12")
    assert f.unauthorised_rolling_window == 4
    assert f.unauthorised_year == 6


def test_rolling_window_spans_academic_years(session, school):
    # As of Fri 11 Sep 2026 the ten school weeks reach back into summer term 2026: weeks of
    # 7 Sep, 31 Aug, then 20 Jul, 13 Jul, 6 Jul, 29 Jun, 22 Jun, 15 Jun, 8 Jun, 1 Jun.
    pupil = add_pupil(session, school.id, 3)
    marks = {**both("2026-05-22", "G"), **both("2026-06-01", "G"), ("2026-09-11", "AM"): "O"}
    register(session, school.id, pupil, "2026-05-18", "2026-09-11", marks)
    f = figures_of(session, school.id, pupil, "2026-09-11")
    assert f.unauthorised_rolling_window == 3
    assert f.unauthorised_year == 1  # the year started on 3 Sep


def test_unexplained_absence_is_overdue_after_five_school_days(session, school):
    pupil = add_pupil(session, school.id, 4)
    marks = {("2026-11-16", "AM"): "N", ("2026-11-02", "PM"): "N"}
    register(session, school.id, pupil, "2026-11-02", "2026-11-25", marks)
    # N on Mon 2 Nov: Tue 3, Wed 4, Thu 5, (INSET Fri 6), Mon 9, Tue 10 are five school days.
    assert figures_of(session, school.id, pupil, "2026-11-10").overdue_unexplained == 0
    assert figures_of(session, school.id, pupil, "2026-11-11").overdue_unexplained == 1
    # N on Mon 16 Nov: five school days later is Mon 23; overdue from Tue 24.
    assert figures_of(session, school.id, pupil, "2026-11-23").overdue_unexplained == 1
    assert figures_of(session, school.id, pupil, "2026-11-24").overdue_unexplained == 2


def test_persistent_absence_needs_twenty_possible_sessions(session, school):
    ill = add_pupil(session, school.id, 5)
    ten_percent = add_pupil(session, school.id, 6)
    register(
        session,
        school.id,
        ill,
        "2026-09-03",
        "2026-09-16",
        {
            (day.isoformat(), half): "I"
            for day in load_calendar(session=session, school_id=school.id).school_days(
                d("2026-09-03"), d("2026-09-16")
            )
            for half in ("AM", "PM")
        },
    )
    register(session, school.id, ten_percent, "2026-09-03", "2026-09-16", both("2026-09-07", "O"))
    # Tue 15 Sep: nine school days, 18 sessions, all missed -- but too few to call it PA.
    f = figures_of(session, school.id, ill, "2026-09-15")
    assert (f.possible_year, f.rate_year, f.persistent_absence) == (18, 0.0, False)
    # Wed 16 Sep: 20 possible sessions.
    f = figures_of(session, school.id, ill, "2026-09-16")
    assert (f.possible_year, f.persistent_absence, f.severe_absence) == (20, True, True)
    assert f.illness_days_year == 10.0
    # Exactly 10% absent (2 of 20) is persistent absence; severe absence needs 50%.
    f = figures_of(session, school.id, ten_percent, "2026-09-16")
    assert (f.rate_year, f.persistent_absence, f.severe_absence) == (90.0, True, False)
    f = figures_of(session, school.id, ten_percent, "2026-09-17")
    assert f.possible_year == 20  # no marks after the 16th: unmarked sessions don't count


def test_sessions_that_are_not_possible_are_left_out(session, school):
    pupil = add_pupil(session, school.id, 7)
    week = ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
    codes = ["/", "\\", "Q", "Y1", "Y7", "Z", "#", "X", "D", "O"]
    marks = {(week[i // 2], "AM" if i % 2 == 0 else "PM"): c for i, c in enumerate(codes)}
    more = ["Y2", "Y3", "Y4", "Y5", "Y6", "/", "\\", "/", "\\", "I"]
    week2 = ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27"]
    marks |= {(week2[i // 2], "AM" if i % 2 == 0 else "PM"): c for i, c in enumerate(more)}
    register(session, school.id, pupil, "2026-11-16", "2026-11-27", marks)
    f = figures_of(session, school.id, pupil, "2026-11-27")
    # Possible: "/", "\", "O" in the first week; four present and "I" in the second.
    assert f.possible_year == 8
    assert f.present_year == 6
    assert f.rate_year == 75.0
    assert (f.unauthorised_year, f.authorised_year) == (1, 1)


def test_bank_holidays_and_inset_days_are_not_school_days(session, school):
    calendar = load_calendar(session=session, school_id=school.id)
    assert not calendar.is_school_day(d("2026-05-04"))  # Early May bank holiday
    assert not calendar.is_school_day(d("2026-11-06"))  # INSET
    assert len(calendar.school_days(d("2026-11-02"), d("2026-11-08"))) == 4
    pupil = add_pupil(session, school.id, 8)
    with pytest.raises(ImportRefused) as refused:
        store_marks(
            session=session,
            school_id=school.id,
            rows=[
                MarkRow(1, pupil.upn, d("2026-05-04"), "AM", "/"),
                MarkRow(2, pupil.upn, d("2026-11-06"), "AM", "/"),
            ],
            recorded_by="Office",
            role="office",
            source="x.csv",
            kind="test",
            sha256="x",
        )
    assert "line 1: 2026-05-04 is not a school day (a bank holiday" in str(refused.value)
    assert "line 2: 2026-11-06 is not a school day" in str(refused.value)


def test_consecutive_days_of_unauthorised_absence(session, school):
    steady = add_pupil(session, school.id, 9)
    across_inset = add_pupil(session, school.id, 10)
    marks = {
        (day.isoformat(), half): "O"
        for day in load_calendar(session=session, school_id=school.id).school_days(
            d("2026-11-16"), d("2026-11-25")
        )
        for half in ("AM", "PM")
    }
    marks[("2026-11-17", "AM")] = "D"  # dual registered: not a possible session, no break
    marks[("2026-11-18", "PM")] = "N"
    marks[("2026-11-20", "AM")] = "G"
    register(session, school.id, steady, "2026-11-02", "2026-11-25", marks)
    # Mon 16 - Wed 25 Nov is eight school days, 16 sessions, one of them D.
    assert figures_of(session, school.id, steady, "2026-11-25").unauthorised_run_days == 7.5
    assert figures_of(session, school.id, steady, "2026-11-18").unauthorised_run_days == 2.5
    # Present on Fri 13 Nov: no run yet.
    assert figures_of(session, school.id, steady, "2026-11-13").unauthorised_run_days == 0

    # O from Wed 4 to Tue 10 Nov: Wed, Thu, (INSET Fri), Mon, Tue are four school days.
    marks = {
        **both("2026-11-04", "O"),
        **both("2026-11-05", "O"),
        **both("2026-11-09", "O"),
        **both("2026-11-10", "U"),
        ("2026-11-03", "PM"): "I",
    }
    register(session, school.id, across_inset, "2026-11-02", "2026-11-11", marks)
    assert figures_of(session, school.id, across_inset, "2026-11-10").unauthorised_run_days == 4
    # Back on Wed 11: the run is over.
    assert figures_of(session, school.id, across_inset, "2026-11-11").unauthorised_run_days == 0


def test_year_half_term_illness_and_lateness(session, school):
    pupil = add_pupil(session, school.id, 11)
    calendar = load_calendar(session=session, school_id=school.id)
    marks = {
        (day.isoformat(), half): "I"
        for day in calendar.school_days(d("2026-11-02"), d("2026-11-13"))
        for half in ("AM", "PM")
    }
    marks |= {("2026-11-19", "AM"): "L", ("2026-11-23", "AM"): "L", ("2026-11-24", "AM"): "U"}
    register(session, school.id, pupil, "2026-09-03", "2026-11-25", marks)
    f = figures_of(session, school.id, pupil, "2026-11-25")
    # Autumn 1: 37 days, 74 sessions all present. Autumn 2 to Wed 25 Nov: 17 school days
    # (INSET on the 6th); the first 9 ill (18 sessions), 8 days in school of which one U.
    assert f.possible_year == 74 + 34
    assert f.present_year == 74 + 15
    assert f.rate_year == round(100 * 89 / 108, 2)
    assert f.possible_half_term == 34
    assert f.rate_half_term == round(100 * 15 / 34, 2)
    assert f.illness_days_year == 9.0
    assert f.late_this_week == 2  # L on Mon 23, U on Tue 24; Thu 19 was last week
    # The short window is four school weeks: 2 Nov ... 23 Nov, all of Autumn 2 to date.
    assert f.rate_short_window == f.rate_half_term


def test_a_database_from_before_packed_week_counts_is_upgraded(engine, session, school):
    # Ill on Mon 2 and Tue 3 Nov, O on Wed 4 Nov AM, otherwise present from Thu 3 Sep.
    pupil = add_pupil(session, school.id, 12)
    marks = {**both("2026-11-02", "I"), **both("2026-11-03", "I"), ("2026-11-04", "AM"): "O"}
    register(session, school.id, pupil, "2026-09-03", "2026-11-04", marks)
    before = figures_of(session, school.id, pupil, "2026-11-04")
    session.commit()
    with engine.begin() as connection:  # as the table was made before the column existed
        connection.exec_driver_sql("ALTER TABLE registerweek DROP COLUMN counts")
    engine.dispose()

    upgraded = make_engine(str(engine.url))
    with Session(upgraded) as again:
        after = figures_of(again, school.id, pupil, "2026-11-04")
    assert after == before
    # Autumn 1 is 74 sessions; Autumn 2 to Wed 4 Nov is 6, of which 4 ill and 1 O.
    assert (after.possible_year, after.present_year) == (80, 75)
    assert (after.illness_days_year, after.unauthorised_year) == (2.0, 1)


def test_figures_for_some_pupils_are_theirs_from_the_whole_school(session, school):
    pupils = [add_pupil(session, school.id, serial) for serial in (13, 14, 15)]
    for n, pupil in enumerate(pupils):  # 0, 1 and 2 days off with illness
        days = ["2026-11-02", "2026-11-03"][:n]
        register(session, school.id, pupil, "2026-09-03", "2026-11-04", both_days(days, "I"))
    whole = compute_figures(
        session=session, school_id=school.id, as_of=d("2026-11-04"), rules=RULES
    )
    some = compute_figures(
        session=session,
        school_id=school.id,
        as_of=d("2026-11-04"),
        rules=RULES,
        pupil_ids=[pupils[2].id, pupils[0].id],
    )
    assert [f.pupil_id for f in some] == [pupils[0].id, pupils[2].id]
    assert some == [f for f in whole if f.pupil_id in {pupils[0].id, pupils[2].id}]
    assert [f.illness_days_year for f in some] == [0.0, 2.0]
    none = compute_figures(
        session=session, school_id=school.id, as_of=d("2026-11-04"), rules=RULES, pupil_ids=[]
    )
    assert none == []


def both_days(days: list[str], code: str) -> dict[tuple[str, str], str]:
    return {key: code for day in days for key in both(day, code)}
