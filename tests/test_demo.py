"""Demo data: deterministic, valid, and shaped like England's registers.

The large population (3,000 pupils, Reception to Year 11, the whole autumn term of
2026) is generated in memory once; only the create_demo tests touch the database.
"""

import random
import re
from collections import Counter, defaultdict
from datetime import date

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from demo.calendar import demo_calendar, last_school_day_before
from demo.generate import (
    DEMO_SCHOOLS,
    DemoSchool,
    DemoSchoolExistsError,
    create_demo,
    even_roll,
    generate_pupils,
    generate_register,
    generate_register_tuples,
    summarise,
)
from models.calendar import load_calendar
from models.codes import NATIONAL_CODES
from models.tables import (
    Contact,
    HalfTerm,
    ImportBatch,
    NonSchoolDay,
    Pupil,
    RegisterMark,
    RegisterWeek,
    School,
)
from models.upn import validate_upn

CALENDAR = demo_calendar()
AUTUMN = (date(2026, 9, 3), date(2026, 12, 18))
SMALL = DemoSchool(
    name="Little Demo Primary",
    policy="st-barnabas",
    urn="199001",
    estab=2999,
    roll=even_roll(range(0, 7), 70),
    area="tunbridge-wells",
)
POPULATION = DemoSchool(
    name="Big Demo All-through",
    policy="springbank",
    urn="199002",
    estab=4999,
    roll=even_roll(range(0, 12), 3000),
    area="swale",
)
UNAUTHORISED = {"G", "O", "U"}
ABSENCE_RETURN = {"N", "O", "G", "U"}


def generate(school: DemoSchool, seed: int, first: date, last: date):
    rng = random.Random(seed)
    pupils = generate_pupils(school, rng)
    return pupils, list(generate_register(pupils, CALENDAR, first, last, rng))


@pytest.fixture(scope="module")
def population():
    pupils, rows = generate(POPULATION, 7, *AUTUMN)
    return pupils, rows, summarise(rows)


def test_last_school_day_before():
    assert last_school_day_before(date(2026, 11, 25)) == date(2026, 11, 24)
    assert last_school_day_before(date(2026, 11, 2)) == date(2026, 10, 23)  # half-term
    assert last_school_day_before(date(2026, 11, 9)) == date(2026, 11, 5)  # INSET Fri 6th
    with pytest.raises(ValueError, match="outside the demo calendar"):
        last_school_day_before(date(2030, 1, 1))


def test_generation_is_deterministic_for_a_seed():
    pupils, rows = generate(SMALL, 3, *AUTUMN)
    again_pupils, again_rows = generate(SMALL, 3, *AUTUMN)
    assert [(p.upn, p.forename, p.surname, p.contacts) for p in pupils] == [
        (p.upn, p.forename, p.surname, p.contacts) for p in again_pupils
    ]
    assert rows == again_rows
    _, other_rows = generate(SMALL, 4, *AUTUMN)
    assert rows != other_rows


def test_tuples_are_the_same_marks_as_rows():
    pupils = generate_pupils(SMALL, random.Random(5))
    rows = list(generate_register(pupils, CALENDAR, *AUTUMN, random.Random(6)))
    tuples = list(generate_register_tuples(pupils, CALENDAR, *AUTUMN, random.Random(6)))
    assert [(r.upn, r.day, r.session, r.code, r.minutes_late) for r in rows] == tuples
    assert [r.line for r in rows] == list(range(1, len(rows) + 1))


def test_codes_upns_and_sessions_are_valid():
    pupils, rows = generate(SMALL, 8, *AUTUMN)
    for pupil in pupils:
        assert validate_upn(pupil.upn) == pupil.upn
    assert len({p.upn for p in pupils}) == len(pupils) == SMALL.pupils
    for row in rows:
        assert row.code in NATIONAL_CODES
        assert row.code != ("\\" if row.session == "AM" else "/")
        assert (row.minutes_late is not None) == (row.code in ("L", "U"))
        if row.minutes_late is not None:
            assert row.minutes_late > 0


def test_one_mark_per_session_and_none_outside_school_days():
    """A year and a term: weekends, holidays, bank holidays (Good Friday, the early May
    bank holiday) and the INSET day of 6 November 2026 get no marks."""
    first, last = date(2025, 9, 1), date(2026, 12, 31)
    pupils, rows = generate(SMALL, 9, first, last)
    per_pupil_day = Counter((r.upn, r.day) for r in rows)
    days = {r.day for r in rows}
    assert days == set(CALENDAR.school_days(first, last))
    assert all(CALENDAR.is_school_day(day) for day in days)
    assert all(day.weekday() < 5 for day in days)
    for closed in (date(2026, 4, 3), date(2026, 5, 4), date(2026, 11, 6), date(2026, 10, 27)):
        assert closed not in days
    assert set(per_pupil_day.values()) == {2}
    assert len(per_pupil_day) == len(pupils) * len(days)
    assert len({(r.upn, r.day, r.session) for r in rows}) == len(rows)


