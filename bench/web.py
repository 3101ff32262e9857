"""The web app's pages for a school of 1,500 pupils with 300 open cases, each page timed
beside bare figures measured in the same run. Goal: every page under 200 ms.

For each main page (Today, Caseload, Case, Approvals, School) as a signed-in headteacher:
- **page**: the whole request in-process through httpx's ASGI transport (session cookie
  looked up, the school checked, the page's SQL, the Jinja template; for the Case page also
  the workflow's status query to a real Temporal dev server and a real worker);
- **queries**: the page's data functions alone (`web.queries`), called directly;
- **bare**: a bare FastAPI route returning the same page, pre-rendered, through the same
  transport: what serving that much HTML costs with no work behind it.

Median and 95th percentile over repeated requests, after a few to warm up. The app runs
as it is served (its start-up and shutdown run around the requests). The School page keeps
its register counts between pages and brings them up to date from what changed; it is
timed both ways: "School" with nothing changed, and "School, register just changed" with
a mark amended through `store_marks` (as the office's first-day call does) before each
request, a different pupil and day each time. Beside them, once, the register counted
whole, as when nothing is kept yet.

    .venv/bin/python -m bench.web [--requests 60] [--rebuild]

The school (pupils, parents and an autumn of register from the demo generator) is built
once under bench/data/web/ and each run works on a fresh copy; the cases, tasks, letters,
decisions and returns the workflows would have written are added to that copy, and one
case is a real workflow on a dev server the run starts.
"""

import argparse
import asyncio
import os
import platform
import random
import re
import shutil
import socket
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from sqlmodel import Session, select
from temporalio.testing import WorkflowEnvironment

import web  # noqa: F401  (registers the account tables)
import web.queries as queries
from database import make_engine
from demo.generate import create_demo
from demo.schools import DemoSchool, even_roll
from figures.compute import compute_figures
from imports.marks import MarkRow, store_marks
from letters.catalogue import spec_for
from letters.service import LetterService
from models.tables import (
    CaseRecord,
    ChronologyEntry,
    LAReturn,
    LegalDecision,
    Pupil,
    RegisterMark,
    School,
    StaffTask,
    ThresholdState,
)
from policies import load_policy
from settings import Settings, temporal_cli
from web.accounts import WebUser, add_user, start_session
from web.app import create_app
from web.deps import SESSION_COOKIE
from worker import build_worker
from workflows.case import AttendanceCase, AttendanceCaseInput, ThresholdsChanged

DATA = Path(__file__).parent / "data" / "web"
RESULTS = Path(__file__).parent / "RESULTS.md"
SECTION = "## Web pages (`bench/web.py`)"
THROUGH = date(2026, 11, 24)  # the register runs to here (a Tuesday)
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # the page's "now" for due and overdue
PUPILS = 1_500
OPEN_CASES = 300
EPISODES = 40  # of the open cases, absence episodes; the rest attendance cases
AWAITING = 12  # legal decisions waiting for the headteacher
GOAL_MS = 200.0
WARM_UP = 5

SCHOOL = DemoSchool(
    name="Hillcrest Academy",
    policy="st-barnabas",
    urn="118990",
    estab=4990,
    roll=even_roll(range(7, 12), PUPILS),
    area="tunbridge-wells",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=60, help="timed requests per page")
    parser.add_argument("--rebuild", action="store_true", help="build the school again")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.rebuild))


# --------------------------------------------------------------------------- the school


def base_database(rebuild: bool) -> Path:
    base = DATA / "school.db"
    if base.exists() and not rebuild:
        return base
    DATA.mkdir(parents=True, exist_ok=True)
    for old in DATA.glob("school.db*"):
        old.unlink()
    started = time.perf_counter()
    engine = make_engine(f"sqlite:///{base}")
    create_demo(engine=engine, schools=[SCHOOL], through=THROUGH, seed=886)
    engine.dispose()
    print(f"built {PUPILS:,} pupils with their register in {time.perf_counter() - started:.0f} s")
    return base


