"""Absence episode: one per run of unexplained absence, from the first day's call to
contact, return, or a referral as a child missing education.

Started by the register-close sweep with signal-with-start (ID `absence-<pupil id>-<first
day>`, which is also its case ID), then told each school day what the register says. The
school's procedure is read from its policy when the episode starts (or given in the input),
and kept in the workflow's history, so editing a policy never changes an episode already
running. Pupils the policy's safeguarding variant applies to (a social worker, a child
protection plan, looked after...) follow its shortened path, and the DSL is told on day 1.
"""

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.cases import (
        AmendRegisterInput,
        CaseActivities,
        CaseUpdate,
        ChronologyNote,
        ReturnToRaise,
        TaskToOpen,
    )
    from activities.episodes import (
        ACTION_WORDS,
        REFERRALS,
        VISIT_ACTIONS,
        EpisodeAction,
        EpisodeActivities,
        EpisodeDay,
        EpisodeProcedure,
        LoadEpisodeProcedureInput,
    )
    from models.codes import NATIONAL_CODES, Category
    from models.policy import Role

__all__ = [
    "ACTION_WORDS",
    "CONTACT_OUTCOMES",
    "VISIT_OUTCOMES",
    "AbsenceEpisode",
    "AbsenceEpisodeInput",
    "AbsenceEpisodeResult",
    "EpisodeAction",
    "EpisodeDay",
    "EpisodeProcedure",
    "EpisodeState",
    "RecordContactInput",
    "RecordVisitInput",
    "RegisterToday",
    "StepResult",
]

# Every member of staff may record what a parent said (the policy's roles).
STAFF_ROLES: tuple[str, ...] = tuple(role.value for role in Role)
# Besides whoever the procedure sends, these may record a home visit.
VISIT_LEADS = (
    Role.ATTENDANCE_OFFICER.value,
    Role.DESIGNATED_SAFEGUARDING_LEAD.value,
    Role.SENIOR_ATTENDANCE_CHAMPION.value,
    Role.HEADTEACHER.value,
)
CONTACT_OUTCOMES = ("contact_made", "no_answer", "message_left", "wrong_number")
VISIT_OUTCOMES = ("child_seen", "not_seen", "card_left")
ACTIVITY_TIMEOUT = timedelta(minutes=2)
RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


@dataclass
class AbsenceEpisodeInput:
    school_id: int
    pupil_id: int
    first_day: str  # ISO date: the first day of the run of unexplained absence
    # The school's procedure; None: read from its policy when the episode starts.
    procedure: EpisodeProcedure | None = None
    # On the policy's safeguarding path (social worker, child protection plan, looked
    # after...); None: decided from the pupil's flags when the procedure is read.
    safeguarding: bool | None = None


@dataclass
class RegisterToday:
    """The pupil's register after register close (signal)."""

    day: str  # ISO date
    am: str = ""
    pm: str = ""
    utc_offset_minutes: int = 0  # the school's offset from UTC that day (60 in summer)


@dataclass
class RecordContactInput:
    outcome: str  # contact_made | no_answer | message_left | wrong_number
    by: str
    role: str
    channel: str = "phone"
    reason: str = ""  # what the parent said
    code: str = ""  # with contact_made: the code the absence becomes


@dataclass
class RecordVisitInput:
    outcome: str  # child_seen | not_seen | card_left
    by: str
    role: str
    note: str = ""


@dataclass
class StepResult:
    status: str
    summary: str


@dataclass
class EpisodeState:
    status: str = "open"  # open | closed
    first_day: str = ""
    days_absent: list[str] = field(default_factory=list)
    sessions_unexplained: list[tuple[str, str]] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)
    visits: list[str] = field(default_factory=list)
    referrals: list[str] = field(default_factory=list)
    closed_reason: str = ""
    safeguarding: bool = False  # on the policy's shortened path
    safeguarding_because: list[str] = field(default_factory=list)  # the pupil's flags
    visit_due: bool = False  # a home visit is planned and its outcome not yet recorded
    visit_roles: list[str] = field(default_factory=list)  # who the procedure sends


