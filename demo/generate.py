"""`attend demo-data`: demo schools with pupils, contacts and register history.

Everything is generated from a seed, so the same seed gives the same schools, pupils
and marks. The marks go through store_marks like any import, so they are validated
against the school's calendar and the compact weekly register the figures read is built
with them. Each school is written in one transaction.
"""

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import ColumnElement, Table, delete, insert, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from database import transaction
from demo.calendar import add_calendar, demo_calendar
from demo.pupils import DemoContact, DemoPupil, generate_pupils
from demo.register import (
    AbsenceSummary,
    generate_register,
    generate_register_tuples,
    summarise,
)
from demo.schools import DEMO_SCHOOLS, DemoSchool, even_roll, synthetic_schools
from imports.marks import store_marks
from models.calendar import SchoolCalendar, academic_year_of
from models.tables import Contact, Pupil, School

__all__ = [
    "DEMO_SCHOOLS",
    "DemoDataError",
    "DemoProgress",
    "DemoSchool",
    "DemoSchoolExistsError",
    "DemoSummary",
    "SchoolSummary",
    "create_demo",
    "even_roll",
    "generate_pupils",
    "generate_register",
    "generate_register_tuples",
    "summarise",
    "synthetic_schools",
]

RECORDED_BY = "Demo data"
ROLE = "system"
KIND = "demo"

# (school name, marks stored so far, marks in all)
DemoProgress = Callable[[str, int, int], None]


class DemoDataError(ValueError):
    """The demo data cannot be made as asked; nothing was written."""


class DemoSchoolExistsError(DemoDataError):
    pass


@dataclass
class SchoolSummary:
    name: str
    urn: str
    policy: str
    pupils: int
    contacts: int
    first_day: date | None  # the register runs from here to DemoSummary.through
    absence: AbsenceSummary

    @property
    def marks(self) -> int:
        return self.absence.marks


@dataclass
class DemoSummary:
    through: date
    seed: int
    schools: list[SchoolSummary]


def create_demo(
    *,
    engine: Engine,
    schools: Sequence[DemoSchool] = tuple(DEMO_SCHOOLS.values()),
    through: date,
    seed: int = 42,
    replace: bool = False,
    progress: DemoProgress | None = None,
) -> DemoSummary:
    """Create the demo schools with their calendars, pupils, contacts and register marks
    from the start of the academic year containing `through` to `through` itself.

    Refuses (DemoSchoolExistsError, nothing written) when a school with one of the URNs
    is already in the database, unless `replace` is set: then that school and everything
    recorded about it is deleted first.
    """
    calendar = demo_calendar()
    academic_year = academic_year_of(through)
    if academic_year not in {term.academic_year for term in calendar.half_terms}:
        raise DemoDataError(
            f"{through.isoformat()} is outside the demo calendar "
            f"({calendar.days[0].isoformat()} to {calendar.days[-1].isoformat()})"
        )
    urns = [school.urn for school in schools]
    if len(set(urns)) != len(urns):
        raise DemoDataError(f"the same URN is given twice: {', '.join(urns)}")
    with Session(engine) as session:
        existing = session.execute(
            select(School.urn, School.name).where(School.urn.in_(urns)).order_by(School.urn)
        ).all()
    if existing and not replace:
        named = ", ".join(f"{urn} ({name})" for urn, name in existing)
        raise DemoSchoolExistsError(
            f"the database already has a school with URN {named}; nothing was written. "
            "Choose other schools, or replace it, deleting everything recorded about it"
        )
    first_day = calendar.year_start(through)
    summaries = [
        _create_school(
            engine=engine,
            spec=spec,
            calendar=calendar,
            first_day=first_day,
            through=through,
            academic_year=academic_year,
            seed=seed,
            progress=progress,
        )
        for spec in schools
    ]
    return DemoSummary(through=through, seed=seed, schools=summaries)