def add_cases(engine, settings: Settings, school: School) -> list[int]:
    """The open cases, tasks, chronology, letters, decisions and returns the workflows
    would have written: cases for the pupils with the lowest attendance. Returns the
    pupils in order of attendance, lowest first."""
    rng = random.Random(886)
    policy = load_policy(school.policy)
    stages = [
        f"{ladder.name}: {stage.name}" for ladder in policy.ladders for stage in ladder.stages
    ]
    with Session(engine) as session:
        figures = compute_figures(
            session=session, school_id=school.id, as_of=THROUGH, rules=policy.figure_rules()
        )
        figures.sort(key=lambda f: f.rate_year if f.rate_year is not None else 100.0)
        lowest = [f.pupil_id for f in figures]
        absent_today = set(
            session.exec(
                select(RegisterMark.pupil_id).where(
                    RegisterMark.day == THROUGH, RegisterMark.code == "N"
                )
            ).all()
        )
        # Episodes for the pupils with an N today first, then the lowest attendance.
        episode_pupils = (sorted(absent_today) + lowest)[:EPISODES]
        case_pupils = [p for p in lowest if p not in episode_pupils][: OPEN_CASES - EPISODES - 1]
        opened = THROUGH - timedelta(days=30)
        for n, pupil_id in enumerate(episode_pupils):
            case_id = f"absence-{pupil_id}-{THROUGH}"
            day = 1 + n % 6
            session.add(
                CaseRecord(
                    case_id=case_id,
                    school_id=school.id,
                    pupil_id=pupil_id,
                    kind="absence_episode",
                    status="open",
                    stage=f"day {day}",
                    next_action="Phone parents/carers",
                    next_due=NOW - timedelta(hours=rng.randint(-20, 6)),
                    opened_on=THROUGH - timedelta(days=day - 1),
                    updated_at=NOW,
                )
            )
            kind = "home_visit" if n % 5 == 4 else "call_parents"
            session.add(
                StaffTask(
                    key=f"{case_id}/{kind}",
                    school_id=school.id,
                    pupil_id=pupil_id,
                    case_id=case_id,
                    kind=kind,
                    summary="Phone parents/carers" if kind == "call_parents" else "Home visit",
                    role="office" if kind == "call_parents" else "attendance_officer",
                    due_at=NOW - timedelta(hours=rng.randint(-20, 6)),
                    created_at=NOW - timedelta(hours=8),
                )
            )
        for n, pupil_id in enumerate(case_pupils):
            case_id = f"attendance-case-{pupil_id}-2026"
            stage = stages[n % len(stages)]
            session.add(
                CaseRecord(
                    case_id=case_id,
                    school_id=school.id,
                    pupil_id=pupil_id,
                    kind="attendance_case",
                    status="paused" if n % 25 == 24 else "open",
                    stage=stage,
                    next_action="Review attendance",
                    next_due=NOW + timedelta(days=rng.randint(-5, 20)),
                    opened_on=opened,
                    updated_at=NOW,
                )
            )
            for k in range(8):
                on_day = opened + timedelta(days=3 * k)
                session.add(
                    ChronologyEntry(
                        key=f"{case_id}/bench/{k}",
                        school_id=school.id,
                        pupil_id=pupil_id,
                        case_id=case_id,
                        on_day=on_day,
                        at=datetime.combine(on_day, datetime.min.time(), UTC),
                        kind="stage" if k == 0 else "call",
                        summary=stage if k == 0 else "Phoned parents: no answer",
                        actor="engine" if k == 0 else "Office",
                        stage=stage,
                    )
                )
            if n < AWAITING * 3:
                awaiting = n < AWAITING
                session.add(
                    LegalDecision(
                        key=f"{case_id}/penalty_notice/{THROUGH}",
                        school_id=school.id,
                        pupil_id=pupil_id,
                        case_id=case_id,
                        kind="penalty_notice_request",
                        asked_on=THROUGH - timedelta(days=n),
                        due_on=THROUGH + timedelta(days=5 - n),
                        status="awaiting" if awaiting else ("approved", "declined")[n % 2],
                        decided_on=None if awaiting else THROUGH,
                        decided_by="" if awaiting else "Head",
                        reason="" if awaiting else "Holiday in term time",
                    )
                )
                session.add(
                    ThresholdState(
                        pupil_id=pupil_id,
                        threshold=queries.NATIONAL_THRESHOLD,
                        active=True,
                        since=THROUGH - timedelta(days=n + 1),
                        value=10,
                    )
                )
            if n % 20 == 0:
                session.add(
                    LAReturn(
                        key=f"{case_id}/return",
                        school_id=school.id,
                        pupil_id=pupil_id,
                        case_id=case_id,
                        kind=("attendance_return", "sickness_return")[n % 40 // 20],
                        raised_on=THROUGH - timedelta(days=n % 9),
                        summary="10 school days of unauthorised absence",
                    )
                )
        session.commit()
    letters = LetterService(settings, engine)
    template = "st_barnabas/below_97"
    for pupil_id in case_pupils[:100]:
        letters.write(
            school_id=school.id,
            pupil_id=pupil_id,
            template=template,
            key=f"bench/{pupil_id}/below_97",
            data=spec_for(template).sample_data,
            case_id=f"attendance-case-{pupil_id}-2026",
            as_of=THROUGH.isoformat(),
        )
    return [p for p in lowest if p not in episode_pupils and p not in case_pupils]


# --------------------------------------------------------------------------- timing


def stats(times: list[float]) -> tuple[float, float]:
    """Median and 95th percentile, in milliseconds."""
    ms = sorted(t * 1000 for t in times)
    return statistics.median(ms), statistics.quantiles(ms, n=20, method="inclusive")[18]


async def time_requests(
    client: httpx.AsyncClient, path: str, count: int, before: Callable[[], object] | None = None
) -> tuple[list[float], bytes]:
    times = []
    body = b""
    for n in range(WARM_UP + count):
        if before:
            before()
        started = time.perf_counter()
        response = await client.get(path)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code}\n{response.text[:2000]}")
        body = response.content
        if n >= WARM_UP:
            times.append(elapsed)
    return times, body