def test_absence_looks_like_england(population):
    pupils, _, summary = population
    assert summary.pupils == POPULATION.pupils
    assert 0.055 <= summary.absence_rate <= 0.085
    assert 0.15 <= summary.persistent_share <= 0.25
    assert 0.01 <= summary.severe_share <= 0.04
    assert summary.top_absence_codes(1)[0][0] == "I"
    assert summary.weekday_rate([0, 4]) > summary.weekday_rate([1, 2, 3])
    fsm = [p.upn for p in pupils if p.fsm]
    others = [p.upn for p in pupils if not p.fsm]
    assert summary.persistent_share_of(fsm) > 1.5 * summary.persistent_share_of(others)


def test_illness_rises_through_the_half_term(population):
    _, rows, _ = population
    early = (date(2026, 9, 7), date(2026, 9, 25))
    late = (date(2026, 10, 5), date(2026, 10, 23))

    def illness(span: tuple[date, date]) -> float:
        marks = [r for r in rows if span[0] <= r.day <= span[1]]
        return sum(r.code == "I" for r in marks) / len(marks)

    assert illness(late) > 1.2 * illness(early)


def test_flags_in_realistic_proportions(population):
    pupils, _, _ = population
    n = len(pupils)

    def share(flag: str) -> float:
        return sum(getattr(p, flag) for p in pupils) / n

    assert 0.10 <= share("send") <= 0.16
    assert 0.025 <= share("ehcp") <= 0.055
    assert all(p.send for p in pupils if p.ehcp)
    assert 0.19 <= share("fsm") <= 0.29
    assert 0.02 <= share("social_worker") <= 0.045
    assert 0.004 <= share("child_protection_plan") <= 0.018
    assert 0.002 <= share("looked_after") <= 0.013
    assert 0.01 <= share("young_carer") <= 0.03
    assert 1 <= sum(p.part_time_timetable for p in pupils) <= 0.01 * n
    for pupil in pupils:
        if pupil.looked_after or pupil.child_protection_plan:
            assert pupil.social_worker


def test_contacts(population):
    pupils, _, _ = population
    channels = Counter()
    emergency = 0
    for pupil in pupils:
        contacts = pupil.contacts
        assert [c.priority for c in contacts] == list(range(1, len(contacts) + 1))
        assert any(c.parental_responsibility for c in contacts)
        assert 1 <= sum(c.parental_responsibility for c in contacts) <= 2
        for c in contacts:
            assert re.fullmatch(r"07700 900\d{3}", c.phone)
            assert c.email == "" or re.fullmatch(r"[a-z.']+\d+@example\.(org|com)", c.email)
            assert re.fullmatch(r"[A-Z]{1,2}\d{1,2} \d[A-Z]{2}", c.postcode)
            assert c.address.count("\n") >= 2
            if c.preferred_channel in ("email", "both"):
                assert c.email
        if not pupil.looked_after:
            channels.update(c.preferred_channel for c in contacts if c.parental_responsibility)
        emergency += any(not c.parental_responsibility for c in contacts)
    total = sum(channels.values())
    assert 0.64 <= channels["email"] / total <= 0.76
    assert 0.1 <= channels["post"] / total <= 0.2
    assert 0.1 <= channels["both"] / total <= 0.2
    assert 0.3 <= emergency / len(pupils) <= 0.6


def test_siblings_share_contacts_and_holidays(population):
    pupils, rows, _ = population
    by_family = defaultdict(list)
    for pupil in pupils:
        by_family[id(pupil.family)].append(pupil.upn)
    holidays = defaultdict(set)
    for row in rows:
        if row.code == "G":
            holidays[row.upn].add(row.day)
    families = [upns for upns in by_family.values() if len(upns) > 1]
    assert len(families) > 300
    together = [upns for upns in families if any(holidays[u] for u in upns)]
    recent = CALENDAR.school_days_before(AUTUMN[1], 7)
    assert together
    for upns in together:
        # Recent holidays may still be `N`; earlier ones are the same days for all.
        settled = [{d for d in holidays[u] if d < recent} for u in upns]
        assert all(days == settled[0] for days in settled)


def test_unexplained_absence_only_on_the_last_days(population):
    _, rows, _ = population
    n_days = sorted({r.day for r in rows if r.code == "N"})
    assert n_days
    assert n_days[0] >= CALENDAR.school_days_before(AUTUMN[1], 7)
    last_day = [r for r in rows if r.day == AUTUMN[1]]
    overdue = [
        r for r in rows if r.code == "N" and r.day < CALENDAR.school_days_before(AUTUMN[1], 4)
    ]
    assert sum(r.code == "N" for r in last_day) > len(overdue) > 0


