"""The register-close sweep's side effects: compute a school's figures and record which
pupils crossed (or came back under) which of the policy's thresholds; then send each
affected pupil's workflows what changed (the fan-out)."""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, insert, select, tuple_
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from database import SessionFactory
from figures.compute import compute_figures
from models.calendar import academic_year_of, load_calendar, week_start
from models.tables import (
    CaseRecord,
    Pupil,
    RegisterMark,
    School,
    ThresholdCrossing,
    ThresholdState,
)
from policies import load_policy
from workflows.case import AttendanceCase, AttendanceCaseInput, ThresholdsChanged
from workflows.episode import AbsenceEpisode, AbsenceEpisodeInput, RegisterToday

log = logging.getLogger(__name__)


@dataclass
class RecordThresholdsInput:
    school_id: int
    as_of: str  # ISO date
    list_changes: bool = False  # True: every change in the result, not only the counts


@dataclass
class ThresholdChange:
    pupil_id: int
    threshold: str
    direction: str  # crossed | cleared
    value: float | None = None


@dataclass
class RecordThresholdsResult:
    school_id: int
    as_of: str
    pupils: int
    changes: list[ThresholdChange] = field(default_factory=list)  # with list_changes only
    crossed: int = 0
    cleared: int = 0


class SweepActivities:
    def __init__(self, session_factory: SessionFactory):
        self.session_factory = session_factory

    @activity.defn
    def record_threshold_crossings(self, input: RecordThresholdsInput) -> RecordThresholdsResult:
        """Idempotent: a retry finds the day's crossings already recorded and returns them."""
        as_of = date.fromisoformat(input.as_of)
        with self.session_factory() as session, session.begin():
            school = session.get(School, input.school_id)
            if school is None:
                raise ValueError(f"no school with id {input.school_id}")
            policy = load_policy(school.policy)
            figures = compute_figures(
                session=session, school_id=school.id, as_of=as_of, rules=policy.figure_rules()
            )
            _record_changes(session, school.id, as_of, policy.thresholds, figures)
            today = (ThresholdCrossing.school_id == school.id, ThresholdCrossing.on_day == as_of)
            # Counts only, unless asked: a school's first sweep may hold thousands of
            # changes, and the sweep's history (decoded by its workflow within the
            # deadlock timeout) should not. The fan-out reads them from SQL.
            counts = dict(
                session.execute(
                    select(ThresholdCrossing.direction, func.count())
                    .where(*today)
                    .group_by(ThresholdCrossing.direction)
                ).all()
            )
            changes = []
            if input.list_changes:
                changes = [
                    ThresholdChange(c.pupil_id, c.threshold, c.direction, c.value)
                    for c in session.scalars(
                        select(ThresholdCrossing)
                        .where(*today)
                        .order_by(ThresholdCrossing.pupil_id, ThresholdCrossing.threshold)
                    )
                ]
            return RecordThresholdsResult(
                school_id=school.id,
                as_of=input.as_of,
                pupils=len(figures),
                changes=changes,
                crossed=counts.get("crossed", 0),
                cleared=counts.get("cleared", 0),
            )


def _record_changes(session, school_id: int, as_of: date, thresholds, figures) -> None:
    """Compare each pupil's thresholds now with the stored state; store what changed."""
    state = ThresholdState.__table__
    known = {
        (pupil_id, name): active
        for pupil_id, name, active in session.connection().execute(
            select(state.c.pupil_id, state.c.threshold, state.c.active)
            .join(Pupil, Pupil.id == state.c.pupil_id)
            .where(Pupil.school_id == school_id)
        )
    }
    now = datetime.now(UTC)
    new_state: list[dict] = []
    crossings: list[dict] = []
    for pupil in figures:
        for threshold in thresholds:
            holds = threshold.holds(pupil)
            if holds == known.get((pupil.pupil_id, threshold.name), False):
                continue
            value = getattr(pupil, threshold.figure)
            value = float(value) if value is not None else None
            new_state.append(
                {
                    "pupil_id": pupil.pupil_id,
                    "threshold": threshold.name,
                    "active": holds,
                    "since": as_of,
                    "value": value,
                }
            )
            crossings.append(
                {
                    "school_id": school_id,
                    "pupil_id": pupil.pupil_id,
                    "threshold": threshold.name,
                    "direction": "crossed" if holds else "cleared",
                    "on_day": as_of,
                    "value": value,
                    "recorded_at": now,
                }
            )
    if not new_state:
        return
    connection = session.connection()
    keys = [(s["pupil_id"], s["threshold"]) for s in new_state]
    for start in range(0, len(keys), 500):
        connection.execute(
            delete(state).where(
                tuple_(state.c.pupil_id, state.c.threshold).in_(keys[start : start + 500])
            )
        )
    connection.execute(insert(state), new_state)
    connection.execute(insert(ThresholdCrossing), crossings)