def time_calls(
    call: Callable[[], object], count: int, before: Callable[[], object] | None = None
) -> list[float]:
    times = []
    for n in range(WARM_UP + count):
        if before:
            before()
        started = time.perf_counter()
        call()
        if n >= WARM_UP:
            times.append(time.perf_counter() - started)
    return times


def bare_app(pages: dict[str, bytes]) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/bare/{name}")
    def bare(name: str) -> HTMLResponse:
        return HTMLResponse(pages[name])

    return app


class RegisterChanges:
    """Amends one mark before each request: the next pupil's morning mark of the next
    school day of the autumn, to a code it does not have (I, or M if it is I), through
    store_marks with a reason, as a first-day call's outcome is recorded."""

    def __init__(self, engine, school: School):
        self.engine, self.school = engine, school
        with Session(engine) as session:
            self.pupils = session.exec(
                select(Pupil.id, Pupil.upn).where(Pupil.school_id == school.id).order_by(Pupil.id)
            ).all()
            self.days = sorted(
                set(
                    session.exec(
                        select(RegisterMark.day).where(
                            RegisterMark.pupil_id == self.pupils[0][0],
                            RegisterMark.day >= date(2026, 9, 7),
                        )
                    ).all()
                )
            )
        self.made = 0

    def __call__(self) -> None:
        pupil_id, upn = self.pupils[(self.made * 37) % len(self.pupils)]
        day = self.days[(self.made * 7) % len(self.days)]
        with Session(self.engine) as session:
            stored = session.exec(
                select(RegisterMark.code).where(
                    RegisterMark.week_start == day - timedelta(days=day.weekday()),
                    RegisterMark.pupil_id == pupil_id,
                    RegisterMark.day == day,
                    RegisterMark.session == "AM",
                )
            ).first()
            store_marks(
                session=session,
                school_id=self.school.id,
                rows=[MarkRow(1, upn, day, "AM", "M" if stored == "I" else "I", reason="Call")],
                recorded_by="Office",
                role="office",
                source="bench amendment",
                kind="case",
                sha256=f"bench-amendment-{uuid.uuid4()}",
            )
            session.commit()
        self.made += 1