def test_pupils_the_returns_and_penalty_duty_must_find(population):
    """Some pupils have 10 continuous school days of unauthorised absence (attendance
    return), 15 days of illness (sickness return), or 10 unauthorised sessions within
    10 school weeks (the duty to consider a penalty notice)."""
    _, rows, _ = population
    days = CALENDAR.school_days(*AUTUMN)
    weeks = CALENDAR.school_weeks
    marks: dict[str, dict[date, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        marks[row.upn][row.day].append(row.code)
    long_runs = sickness = penalty = 0
    for register in marks.values():
        run = longest = 0
        for day in days:
            codes = register[day]
            if all(code in ABSENCE_RETURN for code in codes):
                run += 1
                longest = max(longest, run)
            elif not any(code in ABSENCE_RETURN for code in codes):
                run = 0
        long_runs += longest >= 10
        sickness += sum(codes.count("I") for codes in register.values()) >= 30
        by_week = Counter(
            CALENDAR.school_weeks_back(day, 1)
            for day, codes in register.items()
            for code in codes
            if code in UNAUTHORISED
        )
        penalty += any(sum(by_week[w] for w in weeks[i : i + 10]) >= 10 for i in range(len(weeks)))
    assert 0 < long_runs < 0.03 * len(marks)
    assert 0 < sickness < 0.05 * len(marks)
    assert 0 < penalty < 0.12 * len(marks)


def test_create_demo_writes_a_school(engine):
    summary = create_demo(engine=engine, schools=[SMALL], through=date(2026, 10, 23))
    (made,) = summary.schools
    assert made.pupils == SMALL.pupils and made.first_day == date(2026, 9, 3)
    days = CALENDAR.school_days(date(2026, 9, 3), date(2026, 10, 23))
    assert made.marks == SMALL.pupils * 2 * len(days)
    with Session(engine) as session:
        school = session.execute(select(School)).scalar_one()
        assert (school.name, school.urn, school.policy) == (SMALL.name, SMALL.urn, "st-barnabas")
        assert (school.la_code, school.estab) == ("886", "2999")

        def count(table) -> int:
            return session.execute(select(func.count()).select_from(table)).scalar()

        assert count(HalfTerm) == 12 and count(NonSchoolDay) == 1
        assert count(Pupil) == SMALL.pupils
        assert count(Contact) == made.contacts >= SMALL.pupils
        assert count(RegisterMark) == made.marks
        assert count(RegisterWeek) == SMALL.pupils * len(
            {CALENDAR.school_weeks_back(d, 1) for d in days}
        )
        batch = session.execute(select(ImportBatch)).scalar_one()
        assert (batch.kind, batch.imported_by, batch.added) == ("demo", "Demo data", made.marks)
        calendar = load_calendar(session=session, school_id=school.id)
        assert calendar.days == CALENDAR.days
        stored = Counter(session.execute(select(RegisterMark.code)).scalars())
        assert stored == Counter(made.absence.codes)


def test_create_demo_refuses_an_existing_school_unless_replacing(engine):
    create_demo(engine=engine, schools=[SMALL], through=date(2026, 9, 18), seed=1)
    with pytest.raises(DemoSchoolExistsError, match="199001"):
        create_demo(engine=engine, schools=[SMALL], through=date(2026, 9, 18), seed=2)
    again = create_demo(
        engine=engine, schools=[SMALL], through=date(2026, 9, 25), seed=2, replace=True
    )
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(School)).scalar() == 1
        assert session.execute(select(func.count()).select_from(Pupil)).scalar() == SMALL.pupils
        marks = session.execute(select(func.count()).select_from(RegisterMark)).scalar()
        assert marks == again.schools[0].marks
        assert session.execute(select(func.max(RegisterMark.day))).scalar() == date(2026, 9, 25)


def test_demo_schools():
    assert list(DEMO_SCHOOLS) == ["st-barnabas", "all-saints", "sevenoaks", "springbank"]
    sizes = {policy: school.pupils for policy, school in DEMO_SCHOOLS.items()}
    assert sizes == {"st-barnabas": 210, "all-saints": 420, "sevenoaks": 1100, "springbank": 600}
    assert DEMO_SCHOOLS["sevenoaks"].year_groups == (7, 8, 9, 10, 11, 12, 13)
    assert DEMO_SCHOOLS["st-barnabas"].year_groups == tuple(range(7))
    sevenoaks = generate_pupils(DEMO_SCHOOLS["sevenoaks"], random.Random(1))
    assert not any(p.fsm for p in sevenoaks)  # independent: no free school meals