def _create_school(
    *,
    engine: Engine,
    spec: DemoSchool,
    calendar: SchoolCalendar,
    first_day: date | None,
    through: date,
    academic_year: int,
    seed: int,
    progress: DemoProgress | None,
) -> SchoolSummary:
    # A generator per school, so a school's data does not depend on which others are made.
    rng = random.Random(f"{seed}:{spec.urn}")
    pupils = generate_pupils(spec, rng, academic_year=academic_year)
    rows = list(generate_register(pupils, calendar, first_day, through, rng)) if first_day else []
    with transaction(engine) as session:
        _remove_school(session, spec.urn)
        school = School(
            name=spec.name,
            urn=spec.urn,
            la_code=f"{spec.la_code:03d}",
            estab=f"{spec.estab:04d}",
            policy=spec.policy,
        )
        session.add(school)
        session.flush()
        add_calendar(session, school.id)
        contacts = _add_pupils(session, school.id, pupils)
        if rows:
            fingerprint = f"demo-data:{spec.urn}:{seed}:{first_day}:{through}"
            store_marks(
                session=session,
                school_id=school.id,
                rows=rows,
                recorded_by=RECORDED_BY,
                role=ROLE,
                source=f"demo data for {spec.name}",
                kind=KIND,
                sha256=hashlib.sha256(fingerprint.encode()).hexdigest(),
                progress=(lambda done, total: progress(spec.name, done, total))
                if progress
                else None,
            )
    return SchoolSummary(
        name=spec.name,
        urn=spec.urn,
        policy=spec.policy,
        pupils=len(pupils),
        contacts=contacts,
        first_day=first_day,
        absence=summarise(rows),
    )


def _add_pupils(session: Session, school_id: int, pupils: Sequence[DemoPupil]) -> int:
    """Insert the pupils and their contacts; returns the number of contacts."""
    session.execute(
        insert(Pupil),
        [
            {
                "school_id": school_id,
                "upn": p.upn,
                "forename": p.forename,
                "surname": p.surname,
                "date_of_birth": p.date_of_birth,
                "year_group": p.year_group,
                "sex": p.sex,
                "send": p.send,
                "ehcp": p.ehcp,
                "fsm": p.fsm,
                "social_worker": p.social_worker,
                "child_protection_plan": p.child_protection_plan,
                "looked_after": p.looked_after,
                "young_carer": p.young_carer,
                "part_time_timetable": p.part_time_timetable,
                "on_roll": True,
            }
            for p in pupils
        ],
    )
    ids = dict(
        session.execute(select(Pupil.upn, Pupil.id).where(Pupil.school_id == school_id)).all()
    )
    contacts = [_contact_values(ids[p.upn], c) for p in pupils for c in p.contacts]
    if contacts:
        session.execute(insert(Contact), contacts)
    return len(contacts)


def _contact_values(pupil_id: int, contact: DemoContact) -> dict:
    return {
        "pupil_id": pupil_id,
        "priority": contact.priority,
        "title": contact.title,
        "forename": contact.forename,
        "surname": contact.surname,
        "relationship": contact.relationship,
        "parental_responsibility": contact.parental_responsibility,
        "phone": contact.phone,
        "email": contact.email,
        "address": contact.address,
        "postcode": contact.postcode,
        "preferred_channel": contact.preferred_channel,
    }


def _remove_school(session: Session, urn: str) -> None:
    """Delete the school with this URN, if there is one, and every row that refers to it
    directly or through other rows (pupils, marks, contacts, ...), children first."""
    school_id = session.execute(select(School.id).where(School.urn == urn)).scalar()
    if school_id is None:
        return
    school_table = School.__table__
    doomed: dict[Table, ColumnElement[bool]] = {school_table: school_table.c.id == school_id}
    for table in SQLModel.metadata.sorted_tables:  # parents before children
        refers = [
            fk.parent.in_(select(fk.column).where(doomed[fk.column.table]))
            for fk in table.foreign_keys
            if fk.column.table in doomed and fk.column.table is not table
        ]
        if refers and table is not school_table:
            doomed[table] = or_(*refers)
    for table in reversed(SQLModel.metadata.sorted_tables):
        if table in doomed:
            session.execute(delete(table).where(doomed[table]))