# --------------------------------------------------------------------------- the run


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> str:
    """CPU cores, memory and Python, as the report gives them."""
    memory = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "",
    )
    return (
        f"{os.cpu_count()} CPU cores (nproc{', ' + model if model else ''}), "
        f"{memory / 1024**2:.1f} GiB RAM, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


async def run(count: int, rebuild: bool) -> None:
    from aiosmtpd.controller import Controller

    load_at_start = load_average()

    base = base_database(rebuild)
    work = DATA / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(base, work / "attend.db")

    class Accept:
        async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(Accept(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    settings = Settings(
        database_url=f"sqlite:///{work / 'attend.db'}",
        letters_dir=work / "letters",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_starttls=False,
        letters_pdf_processes=0,
    )
    engine = make_engine(settings.database_url)
    with Session(engine, expire_on_commit=False) as session:
        school = session.exec(select(School).where(School.urn == SCHOOL.urn)).one()
    started = time.perf_counter()
    rest = add_cases(engine, settings, school)
    print(f"cases, tasks, letters and decisions added in {time.perf_counter() - started:.0f} s")

    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_cli())
    try:
        queue = f"bench-web-{uuid.uuid4()}"
        async with build_worker(env.client, engine=engine, task_queue=queue, settings=settings):
            case_id = await real_case(env, queue, school, rest[0], engine)
            figures = await measure(settings, engine, env, school, case_id, count)
    finally:
        await env.shutdown()
        smtp.stop()
    section = report(figures, count, load_at_start, load_average())
    print(section)
    write_section(section)
    print(f"recorded in {RESULTS}")


async def real_case(env, queue: str, school: School, pupil_id: int, engine) -> str:
    """One attendance case run by the real workflow: the case page's status query and
    actions come from it. Returns its case ID once its letter has gone."""
    handle = await env.client.start_workflow(
        AttendanceCase.run,
        AttendanceCaseInput(school.id, pupil_id, 2026),
        id=f"attendance-case-{pupil_id}-2026",
        task_queue=queue,
        start_signal="thresholds_changed",
        start_signal_args=[ThresholdsChanged("2026-11-13", ["below_97"], ["below_97"])],
    )
    for _ in range(600):
        status = await handle.query(AttendanceCase.status)
        if status.ladder_stages.get("continued_absence") == "concern_letter":
            with Session(engine) as session:
                if session.get(CaseRecord, handle.id) is not None:
                    return handle.id
        await asyncio.sleep(0.1)
    raise SystemExit("the real case did not reach its first letter within a minute")


async def measure(settings, engine, env, school: School, case_id: str, count: int):
    app = create_app(settings, engine=engine, temporal_client=env.client)
    async with app.router.lifespan_context(app):  # as served: start-up, then the requests
        # A server is up well before its first page: its start-up count of each school's
        # register (a background thread) is let finish before the timing starts.
        await asyncio.to_thread(queries.refresh_school_figures, engine, every=True)
        return await measure_app(app, engine, school, case_id, count)


async def measure_app(app: FastAPI, engine, school: School, case_id: str, count: int):
    with Session(engine) as session:
        add_user(
            session,
            email="head@hillcrest.bench.invalid",
            name="Head",
            role="headteacher",
            school_ids=[school.id],
            password="not a real password",
        )
        session.commit()
        user = session.exec(select(WebUser).where(WebUser.role == "headteacher")).one()
        token = start_session(session, user, hours=2)
        open_cases = session.exec(
            select(CaseRecord).where(
                CaseRecord.school_id == school.id, CaseRecord.status.in_(("open", "paused"))
            )
        ).all()
        pupils = session.exec(select(Pupil).where(Pupil.school_id == school.id)).all()
    print(f"{len(pupils):,} pupils, {len(open_cases)} open cases")
    record = next(r for r in open_cases if r.case_id == case_id)
    paths = {
        "Today": f"/schools/{school.id}/today",
        "Caseload": f"/schools/{school.id}/caseload",
        "Caseload, Year 9 with FSM": f"/schools/{school.id}/caseload?year=9&cohort=fsm",
        "Case": f"/cases/{case_id}",
        "Approvals": f"/schools/{school.id}/approvals",
        "School": f"/schools/{school.id}",
        "School, register just changed": f"/schools/{school.id}",
    }

    changes = RegisterChanges(engine, school)

    def data(name: str) -> Callable[[], object]:
        def call() -> object:
            with Session(engine, expire_on_commit=False) as session:
                ctx = queries.school_context(session, school)
                if name == "Today":
                    return queries.today_page(session, ctx)
                if name.startswith("Caseload,"):
                    return queries.caseload_page(session, school.id, year_group=9, cohort="fsm")
                if name == "Caseload":
                    return queries.caseload_page(session, school.id)
                if name == "Case":
                    return queries.case_page(session, ctx, record)
                if name == "Approvals":
                    return queries.approvals_page(session, ctx)
                return queries.school_page(session, ctx)

        return call

    figures = {}
    rendered: dict[str, bytes] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        client.cookies.set(SESSION_COOKIE, token)
        for name, path in paths.items():
            before = changes if name == "School, register just changed" else None
            times, body = await time_requests(client, path, count, before)
            rendered[name] = body
            queries_times = await asyncio.to_thread(time_calls, data(name), count, before)
            figures[name] = {"page": stats(times), "queries": stats(queries_times)}
            figures[name]["bytes"] = len(body)
        # The register counted whole: only before the app's start-up count has finished.
        whole, _ = await time_requests(client, paths["School"], 5, queries.forget_register_counts)
        figures["whole"] = stats(whole)
    bare = bare_app(rendered)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=bare), base_url="http://bench"
    ) as client:
        for name in paths:
            times, _ = await time_requests(client, f"/bare/{name}", count)
            figures[name]["bare"] = stats(times)
    return figures