# --------------------------------------------------------------------------- the fan-out


@dataclass
class FanOutInput:
    school_id: int
    as_of: str  # ISO date: the day whose register just closed
    task_queue: str = ""  # where the cases and episodes run; default: this activity's queue
    concurrency: int = 200  # requests to Temporal in flight at once


@dataclass
class FanOutResult:
    school_id: int
    as_of: str
    cases_started: int = 0  # attendance cases started by today's thresholds
    cases_signalled: int = 0  # cases already running, told what changed
    episodes_started: int = 0  # absence episodes started by an unexplained absence today
    episodes_signalled: int = 0  # episodes already running, told today's register
    closed: int = 0  # workflows already finished for that ID: nothing sent
    school_day: bool = True  # False: no register today, so no episode was told anything
    register_taken: bool = True  # False: no marks at all today, so no episode was started


@dataclass
class _Target:
    """One request of the fan-out: signal-with-start, or a signal to a running episode."""

    workflow_id: str
    kind: str  # case | new_episode | open_episode
    pupil_id: int
    arg: object
    start_arg: object = None  # the workflow input, for signal-with-start


@dataclass
class _Plan:
    targets: list[_Target]
    school_day: bool
    register_taken: bool
    unexplained: dict[int, object]  # pupil -> RegisterToday, pupils absent unexplained today
    first_day: str


def case_workflow_id(pupil_id: int, academic_year: int) -> str:
    return f"attendance-case-{pupil_id}-{academic_year}"


def episode_workflow_id(pupil_id: int, first_day: str) -> str:
    return f"absence-{pupil_id}-{first_day}"


def is_unexplained(am: str, pm: str) -> bool:
    """An absence the school does not know the reason for: an N in either session (the
    episode counts a day the same way). A pupil with no mark at all has no register yet,
    not an absence: the episode would have nothing to go on."""
    return "N" in (am, pm)