@dataclass
class AbsenceEpisodeResult:
    closed_reason: str
    days_absent: int
    referrals: list[str]


def _is_absence_reason(code: str) -> bool:
    found = NATIONAL_CODES.get(code)
    return (
        found is not None
        and found.category in (Category.AUTHORISED, Category.UNAUTHORISED)
        and code != "N"
    )


FAILED_CONTACT = ("no_answer", "message_left", "wrong_number")


@workflow.defn
class AbsenceEpisode:
    def __init__(self) -> None:
        self.state = EpisodeState()
        self.pending: list[RegisterToday] = []
        self.seen_days: set[str] = set()
        self.input: AbsenceEpisodeInput | None = None
        self.procedure: EpisodeProcedure | None = None
        self.processing = False
        self.attempt_since_day_started = False
        self.utc_offset = UTC
        self.opened: set[str] = set()  # keys of the tasks opened so far
        self.today_fallbacks: list[EpisodeAction] = []  # the day's "may" actions
        self.one_step_at_a_time = asyncio.Lock()  # staff steps are taken in turn

    @workflow.run
    async def run(self, input: AbsenceEpisodeInput) -> AbsenceEpisodeResult:
        self.input = input
        self.state.first_day = input.first_day
        await self._load_procedure(input)
        while self.state.status == "open":
            await workflow.wait_condition(lambda: bool(self.pending) or self.closing)
            if self.closing:
                break
            self.processing = True
            tasks = await self._on_register(self.pending.pop(0))
            self.processing = False
            if tasks:
                await self._remind_if_not_done(len(self.state.days_absent), tasks)
        await self._close()
        await workflow.wait_condition(workflow.all_handlers_finished)
        # Stay until the school day is over, so that a step recorded late today is refused
        # with the reason the episode closed rather than finding no episode at all.
        await self._linger_until_midnight()
        return AbsenceEpisodeResult(
            self.state.closed_reason, len(self.state.days_absent), self.state.referrals
        )

    @property
    def closing(self) -> bool:
        return bool(self.state.closed_reason)

    @workflow.signal
    def register_today(self, marks: RegisterToday) -> None:
        # A repeated sweep changes nothing; nor does a day before the episode began, or
        # anything once it is closing.
        if self.closing or marks.day in self.seen_days:
            return
        if self.input is not None and marks.day < self.input.first_day:
            return
        self.seen_days.add(marks.day)
        self.pending.append(marks)
        self.utc_offset = timezone(timedelta(minutes=marks.utc_offset_minutes))

    @workflow.query
    def status(self) -> EpisodeState:
        return self.state

    # Human steps ---------------------------------------------------------------------

    @workflow.update
    async def record_contact(self, step: RecordContactInput) -> StepResult:
        async with self.one_step_at_a_time:
            return await self._record_contact(step)

    async def _record_contact(self, step: RecordContactInput) -> StepResult:
        assert self.input
        await self._caught_up()
        if self.closing:
            raise ApplicationError(f"this absence episode is closed ({self.state.closed_reason})")
        day = self._today()
        words = step.outcome.replace("_", " ")
        notes = [
            self._note(
                "contact",
                f"{step.channel.title()}: {words}" + (f" ({step.reason})" if step.reason else ""),
                step.by,
                step.role,
            )
        ]
        self.state.contacts.append(f"{day} {step.outcome}")
        self.attempt_since_day_started = True
        fallbacks: list[TaskToOpen] = []
        if step.outcome == "contact_made":
            sessions = list(self.state.sessions_unexplained)
            if sessions:
                await workflow.execute_activity_method(
                    CaseActivities.amend_register,
                    AmendRegisterInput(
                        key=f"{self._case_id()}/contact-{len(self.state.contacts)}",
                        school_id=self.input.school_id,
                        pupil_id=self.input.pupil_id,
                        sessions=sessions,
                        new_code=step.code,
                        reason=f"Parent contacted: {step.reason}",
                        by=step.by,
                        role=step.role,
                    ),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=RETRY,
                )
            meaning = NATIONAL_CODES[step.code].meaning
            notes.append(
                self._note(
                    "register",
                    f"{len(sessions)} session(s) amended from N to {step.code} ({meaning})",
                    step.by,
                    step.role,
                )
            )
        else:
            fallbacks = self._fallbacks()
        await self._apply(notes=notes, open_tasks=fallbacks)
        if step.outcome == "contact_made":  # closes once the step is written, so it comes first
            self.state.closed_reason = (
                f"contact made with parent/carer: {step.reason} (register {step.code})"
            )
        return StepResult("closing" if self.closing else "open", notes[0].summary)

    @record_contact.validator
    def _check_contact(self, step: RecordContactInput) -> None:
        self._check_open_and_role(step.role, STAFF_ROLES, "record contact")
        if step.outcome not in CONTACT_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(CONTACT_OUTCOMES)}")
        if step.outcome == "contact_made":
            if not step.reason.strip():
                raise ValueError("say what the parent or carer gave as the reason")
            if not _is_absence_reason(step.code):
                raise ValueError(
                    f"{step.code!r} is not an absence code the reason can become "
                    "(an authorised or unauthorised code other than N)"
                )

    @workflow.update
    async def record_visit(self, step: RecordVisitInput) -> StepResult:
        async with self.one_step_at_a_time:
            return await self._record_visit(step)

    async def _record_visit(self, step: RecordVisitInput) -> StepResult:
        await self._caught_up()
        if self.closing or not self.state.visit_due:
            raise ApplicationError("no home visit is due on this absence episode now")
        words = {
            "child_seen": "child seen",
            "not_seen": "child not seen",
            "card_left": "no answer, calling card left",
        }[step.outcome]
        note = self._note(
            "visit",
            f"Home visit: {words}" + (f". {step.note}" if step.note else ""),
            step.by,
            step.role,
        )
        self.state.visits.append(f"{self._today()} {step.outcome}")
        self.state.visit_due = False
        self.attempt_since_day_started = True
        seen = step.outcome == "child_seen"
        await self._apply(
            notes=[note],
            close_task_kinds=list(VISIT_ACTIONS),
            open_tasks=[] if seen else self._fallbacks(),
        )
        if seen:  # closes once the step is written, so it comes first
            self.state.closed_reason = "child seen on a home visit" + (
                f": {step.note}" if step.note else ""
            )
        return StepResult("closing" if self.closing else "open", note.summary)

    @record_visit.validator
    def _check_visit(self, step: RecordVisitInput) -> None:
        self._check_open_and_role(
            step.role, (*self.state.visit_roles, *VISIT_LEADS), "record a home visit"
        )
        if step.outcome not in VISIT_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(VISIT_OUTCOMES)}")
        if not self.state.visit_due:
            day = len(self.state.days_absent)
            raise ValueError(
                f"no home visit is due on this absence episode (day {day} of absence)"
                + (": the last one is recorded" if self.state.visits else "")
            )

    def _check_open_and_role(self, role: str, roles, what: str) -> None:
        if self.state.status != "open" or self.closing:
            raise ValueError(f"this absence episode is closed ({self.state.closed_reason})")
        if self.procedure is None:
            raise ValueError("this absence episode is still starting; try again in a moment")
        if role not in roles:
            allowed = ", ".join(dict.fromkeys(roles))
            raise ValueError(f"role {role!r} may not {what} on this episode; one of {allowed}")

    # The day's procedure ----------------------------------------------------------------

    async def _load_procedure(self, input: AbsenceEpisodeInput) -> None:
        if input.procedure is not None:
            self.procedure = input.procedure
            self.state.safeguarding = bool(input.safeguarding)
            return
        loaded = await workflow.execute_activity_method(
            EpisodeActivities.load_episode_procedure,
            LoadEpisodeProcedureInput(school_id=input.school_id, pupil_id=input.pupil_id),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
        self.procedure = loaded.procedure
        self.state.safeguarding = (
            loaded.safeguarding if input.safeguarding is None else input.safeguarding
        )
        self.state.safeguarding_because = loaded.because

    async def _caught_up(self) -> None:
        """Staff steps apply to the register as known: wait for days already received."""
        await workflow.wait_condition(lambda: not self.pending and not self.processing)

    async def _on_register(self, today: RegisterToday) -> list[TaskToOpen]:
        assert self.input and self.procedure
        codes = [c for c in (today.am, today.pm) if c]
        if not codes:  # no register taken for the pupil yet: nothing to go on
            return []
        if any(c in NATIONAL_CODES and NATIONAL_CODES[c].counts_as_present for c in codes):
            self.state.closed_reason = f"back in school on {today.day}"
            return []
        if "N" not in codes:
            self.state.closed_reason = (
                f"absence explained in the register on {today.day} ({codes[0]})"
            )
            return []
        self.state.days_absent.append(today.day)
        self.state.sessions_unexplained += [
            (today.day, half) for half, code in (("AM", today.am), ("PM", today.pm)) if code == "N"
        ]
        n = len(self.state.days_absent)
        notes = [self._note("absence", f"Day {n} of unexplained absence")]
        if n == 1 and self.state.safeguarding:
            because = ", ".join(self.state.safeguarding_because) or "flagged by staff"
            notes.append(
                self._note(
                    "safeguarding",
                    f"Safeguarding path ({because}): the shortened procedure; the designated "
                    "safeguarding lead is told today",
                )
            )
        tasks, returns = [], []
        self.today_fallbacks = []
        for action in self.procedure.actions_for(n, self.state.safeguarding):
            words = ACTION_WORDS.get(action.action, action.action.replace("_", " "))
            if action.optional:
                self.today_fallbacks.append(action)
                continue
            if action.action in REFERRALS:
                if action.action in self.state.referrals:  # a referral is made once
                    continue
                self.state.referrals.append(action.action)
                returns.append(
                    ReturnToRaise(
                        key=f"{self._case_id()}/{action.action}",
                        kind=action.action,
                        raised_on=today.day,
                        summary=f"{words} on day {n} of absence",
                        figure=float(n),
                    )
                )
                notes.append(
                    self._note("referral", f"{words} (day {n})", key=f"referral/{action.action}")
                )
            tasks.append(self._task(today.day, n, action))
        self.attempt_since_day_started = False
        tasks = [t for t in tasks if t.key not in self.opened]
        self.opened |= {t.key for t in tasks}
        await self._apply(
            notes=notes,
            open_tasks=tasks,
            returns=returns,
            next_action=tasks[0].summary if tasks else "",
            next_due=tasks[0].due_at if tasks else None,
        )
        return tasks

    def _task(self, day: str, n: int, action: EpisodeAction) -> TaskToOpen:
        assert self.procedure
        words = ACTION_WORDS.get(action.action, action.action.replace("_", " "))
        if action.action in VISIT_ACTIONS:
            self.state.visit_due = True
            if action.role not in self.state.visit_roles:
                self.state.visit_roles.append(action.role)
        due = self._local(day, action.due or self.procedure.end_of_day or "24:00")
        return TaskToOpen(
            key=f"{self._case_id()}/day-{n}/{action.action}",
            kind=action.action,
            summary=f"{words} (day {n} of absence" + (", if needed)" if action.optional else ")"),
            role=action.role,
            due_at=due.isoformat(),
        )

    def _fallbacks(self) -> list[TaskToOpen]:
        """An attempt failed: the day's "may" actions (emergency contacts, a home visit...)
        become tasks, once."""
        if not self.state.days_absent:
            return []
        n, day = len(self.state.days_absent), self.state.days_absent[-1]
        tasks = [self._task(day, n, a) for a in self.today_fallbacks]
        tasks = [t for t in tasks if t.key not in self.opened]
        self.opened |= {t.key for t in tasks}
        return tasks

    async def _remind_if_not_done(self, n: int, tasks: list[TaskToOpen]) -> None:
        """Wait until the first task's due time; if nobody has recorded an attempt by then
        (and the day has not moved on), say so in the chronology and tell the officer."""
        due = datetime.fromisoformat(tasks[0].due_at)
        wait = due - workflow.now()
        if wait > timedelta(0):
            try:
                await workflow.wait_condition(
                    lambda: self.attempt_since_day_started or self.closing or bool(self.pending),
                    timeout=wait,
                )
                return
            except TimeoutError:
                pass
        if self.attempt_since_day_started or self.closing:
            return
        await self._apply(
            notes=[self._note("reminder", f"Overdue: {tasks[0].summary}", key=f"overdue/{n}")],
            open_tasks=[
                TaskToOpen(
                    key=f"{self._case_id()}/day-{n}/overdue",
                    kind="overdue",
                    summary=f"Overdue on day {n}: {tasks[0].summary}",
                    role=Role.ATTENDANCE_OFFICER.value,
                    due_at=(due + timedelta(hours=1)).isoformat(),
                )
            ],
        )

    async def _close(self) -> None:
        self.state.status = "closed"
        self.state.visit_due = False
        await self._apply(
            notes=[
                self._note("closed", f"Episode closed: {self.state.closed_reason}", key="closed")
            ],
            close_task_kinds=["*"],
            next_action="",
        )

    async def _linger_until_midnight(self) -> None:
        now = workflow.now().astimezone(self.utc_offset)
        midnight = datetime.combine(now.date() + timedelta(days=1), time(0), self.utc_offset)
        if midnight > now:
            await workflow.sleep(midnight - now)

    # Helpers ------------------------------------------------------------------------------

    def _case_id(self) -> str:
        return workflow.info().workflow_id

    def _today(self) -> str:
        return workflow.now().astimezone(self.utc_offset).date().isoformat()

    def _local(self, day: str, hhmm: str) -> datetime:
        """`hhmm` on `day` in the school's local time (as an aware datetime); "24:00" is
        the midnight that ends the day."""
        h, m = (int(x) for x in hhmm.split(":"))
        local = datetime.combine(datetime.fromisoformat(day).date(), time(0))
        return (local + timedelta(hours=h, minutes=m)).replace(tzinfo=self.utc_offset)

    def _note(
        self, kind: str, summary: str, actor: str = "engine", role: str = "", key: str = ""
    ) -> ChronologyNote:
        """A chronology entry; its key is the step's own (`key`) or the point in the
        workflow's history, so a retried write finds it already there."""
        key = key or f"{kind}/{workflow.info().get_current_history_length()}"
        return ChronologyNote(
            key=f"{self._case_id()}/{key}",
            on_day=self.state.days_absent[-1] if self.state.days_absent else self._today(),
            kind=kind,
            summary=summary,
            actor=actor,
            role=role,
        )

    async def _apply(self, **changes) -> None:
        assert self.input
        await workflow.execute_activity_method(
            CaseActivities.apply_case_update,
            CaseUpdate(
                case_id=self._case_id(),
                school_id=self.input.school_id,
                pupil_id=self.input.pupil_id,
                kind="absence_episode",
                opened_on=self.state.first_day or self._today(),
                status=self.state.status,
                stage=f"day {len(self.state.days_absent)}",
                closed_reason=self.state.closed_reason if self.state.status == "closed" else "",
                **changes,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=RETRY,
        )