# --------------------------------------------------------------------------- results


def report(figures: dict, count: int, load_at_start: str, load_at_end: str) -> str:
    lines = [
        SECTION,
        "",
        f"`flock /tmp/bench.lock .venv/bin/python -m bench.web --requests {count}`, run "
        f"{date.today():%d/%m/%Y} on {machine()}; load average (1, 5, 15 min) "
        f"{load_at_start} at the start, {load_at_end} at the end.",
        "",
        f"A school of {PUPILS:,} pupils (Years 7-11, St Barnabas' policy) with an autumn of "
        f"register to {THROUGH:%d/%m/%Y} and {OPEN_CASES} open cases ({EPISODES} absence "
        f"episodes, {OPEN_CASES - EPISODES} attendance cases, {AWAITING} legal decisions "
        "awaiting), as a signed-in headteacher, in-process through httpx's ASGI transport. "
        "The Case page queries a real case workflow on a Temporal dev server. "
        f"{count} timed requests per page after {WARM_UP} to warm up; times in ms.",
        "",
        "| page | size | page median | page p95 | its queries median | bare median "
        "| bare p95 | under 200 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, found in figures.items():
        if name == "whole":
            continue
        page, page95 = found["page"]
        q, _ = found["queries"]
        bare, bare95 = found["bare"]
        lines.append(
            f"| {name} | {found['bytes'] / 1024:.0f} KiB | {page:.1f} | {page95:.1f} | {q:.1f} "
            f"| {bare:.1f} | {bare95:.1f} | {'yes' if page95 < GOAL_MS else 'no'} |"
        )
    slow = [n for n, found in figures.items() if n != "whole" and found["page"][1] >= GOAL_MS]
    lines += [
        "",
        f"Goal, every page under {GOAL_MS:.0f} ms at the 95th percentile (the School page "
        "right after a register change too): "
        + ("met." if not slow else f"not met: {', '.join(slow)}."),
        "",
        "*page*: the whole request (session, school check, SQL, template; the Case page's "
        "status query to Temporal). *its queries*: the page's data functions from "
        "`web/queries.py` alone. *bare*: a bare FastAPI route returning the same page "
        "pre-rendered, through the same transport. *School, register just changed*: the "
        "School page right after a mark was amended (one `store_marks` call before each "
        "request, a different pupil and day each time, not timed): the page counts that "
        "day and week again from the register and takes them into its kept figures. "
        "Counting the whole register (as when nothing is kept: only before the app's "
        f"start-up count has finished) takes {figures['whole'][0]:.0f} ms (median of "
        f"{WARM_UP}) for the page.",
        "",
        "What the figures rest on. (1) The cyclic garbage collector: a full collection "
        "walked every object the app had made at start-up (about 156,000) and stopped "
        "whichever page was running for 300-360 ms every few dozen large pages (timed with "
        "`gc.callbacks` at a load of 6); that was "
        "the Caseload's p95 of 254 ms in the run before these changes (its median 60 ms). "
        "The app now freezes its start-up objects in its lifespan (`gc.freeze`), and a "
        "full collection takes 3-25 ms. (2) The Caseload reads its rows as plain columns "
        "and writes each row without a macro per cell: its template renders in about a "
        "quarter of the time (61 to 17 ms, profiled at a load of 5). (3) The School page "
        "keeps, per school, the sessions per code and day and each pupil's possible and "
        "present sessions per week, and brings them up to date from the batches of marks "
        "and the amendments recorded since (by ID; each batch names the days it wrote) and "
        "the roll's changes: the changed days and weeks of the register read again, where "
        "it used to count the year's 159,000 marks again (346 ms median, 416 ms p95). The "
        "register is read through the `registermark` view of the weekly rows, whose "
        "sessions are unpacked as they are read: counting it whole takes longer than when "
        "it was a table of marks (618 ms median on 1 Dec). One statement tells whether anything "
        "changed, so a page is never stale. Counting only what changed relies on SQLite "
        "giving IDs in commit order; on another database each change is counted whole.",
    ]
    return "\n".join(lines) + "\n"


def write_section(section: str) -> None:
    """Write the section into RESULTS.md, replacing its previous text; other sections stay."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}.*?\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    body = section.rstrip("\n") + "\n\n"
    new = pattern.sub(lambda _: body, old, count=1) if pattern.search(old) else old + "\n" + body
    RESULTS.write_text(new.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