class FanOutActivities:
    """The sweep's side effects in Temporal: every pupil whose thresholds changed is sent
    to their attendance case, every unexplained absence to its absence episode.

    Built once in worker.py with the worker's client. Every request is idempotent: the
    workflow IDs are fixed by pupil and year (case) or pupil and first day (episode), a
    case ignores a second `thresholds_changed` for a day it has seen and an episode a
    second `register_today`, and a finished workflow is never started again under the
    same ID (ALLOW_DUPLICATE_FAILED_ONLY). A retried activity therefore sends again what
    the failed attempt sent, harmlessly, and starts nothing twice; it skips what the
    heartbeat says the failed attempt finished."""

    def __init__(self, client: Client, session_factory: SessionFactory):
        self.client = client
        self.session_factory = session_factory

    @activity.defn
    async def fan_out(self, input: FanOutInput) -> FanOutResult:
        plan = await asyncio.to_thread(self._plan, input)
        result = FanOutResult(
            input.school_id,
            input.as_of,
            school_day=plan.school_day,
            register_taken=plan.register_taken,
        )
        if plan.school_day and not plan.register_taken:
            log.warning(
                "school %s: no register marks on %s, no absence episode started",
                input.school_id,
                input.as_of,
            )
        task_queue = input.task_queue or activity.info().task_queue
        # Sorted by workflow ID, so that a retry can skip what a heartbeat says is done.
        targets = sorted(plan.targets, key=lambda t: t.workflow_id)
        details = activity.info().heartbeat_details
        resume_after = details[0] if details else ""
        if resume_after:
            targets = [t for t in targets if t.workflow_id > resume_after]
        done = [False] * len(targets)
        mark = 0  # targets[:mark] are all done
        finished = 0
        queue = iter(range(len(targets)))

        async def send(target: _Target) -> None:
            if target.kind == "open_episode":
                try:
                    await self.client.get_workflow_handle(target.workflow_id).signal(
                        AbsenceEpisode.register_today, target.arg
                    )
                    result.episodes_signalled += 1
                    return
                except RPCError as error:
                    if error.status != RPCStatusCode.NOT_FOUND:
                        raise
                # The episode has ended since its record was read; a pupil still absent
                # unexplained today starts a new one.
                today = plan.unexplained.get(target.pupil_id)
                if today is None:
                    result.closed += 1
                    return
                target = _Target(
                    episode_workflow_id(target.pupil_id, plan.first_day),
                    "new_episode",
                    target.pupil_id,
                    today,
                    _episode_input(input.school_id, target.pupil_id, plan.first_day),
                )
            workflow = AttendanceCase.run if target.kind == "case" else AbsenceEpisode.run
            signal = "thresholds_changed" if target.kind == "case" else "register_today"
            try:
                handle = await self.client.start_workflow(
                    workflow,
                    target.start_arg,
                    id=target.workflow_id,
                    task_queue=task_queue,
                    start_signal=signal,
                    start_signal_args=[target.arg],
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                )
            except WorkflowAlreadyStartedError:  # finished: a closed case or episode
                result.closed += 1
                return
            started = _was_started(handle)
            if target.kind == "case":
                result.cases_started += started
                result.cases_signalled += not started
            else:
                result.episodes_started += started
                result.episodes_signalled += not started

        async def worker() -> None:
            nonlocal mark, finished
            for i in queue:  # shared by every worker: each target is taken once
                await send(targets[i])
                done[i], finished = True, finished + 1
                while mark < len(done) and done[mark]:
                    mark += 1
                if finished % 100 == 0 or finished == len(done):
                    # What a retry may skip: every target up to this ID is done.
                    activity.heartbeat(targets[mark - 1].workflow_id if mark else resume_after)

        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(input.concurrency, len(targets)))):
                group.create_task(worker())
        log.info(
            "school %s on %s: %d cases started, %d signalled; %d episodes started, "
            "%d signalled; %d already closed",
            input.school_id,
            input.as_of,
            result.cases_started,
            result.cases_signalled,
            result.episodes_started,
            result.episodes_signalled,
            result.closed,
        )
        return result

    def _plan(self, input: FanOutInput) -> _Plan:
        """Everything to send, read in a few set-based queries."""
        as_of = date.fromisoformat(input.as_of)
        with self.session_factory() as session:
            school = session.get(School, input.school_id)
            if school is None:
                raise ValueError(f"no school with id {input.school_id}")
            policy = load_policy(school.policy)
            order = {t.name: i for i, t in enumerate(policy.thresholds)}
            connection = session.connection()
            targets = _case_targets(connection, school.id, as_of, order)
            calendar = load_calendar(session=session, school_id=school.id)
            if not calendar.is_school_day(as_of):
                return _Plan(targets, False, False, {}, input.as_of)
            offset = ZoneInfo(policy.timezone).utcoffset(datetime.combine(as_of, time(12)))
            minutes = int(offset.total_seconds() // 60) if offset else 0
            marks = _marks_today(connection, school.id, as_of)
            register_taken = bool(marks)
            open_episodes = connection.execute(
                select(CaseRecord.case_id, CaseRecord.pupil_id).where(
                    CaseRecord.school_id == school.id,
                    CaseRecord.kind == "absence_episode",
                    CaseRecord.status == "open",
                )
            ).all()
            on_roll = set(
                connection.execute(
                    select(Pupil.id).where(Pupil.school_id == school.id, Pupil.on_roll)
                ).scalars()
            )
        unexplained = {
            pupil_id: RegisterToday(input.as_of, am, pm, minutes)
            for pupil_id, (am, pm) in sorted(marks.items())
            if pupil_id in on_roll and is_unexplained(am, pm)
        }
        with_episode = set()
        for case_id, pupil_id in open_episodes:
            with_episode.add(pupil_id)
            am, pm = marks.get(pupil_id, ("", ""))
            if not (am or pm):
                # No mark yet: an episode takes each day once, so it is told the day by a
                # sweep that has the pupil's register.
                continue
            today = RegisterToday(input.as_of, am, pm, minutes)
            targets.append(_Target(case_id, "open_episode", pupil_id, today))
        for pupil_id, today in unexplained.items():
            if pupil_id not in with_episode:
                targets.append(
                    _Target(
                        episode_workflow_id(pupil_id, input.as_of),
                        "new_episode",
                        pupil_id,
                        today,
                        _episode_input(input.school_id, pupil_id, input.as_of),
                    )
                )
        return _Plan(targets, True, register_taken, unexplained, input.as_of)


def _was_started(handle) -> bool:
    """Whether signal-with-start started the workflow rather than signalling a running one:
    the server's `started` flag. (The handle's first run ID is no guide: the server gives
    it for a running workflow too.)"""
    response = getattr(handle, "_start_workflow_response", None)
    return bool(getattr(response, "started", False))


def _episode_input(school_id: int, pupil_id: int, first_day: str) -> AbsenceEpisodeInput:
    return AbsenceEpisodeInput(school_id=school_id, pupil_id=pupil_id, first_day=first_day)


def _case_targets(connection, school_id: int, as_of: date, order: dict[str, int]) -> list[_Target]:
    """A signal-with-start for every pupil whose thresholds changed on the day."""
    changes: dict[int, tuple[list[str], list[str]]] = {}
    for pupil_id, threshold, direction in connection.execute(
        select(
            ThresholdCrossing.pupil_id, ThresholdCrossing.threshold, ThresholdCrossing.direction
        ).where(ThresholdCrossing.school_id == school_id, ThresholdCrossing.on_day == as_of)
    ):
        crossed, cleared = changes.setdefault(pupil_id, ([], []))
        (crossed if direction == "crossed" else cleared).append(threshold)
    if not changes:
        return []
    holding: dict[int, list[str]] = {}
    state = ThresholdState.__table__
    ids = sorted(changes)
    for start in range(0, len(ids), 500):
        for pupil_id, threshold in connection.execute(
            select(state.c.pupil_id, state.c.threshold).where(
                state.c.pupil_id.in_(ids[start : start + 500]), state.c.active
            )
        ):
            holding.setdefault(pupil_id, []).append(threshold)

    def ordered(names: list[str]) -> list[str]:
        return sorted(names, key=lambda name: (order.get(name, len(order)), name))

    year = academic_year_of(as_of)
    return [
        _Target(
            case_workflow_id(pupil_id, year),
            "case",
            pupil_id,
            ThresholdsChanged(
                as_of=as_of.isoformat(),
                holding=ordered(holding.get(pupil_id, [])),
                crossed=ordered(crossed),
                cleared=ordered(cleared),
            ),
            AttendanceCaseInput(school_id=school_id, pupil_id=pupil_id, academic_year=year),
        )
        for pupil_id, (crossed, cleared) in sorted(changes.items())
    ]


def _marks_today(connection, school_id: int, day: date) -> dict[int, tuple[str, str]]:
    """Each pupil's (AM, PM) codes on the day, "" for a session not marked."""
    marks: dict[int, list[str]] = {}
    for pupil_id, session, code in connection.execute(
        select(RegisterMark.pupil_id, RegisterMark.session, RegisterMark.code)
        .join(Pupil, Pupil.id == RegisterMark.pupil_id)
        .where(
            RegisterMark.week_start == week_start(day),
            RegisterMark.day == day,
            Pupil.school_id == school_id,
        )
    ):
        marks.setdefault(pupil_id, ["", ""])[0 if session == "AM" else 1] = code
    return {pupil_id: (am, pm) for pupil_id, (am, pm) in marks.items()}
