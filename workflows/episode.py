"""Absence episode: one per run of unexplained absence, from the first day's call to
contact, return, or a referral as a child missing education.

Started by the register-close sweep with signal-with-start (ID `absence-<pupil id>-<first
day>`, which is also its case ID), then told each school day what the register says. The
school's procedure arrives in the input, taken from its policy when the episode starts, so
editing a policy never changes the history of an episode already running.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, timezone

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.cases import (
        AmendRegisterInput,
        CaseActivities,
        CaseUpdate,
        ChronologyNote,
        ReturnToRaise,
        TaskToOpen,
    )
    from models.codes import NATIONAL_CODES, Category

STAFF_ROLES = ("office", "attendance_officer", "dsl", "headteacher")
CONTACT_OUTCOMES = ("contact_made", "no_answer", "message_left", "wrong_number")
VISIT_OUTCOMES = ("child_seen", "not_seen", "card_left")
# Actions the engine does itself; the rest become tasks for staff.
REFERRALS = {
    "cme_referral": "Referral to the local authority: child missing education",
    "missing_persons_referral": "Referral to missing persons",
}
ACTION_WORDS = {
    "call_parents": "Phone parents/carers",
    "text_parents": "Text parents/carers",
    "email_parents": "Email parents/carers",
    "call_emergency_contacts": "Phone the emergency contacts",
    "letter_home": "Letter home",
    "home_visit": "Home visit",
    "calling_card": "Leave a calling card",
    "notify_dsl": "Tell the designated safeguarding lead",
    "wider_search": "Wider search: all contacts, siblings' schools, agencies",
    "daily_contact_attempts": "Daily calls and texts to family and contacts",
    **REFERRALS,
}
ACTIVITY_TIMEOUT = timedelta(minutes=2)
RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


@dataclass
class EpisodeAction:
    action: str  # a key of ACTION_WORDS
    role: str = "office"
    due: str = ""  # HH:MM local time on that day; empty: by the end of the day


@dataclass
class EpisodeDay:
    day: int  # school day of absence, 1-based
    actions: list[EpisodeAction] = field(default_factory=list)


@dataclass
class EpisodeProcedure:
    end_of_day: str = "15:30"
    days: list[EpisodeDay] = field(default_factory=list)
    safeguarding_days: list[EpisodeDay] = field(default_factory=list)

    def actions_for(self, day: int, safeguarding: bool) -> list[EpisodeAction]:
        plan = self.safeguarding_days if safeguarding and self.safeguarding_days else self.days
        return [a for d in plan if d.day == day for a in d.actions]


@dataclass
class AbsenceEpisodeInput:
    school_id: int
    pupil_id: int
    procedure: EpisodeProcedure
    safeguarding: bool = False  # social worker, child protection plan or looked after


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


@workflow.defn
class AbsenceEpisode:
    def __init__(self) -> None:
        self.state = EpisodeState()
        self.pending: list[RegisterToday] = []
        self.seen_days: set[str] = set()
        self.input: AbsenceEpisodeInput | None = None
        self.attempt_since_day_started = False
        self.utc_offset = UTC

    @workflow.run
    async def run(self, input: AbsenceEpisodeInput) -> AbsenceEpisodeResult:
        self.input = input
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
        return AbsenceEpisodeResult(
            self.state.closed_reason, len(self.state.days_absent), self.state.referrals
        )

    @property
    def closing(self) -> bool:
        return bool(self.state.closed_reason)

    @workflow.signal
    def register_today(self, marks: RegisterToday) -> None:
        if marks.day not in self.seen_days:  # a repeated sweep changes nothing
            self.seen_days.add(marks.day)
            self.pending.append(marks)
            self.utc_offset = timezone(timedelta(minutes=marks.utc_offset_minutes))

    @workflow.query
    def status(self) -> EpisodeState:
        return self.state

    # Human steps ---------------------------------------------------------------------

    @workflow.update
    async def record_contact(self, step: RecordContactInput) -> StepResult:
        assert self.input
        await self._caught_up()
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
            notes.append(
                self._note(
                    "register",
                    f"{len(sessions)} session(s) amended from N to {step.code}",
                    step.by,
                    step.role,
                )
            )
            self.state.closed_reason = "contact made with parent/carer"
        await self._apply(notes=notes)
        return StepResult(self.state.status if not self.closing else "closing", notes[0].summary)

    @record_contact.validator
    def _check_contact(self, step: RecordContactInput) -> None:
        self._check_open_and_role(step.role)
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
        await self._caught_up()
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
        self.attempt_since_day_started = True
        if step.outcome == "child_seen":
            self.state.closed_reason = "child seen on a home visit"
        await self._apply(notes=[note], close_task_kinds=["home_visit", "calling_card"])
        return StepResult("closing" if self.closing else "open", note.summary)

    @record_visit.validator
    def _check_visit(self, step: RecordVisitInput) -> None:
        self._check_open_and_role(step.role)
        if step.outcome not in VISIT_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(VISIT_OUTCOMES)}")

    def _check_open_and_role(self, role: str) -> None:
        if self.state.status != "open" or self.closing:
            raise ValueError(f"this absence episode is closed ({self.state.closed_reason})")
        if role not in STAFF_ROLES:
            raise ValueError(f"role {role!r} may not record contact; one of {STAFF_ROLES}")

    # The day's procedure ----------------------------------------------------------------

    async def _caught_up(self) -> None:
        """Staff steps apply to the register as known: wait for days already received."""
        await workflow.wait_condition(lambda: not self.pending and not self.processing)

    async def _on_register(self, today: RegisterToday) -> list[TaskToOpen]:
        assert self.input
        codes = [c for c in (today.am, today.pm) if c]
        if codes and all(c != "N" for c in codes):
            present = any(NATIONAL_CODES[c].counts_as_present for c in codes if c in NATIONAL_CODES)
            self.state.closed_reason = (
                "back in school" if present else f"absence explained in the register ({codes[0]})"
            )
            return []
        self.state.days_absent.append(today.day)
        self.state.first_day = self.state.first_day or today.day
        self.state.sessions_unexplained += [
            (today.day, half) for half, code in (("AM", today.am), ("PM", today.pm)) if code == "N"
        ]
        n = len(self.state.days_absent)
        proc = self.input.procedure
        notes = [self._note("absence", f"Day {n} of unexplained absence")]
        tasks, returns = [], []
        for i, action in enumerate(proc.actions_for(n, self.input.safeguarding)):
            words = ACTION_WORDS.get(action.action, action.action)
            if action.action in REFERRALS:
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
                notes.append(self._note("referral", f"{words} (day {n})"))
                continue
            due = self._local(today.day, action.due or proc.end_of_day)
            tasks.append(
                TaskToOpen(
                    key=f"{self._case_id()}/day-{n}/{i}-{action.action}",
                    kind=action.action,
                    summary=f"{words} (day {n} of absence)",
                    role=action.role,
                    due_at=due.isoformat(),
                )
            )
        self.attempt_since_day_started = False
        await self._apply(
            notes=notes,
            open_tasks=tasks,
            returns=returns,
            next_action=tasks[0].summary if tasks else "",
            next_due=tasks[0].due_at if tasks else None,
        )
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
            notes=[self._note("reminder", f"Overdue: {tasks[0].summary}", key_suffix=f"d{n}")],
            open_tasks=[
                TaskToOpen(
                    key=f"{self._case_id()}/day-{n}/overdue",
                    kind="overdue",
                    summary=f"Overdue on day {n}: {tasks[0].summary}",
                    role="attendance_officer",
                    due_at=(due + timedelta(hours=1)).isoformat(),
                )
            ],
        )

    async def _close(self) -> None:
        self.state.status = "closed"
        await self._apply(
            notes=[self._note("closed", f"Episode closed: {self.state.closed_reason}")],
            close_task_kinds=["*"],
        )

    # Helpers ------------------------------------------------------------------------------

    def _case_id(self) -> str:
        return workflow.info().workflow_id

    def _today(self) -> str:
        return workflow.now().astimezone(self.utc_offset).date().isoformat()

    def _local(self, day: str, hhmm: str) -> datetime:
        """`hhmm` on `day` in the school's local time (as an aware datetime)."""
        h, m = (int(x) for x in hhmm.split(":"))
        local = datetime.combine(datetime.fromisoformat(day).date(), time(h, m))
        return local.replace(tzinfo=self.utc_offset)

    def _note(
        self, kind: str, summary: str, actor: str = "engine", role: str = "", key_suffix: str = ""
    ) -> ChronologyNote:
        count = workflow.info().get_current_history_length()
        return ChronologyNote(
            key=f"{self._case_id()}/{kind}/{count}{key_suffix}",
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
