"""The worker: runs the engine's workflows and activities against a Temporal server.

`python worker.py` connects to TEMPORAL_ADDRESS (default localhost:7233, the dev server
that `attend up` starts), makes sure every school's register-close Schedule exists, and
polls the task queue until stopped.
"""

import asyncio
import importlib.util
import logging
import py_compile
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy.engine import Engine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.baseline import BaselineActivities
from activities.cases import CaseActivities, CasePolicyActivities
from activities.episodes import EpisodeActivities
from activities.letters import build_letter_activities
from activities.sweep import FanOutActivities, SweepActivities
from database import make_engine, session_factory
from schedules import sync_schedules
from settings import Settings, get_settings
from workflows.baseline import SeptemberBaseline
from workflows.case import AttendanceCase
from workflows.episode import AbsenceEpisode
from workflows.half_termly import HalfTermlyLetters
from workflows.print_pack import DailyPrintPack
from workflows.sweep import RegisterCloseSweep

WORKFLOWS = [
    RegisterCloseSweep,
    AbsenceEpisode,
    AttendanceCase,
    DailyPrintPack,
    HalfTermlyLetters,
    SeptemberBaseline,
]
# Workflows kept in memory between their tasks (the SDK's default is 1,000, about 0.4 MiB
# each here). A case hears from the sweep at most once a school day, so most open cases
# are better replayed from history when they next have work: the worker's memory then
# stays flat however many cases are open (bench/fanout.py).
CACHED_WORKFLOWS = 300
# Workflow tasks the worker takes at once (the SDK's default is 100). Each runs in a thread
# of its own, all sharing one interpreter, and loads its workflow into a fresh sandbox when
# it is not cached (tens of milliseconds). A hundred taken at once wait seconds for their
# turn, run past the server's 10-second task timeout and are sent again (work done twice),
# hold their histories and sandboxes in memory meanwhile, and starve the event loop that
# runs the sweep's fan-out. A few at a time keep the backlog on the server.
CONCURRENT_WORKFLOW_TASKS = 2

log = logging.getLogger(__name__)


def compile_workflow_modules() -> None:
    """Write the workflow modules' bytecode, so that the sandbox, which imports a workflow's
    module afresh for every workflow it loads, reads it rather than compiling the source
    each time (20 ms of CPU for workflows/case.py, half the load). Python writes it on
    first import unless told not to (PYTHONDONTWRITEBYTECODE, common in containers); a
    read-only install that ships no bytecode only runs slower."""
    for module in {cls.__module__ for cls in WORKFLOWS}:
        source = Path(sys.modules[module].__file__)
        compiled = Path(importlib.util.cache_from_source(str(source)))
        try:
            if compiled.exists() and compiled.stat().st_mtime >= source.stat().st_mtime:
                continue
            py_compile.compile(str(source), cfile=str(compiled), doraise=True)
        except (OSError, py_compile.PyCompileError) as error:
            log.warning("no bytecode written for %s: %s", module, error)


def build_worker(
    client: Client, *, engine: Engine, task_queue: str, settings: Settings | None = None
) -> Worker:
    """The worker with every workflow and activity, its dependencies built once here."""
    settings = settings or get_settings()
    compile_workflow_modules()
    sessions = session_factory(engine)
    sweep = SweepActivities(sessions)
    fan_out = FanOutActivities(client, sessions)
    cases = CaseActivities(sessions)
    case_reads = CasePolicyActivities(sessions)
    letters = build_letter_activities(settings, engine)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            sweep.record_threshold_crossings,
            fan_out.fan_out,
            BaselineActivities(client, sessions).send_september_baseline,
            cases.apply_case_update,
            cases.amend_register,
            cases.request_penalty_notice,
            cases.record_penalty_outcome,
            case_reads.load_case_policy,
            case_reads.review_figures,
            case_reads.review_day,
            EpisodeActivities(sessions).load_episode_procedure,
            *letters.all,
        ],
        activity_executor=ThreadPoolExecutor(max_workers=8),
        max_cached_workflows=CACHED_WORKFLOWS,
        max_concurrent_workflow_tasks=CONCURRENT_WORKFLOW_TASKS,
    )


async def run_worker(settings: Settings) -> None:
    client = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    engine = make_engine(settings.database_url)
    await sync_schedules(client, engine=engine, task_queue=settings.task_queue)
    worker = build_worker(client, engine=engine, task_queue=settings.task_queue, settings=settings)
    await worker.run()


if __name__ == "__main__":
    asyncio.run(run_worker(get_settings()))
