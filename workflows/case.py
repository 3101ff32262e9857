"""Attendance case: one per pupil per academic year, carrying the pupil through every
ladder of the school's policy.

The register-close sweep signals the case (signal-with-start, ID
`attendance-case-<pupil id>-<year>`, which is also its case ID) whenever the pupil crosses
or comes back under one of the policy's thresholds. Thresholds move a pupil onto a ladder
and up it; monitoring periods and review points judge whether attendance improved (step
down, with a positive letter) or not (step up); meetings, contracts, pauses and the
headteacher's decisions are Updates whose validators refuse a step that does not fit.
Every timer is a date in the case's state, so the state alone carries the case across
continue-as-new.
"""

import asyncio
import contextlib
from datetime import UTC, date, datetime, time, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.cases import (
        CaseActivities,
        CaseLadder,
        CasePolicy,
        CasePolicyActivities,
        CaseStage,
        CaseUpdate,
        ChronologyNote,
        DecisionMade,
        DecisionToAsk,
        LoadCasePolicyInput,
        PenaltyNoticeInput,
        PenaltyOutcomeInput,
        ReturnToRaise,
        ReviewDayInput,
        ReviewInput,
        TaskToOpen,
    )
    from activities.letters import LetterRequest
    from workflows.case_data import (
        AttendanceCaseInput,
        AttendanceCaseResult,
        CaseState,
        CaseStatus,
        ContractInput,
        DecisionInput,
        LadderState,
        LAOutcomeInput,
        MeetingOutcomeInput,
        MoveToStageInput,
        PauseInput,
        PreviousYearAbsence,
        ResumeInput,
        ScheduleMeetingInput,
        StepResult,
        ThresholdsChanged,
    )

ACTIVITY = {
    "start_to_close_timeout": timedelta(minutes=5),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=1)),
}
# Writing and sending a letter heartbeats after each step: a worker lost mid-letter is
# noticed in a minute rather than at the five-minute timeout.
LETTER_ACTIVITY = {**ACTIVITY, "heartbeat_timeout": timedelta(minutes=1)}
STAFF_ROLES = (
    "office_staff",
    "attendance_officer",
    "attendance_team",
    "class_teacher",
    "tutor",
    "divisional_head",
    "designated_safeguarding_lead",
    "senior_attendance_champion",
    "headteacher",
    "slt",
)
LEADERS = ("senior_attendance_champion", "headteacher")
LA_OUTCOMES = ("issued", "paid_reduced", "paid", "unpaid", "withdrawn")
# Thresholds every policy has (models.policy checks), and what the case does about them.
NATIONAL_RETURNS = {
    "attendance_return": "Attendance return to the LA: 10 continuous school days unauthorised",
    "sickness_return": "Sickness return to the LA: 15 school days of illness",
}
# The case's clock: the day the sweep last gave (at register close, SWEEP_TIME), moved on by
# the time passed since. In a school it is the local time; replaying a pupil's history (a
# simulation) it follows the history's days.
SWEEP_TIME = time(9, 0)
WAKE_TIME = time(6, 0)  # reviews and reminders fall due before school


def _day(text: str) -> date:
    return date.fromisoformat(text[:10])


@workflow.defn
class AttendanceCase:
    def __init__(self) -> None:
        self.input: AttendanceCaseInput | None = None
        self.state = CaseState()
        self.inbox: list[ThresholdsChanged] = []
        self.baselines: list[PreviousYearAbsence] = []
        self.changed = False
        self.lock = asyncio.Lock()

    # The loop -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: AttendanceCaseInput) -> AttendanceCaseResult:
        self.input = input
        if input.state is not None:
            self.state = input.state
        if self.state.policy is None:
            self.state.policy = await workflow.execute_activity_method(
                CasePolicyActivities.load_case_policy,
                LoadCasePolicyInput(input.school_id),
                **ACTIVITY,
            )
            self.state.ladders = {ladder.id: LadderState() for ladder in self.state.policy.ladders}
            self.state.opened_on = self._today()
        while not self.state.closed:
            wake = self._next_wake()
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: bool(self.inbox or self.baselines) or self.changed,
                    timeout=max(wake - workflow.now(), timedelta(seconds=1)) if wake else None,
                )
            self.changed = False
            async with self.lock:
                while self.baselines:
                    await self._on_previous_year(self.baselines.pop(0))
                while self.inbox:
                    await self._on_thresholds(self.inbox.pop(0))
                await self._on_time()
            if self._history_is_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    AttendanceCaseInput(
                        input.school_id,
                        input.pupil_id,
                        input.academic_year,
                        self.state,
                        input.continue_after_events,
                    )
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return AttendanceCaseResult(self._today(), self._stages())

    def _history_is_long(self) -> bool:
        assert self.input
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self.input.continue_after_events
        )

    @workflow.signal
    def thresholds_changed(self, change: ThresholdsChanged) -> None:
        if change.as_of in self.state.seen_days:  # a repeated sweep changes nothing
            return
        self.state.seen_days = (self.state.seen_days + [change.as_of])[-10:]
        self.state.as_of, self.state.anchored_at = change.as_of, workflow.now().isoformat()
        self.inbox.append(change)

    @workflow.signal
    def previous_year_absence(self, baseline: PreviousYearAbsence) -> None:
        if not self.state.anchored_at:  # a case the baseline opens: its clock starts here
            self.state.as_of, self.state.anchored_at = baseline.as_of, workflow.now().isoformat()
        self.baselines.append(baseline)

    @workflow.query
    def status(self) -> CaseStatus:
        return CaseStatus(
            stage=self._stage_summary(),
            ladder_stages=self._stages(),
            paused=self.state.paused is not None,
            pause_reason=self.state.paused,
            awaiting=self._awaiting(),
            available_actions=self._available_actions(),
            holding=self.state.holding,
            opened_on=self.state.opened_on,
            closed=self.state.closed,
        )

    # What the sweep says ------------------------------------------------------------------

    async def _on_thresholds(self, change: ThresholdsChanged) -> None:
        self.state.holding = list(change.holding)
        notes, tasks, returns = [], [], []
        for name in change.crossed:
            if name in NATIONAL_RETURNS and name not in self.state.returns_raised:
                self.state.returns_raised.append(name)
                returns.append(
                    ReturnToRaise(self._key(name), name, change.as_of, NATIONAL_RETURNS[name])
                )
                notes.append(self._note("return", NATIONAL_RETURNS[name]))
            elif name == "unexplained_overdue":
                notes.append(self._note("register", "An N code is past the time allowed"))
                tasks.append(
                    self._task(
                        "resolve_n",
                        "Establish the reason for the overdue N codes or record them as O",
                        "office_staff",
                        days=1,
                    )
                )
            elif name in self._policy().lateness_rules:
                rule = self._policy().lateness_rules[name]
                notes.append(self._note("lateness", f"Lateness: {name.replace('_', ' ')}"))
                tasks += [self._task("lateness", text, rule.by, days=1) for text in rule.tasks]
            elif name == "severe_absence":
                notes.append(self._note("threshold", "Severely absent (50% or more)"))
                tasks.append(
                    self._task(
                        "severe_absence",
                        "Severe absence: agree a joint approach with the LA and other partners",
                        "senior_attendance_champion",
                        days=5,
                    )
                )
        if notes or tasks or returns:
            await self._write(notes=notes, open_tasks=tasks, returns=returns)
        if self.state.paused:
            if change.crossed:
                await self._write(
                    notes=[
                        self._note(
                            "threshold",
                            f"Crossed {', '.join(change.crossed)} while the case is "
                            f"paused ({self.state.paused}); no step taken",
                        )
                    ]
                )
            return
        holding = set(change.holding)
        for ladder in self._policy().ladders:
            ls = self.state.ladders[ladder.id]
            current = ladder.index(ls.stage) if ls.stage else -1
            onto = [j for j, s in enumerate(ladder.stages) if set(s.enter_when) & holding]
            if onto and max(onto) > current:
                stage = ladder.stages[max(onto)]
                why = ", ".join(t for t in change.holding if t in stage.enter_when)
                await self._enter(ladder, stage, f"over {why}")
            elif ls.stage and self._recovered(ladder, ls) and not self._pending(ls):
                await self._step_down(ladder, "back above the line")
                # On down while the rung reached has no review of its own and its line is
                # clear too (cases that stepped down once before this replay as they ran).
                if workflow.patched("step-down-while-clear"):
                    while (
                        (ls := self.state.ladders[ladder.id]).stage
                        and self._recovered(ladder, ls)
                        and not self._pending(ls)
                    ):
                        await self._step_down(ladder, "back above the line")

    async def _on_previous_year(self, baseline: PreviousYearAbsence) -> None:
        """Each ladder with a September baseline, if the pupil is not on it yet, starts on
        its first rung with the baseline letter; its review points then judge from here."""
        if baseline.as_of == self.state.baseline_on:  # sent again (a retried activity)
            return
        self.state.baseline_on = baseline.as_of
        rate = f"{baseline.rate_year:.1f}%" if baseline.rate_year is not None else "no sessions"
        why = f"persistently absent last year: {rate} to {baseline.year_ended}"
        for ladder in self._policy().ladders:
            if not ladder.september_letter or self.state.ladders[ladder.id].stage:
                continue
            if self.state.paused:
                await self._write(
                    notes=[self._note("threshold", f"{why}; the case is paused, no step taken")]
                )
                return
            await self._enter(
                ladder,
                ladder.stages[0],
                why,
                letter=ladder.september_letter,
                letter_data={"previous_year_rate": baseline.rate_year},
            )

    def _recovered(self, ladder: CaseLadder, ls: LadderState) -> bool:
        """A stage with no review of its own ends when the pupil is back over its line."""
        if ls.review_on:
            return False
        return not (self._lines(ladder, ls.stage) & set(self.state.holding))

    @staticmethod
    def _lines(ladder: CaseLadder, stage_id: str) -> set[str]:
        """The thresholds a stage is judged against: its own, or for a stage reached by
        escalation those of the nearest stage below it that a threshold enters (a pupil
        escalated from "below 90%" has recovered once back at 90%, and the lower rungs
        then judge the rest of the way down)."""
        for stage in reversed(ladder.stages[: ladder.index(stage_id) + 1]):
            if stage.enter_when:
                return set(stage.enter_when)
        return {t for s in ladder.stages for t in s.enter_when}

    @staticmethod
    def _pending(ls: LadderState) -> bool:
        return bool(ls.decision_key or ls.awaiting_la or ls.meeting_at)

    # Time ---------------------------------------------------------------------------------

    def _next_wake(self) -> datetime | None:
        days = [self._year_end()]
        policy = self.state.policy
        for ls in self.state.ladders.values():
            if ls.review_on and not self.state.paused:
                days.append(_day(ls.review_on))
            if ls.decision_key and policy:
                last = _day(ls.decision_reminded_on or ls.decision_asked_on)
                days.append(last + timedelta(days=policy.decision_reminder_days))
            if ls.meeting_at and policy and ls.meeting_reminders < 2:
                wait = (policy.meeting_reminder_days, policy.meeting_escalate_days)
                days.append(_day(ls.meeting_at) + timedelta(days=wait[ls.meeting_reminders]))
        return self._workflow_time(datetime.combine(min(days), WAKE_TIME))

    def _year_end(self) -> date:
        assert self.input
        return date(self.input.academic_year + 1, 8, 31)

    async def _on_time(self) -> None:
        today = _day(self._today())
        if today >= self._year_end():
            await self._close("the academic year ended")
            return
        policy = self._policy()
        for ladder in policy.ladders:
            ls = self.state.ladders[ladder.id]
            if ls.decision_key:
                last = _day(ls.decision_reminded_on or ls.decision_asked_on)
                if today >= last + timedelta(days=policy.decision_reminder_days):
                    ls.decision_reminded_on = today.isoformat()
                    stage = ladder.stage(ls.stage)
                    await self._write(
                        notes=[self._note("reminder", f"Decision overdue: {stage.name}")],
                        open_tasks=[
                            self._task(
                                "decision_overdue",
                                f"Overdue decision: {stage.name}",
                                stage.approver or "headteacher",
                            )
                        ],
                    )
            if ls.meeting_at and ls.meeting_reminders < 2:
                wait = (policy.meeting_reminder_days, policy.meeting_escalate_days)
                if today >= _day(ls.meeting_at) + timedelta(days=wait[ls.meeting_reminders]):
                    await self._chase_meeting(ladder, ls)
            if ls.review_on and not self.state.paused and today >= _day(ls.review_on):
                if ls.decision_key:
                    ls.review_on = None  # judged once the decision is made
                else:
                    await self._review(ladder, ls)

    async def _chase_meeting(self, ladder: CaseLadder, ls: LadderState) -> None:
        stage = ladder.stage(ls.stage)
        when = datetime.fromisoformat(ls.meeting_at).strftime("%d/%m/%Y")
        if ls.meeting_reminders == 0:
            ls.meeting_reminders = 1
            await self._write(
                notes=[self._note("reminder", f"No outcome recorded for the meeting on {when}")],
                open_tasks=[
                    self._task(
                        "meeting_outcome",
                        f"Record the outcome of the meeting on {when} ({stage.name})",
                        stage.meeting_led_by or "attendance_officer",
                    )
                ],
            )
        else:
            ls.meeting_reminders = 2
            await self._write(
                notes=[
                    self._note(
                        "escalation",
                        f"Meeting outcome still missing ({when}): "
                        "passed to the Senior Attendance Champion",
                    )
                ],
                open_tasks=[
                    self._task(
                        "meeting_outcome_missing",
                        f"Meeting outcome missing since {when}: {stage.name}",
                        "senior_attendance_champion",
                    )
                ],
            )

    async def _review(self, ladder: CaseLadder, ls: LadderState) -> None:
        assert self.input
        figures = await workflow.execute_activity_method(
            CasePolicyActivities.review_figures,
            ReviewInput(self.input.school_id, self.input.pupil_id, self._today(), ls.since),
            **ACTIVITY,
        )
        self.state.holding = figures.holding
        on_ladder = self._lines(ladder, ls.stage)
        rate = f"{figures.rate_since:.1f}%" if figures.rate_since is not None else "no sessions"
        stage = ladder.stage(ls.stage)
        if not on_ladder & set(figures.holding):
            await self._step_down(ladder, f"attendance recovered ({rate} since {ls.since})")
        elif (
            figures.rate_since is not None
            and figures.rate_at_start is not None
            and figures.rate_since > figures.rate_at_start
        ):
            ls.review_on = await self._review_on(ladder, stage, self._today())
            await self._write(
                notes=[
                    self._note(
                        "review",
                        f"{stage.name}: improving ({rate} since {ls.since}, "
                        f"{figures.rate_at_start:.1f}% before); monitoring continues",
                    )
                ]
            )
        elif stage.on_no_improvement:
            await self._enter(
                ladder,
                ladder.stage(stage.on_no_improvement),
                f"no improvement ({rate} since {ls.since})",
            )
        else:
            ls.review_on = await self._review_on(ladder, stage, self._today())
            await self._write(
                notes=[
                    self._note(
                        "review",
                        f"{stage.name}: no improvement ({rate} since {ls.since}); "
                        "no further step on this ladder",
                    )
                ]
            )

    async def _review_on(self, ladder: CaseLadder, stage: CaseStage, start: str) -> str | None:
        assert self.input
        if stage.monitoring_weeks:
            return (_day(start) + timedelta(weeks=stage.monitoring_weeks)).isoformat()
        if stage.monitoring_school_weeks:
            return await workflow.execute_activity_method(
                CasePolicyActivities.review_day,
                ReviewDayInput(self.input.school_id, start, stage.monitoring_school_weeks),
                **ACTIVITY,
            )
        if ladder.review_months:
            day = _day(start)
            for year in (day.year, day.year + 1):
                for month in ladder.review_months:
                    point = date(year, month, 1)
                    if point > day:
                        return point.isoformat()
        return None

    # Moving on a ladder -------------------------------------------------------------------

    async def _enter(
        self,
        ladder: CaseLadder,
        stage: CaseStage,
        why: str,
        letter: str | None = None,
        letter_data: dict | None = None,
    ) -> None:
        """Onto `stage`, with its letter (or `letter` instead, with `letter_data`)."""
        today = self._today()
        review_on = await self._review_on(ladder, stage, today)
        ls = self.state.ladders[ladder.id] = LadderState(
            stage=stage.id,
            since=today,
            review_on=review_on,
            meeting_needed=bool(stage.meeting_led_by),
            contract_needed=stage.attendance_contract,
        )
        notes = [self._note("stage", f"{ladder.name}: {stage.name} ({why})")]
        tasks = [self._task("stage_task", text, "attendance_officer") for text in stage.tasks]
        returns, decisions = [], []
        if stage.meeting_led_by:
            purpose = f": {stage.meeting_purpose}" if stage.meeting_purpose else ""
            la = " (invite the LA's attendance officer)" if stage.invite_la_officer else ""
            tasks.append(
                self._task(
                    "meeting",
                    f"Arrange a meeting led by the "
                    f"{stage.meeting_led_by.replace('_', ' ')}{purpose}{la}",
                    stage.meeting_led_by,
                )
            )
        if stage.attendance_contract:
            tasks.append(
                self._task(
                    "contract",
                    "Agree an attendance contract with the parents",
                    "attendance_officer",
                )
            )
        if stage.approver:
            ls.decision_key, ls.decision_asked_on = self._key("decision"), today
            due = _day(today) + timedelta(days=self._policy().decision_reminder_days)
            decisions.append(
                DecisionToAsk(ls.decision_key, stage.legal_step, today, due.isoformat())
            )
            tasks.append(self._task("decision", f"Decide: {stage.name}", stage.approver))
        elif stage.legal_step != "none":
            returns.append(
                ReturnToRaise(self._key(stage.legal_step), stage.legal_step, today, f"{stage.name}")
            )
        for who in stage.notify:
            notes.append(
                self._note("notify", f"{who.replace('_', ' ').capitalize()} told: {stage.name}")
            )
        await self._write(notes=notes, open_tasks=tasks, returns=returns, decisions=decisions)
        if not stage.approver:
            await self._send_stage_letters(ladder, stage, letter, letter_data)

    async def _step_down(self, ladder: CaseLadder, why: str) -> None:
        ls = self.state.ladders[ladder.id]
        stage = ladder.stage(ls.stage)
        target = stage.on_improvement or "close"
        if stage.positive_letter:
            await self._letter(stage.positive_letter, ladder, stage, {"reason": why})
        if target == "close":
            self.state.ladders[ladder.id] = LadderState()
            await self._write(notes=[self._note("stage", f"{ladder.name}: off the ladder ({why})")])
            return
        lower = ladder.stage(target)
        today = self._today()
        review_on = await self._review_on(ladder, lower, today)
        self.state.ladders[ladder.id] = LadderState(
            stage=lower.id, since=today, review_on=review_on
        )
        await self._write(
            notes=[self._note("stage", f"{ladder.name}: back to {lower.name} ({why})")]
        )

    async def _send_stage_letters(
        self,
        ladder: CaseLadder,
        stage: CaseStage,
        letter: str | None = None,
        letter_data: dict | None = None,
    ) -> None:
        if letter is None:
            letter = stage.letter
            for when, variant_letter in stage.variants:
                if when is None or when in self.state.holding:
                    letter = variant_letter
                    break
        if letter:
            await self._letter(letter, ladder, stage, letter_data)
        if stage.text_message:
            await self._letter(stage.text_message, ladder, stage)

    async def _letter(
        self, template: str, ladder: CaseLadder, stage: CaseStage, data: dict | None = None
    ) -> None:
        assert self.input
        try:
            await self._send(template, ladder, stage, data)
        except ActivityError as error:  # a letter that cannot be written: staff send it
            cause = getattr(error.cause, "message", "") or str(error.cause)
            await self._write(
                notes=[self._note("letter", f"Letter {template} could not be produced: {cause}")],
                open_tasks=[
                    self._task(
                        "letter_failed",
                        f"Send the {stage.name} letter by hand ({template})",
                        "attendance_officer",
                        days=1,
                    )
                ],
            )

    async def _send(
        self, template: str, ladder: CaseLadder, stage: CaseStage, data: dict | None
    ) -> None:
        assert self.input
        await workflow.execute_activity(
            "send_letter",
            LetterRequest(
                school_id=self.input.school_id,
                pupil_id=self.input.pupil_id,
                template=template,
                key=self._key(f"letter/{template}"),
                data={"ladder": ladder.name, "stage": stage.name, **(data or {})},
                case_id=workflow.info().workflow_id,
                as_of=self._today(),
            ),
            **LETTER_ACTIVITY,
        )

    async def _close(self, why: str) -> None:
        self.state.closed = True
        await self._write(
            notes=[self._note("closed", f"Case closed: {why}")],
            close_task_kinds=["*"],
            status="closed",
            closed_reason=why,
        )

    # Human steps --------------------------------------------------------------------------

    @workflow.update
    async def schedule_meeting(self, step: ScheduleMeetingInput) -> StepResult:
        async with self.lock:
            ladder, ls = self._ladder_for(step.ladder, lambda s: s.meeting_needed)
            ls.meeting_at, ls.meeting_reminders = step.when, 0
            when = datetime.fromisoformat(step.when)
            summary = f"Meeting arranged for {when:%d/%m/%Y %H:%M} with {step.with_whom}"
            await self._write(
                notes=[self._note("meeting", summary, step.by, step.role)],
                open_tasks=[
                    self._task(
                        "meeting_held",
                        f"Meeting {when:%d/%m/%Y %H:%M}: {ladder.stage(ls.stage).name}",
                        step.role,
                        due=when,
                    )
                ],
                close_task_kinds=["meeting"],
            )
            self.changed = True
            return StepResult(summary)

    @schedule_meeting.validator
    def _check_schedule(self, step: ScheduleMeetingInput) -> None:
        self._check_staff(step.role)
        self._ladder_for(step.ladder, lambda s: s.meeting_needed)
        try:
            datetime.fromisoformat(step.when)
        except ValueError:
            raise ValueError(f"{step.when!r} is not a date and time (YYYY-MM-DDTHH:MM)") from None

    @workflow.update
    async def record_meeting_outcome(self, step: MeetingOutcomeInput) -> StepResult:
        async with self.lock:
            ladder, ls = self._ladder_for(step.ladder, lambda s: bool(s.meeting_at))
            stage = ladder.stage(ls.stage)
            held = datetime.fromisoformat(ls.meeting_at).strftime("%d/%m/%Y")
            ls.meeting_needed, ls.meeting_at, ls.meeting_reminders = False, None, 0
            parts = [f"Meeting on {held}: " + ("attended" if step.attended else "did not attend")]
            parts += [
                f"{label}: {text}"
                for label, text in (
                    ("targets", step.targets),
                    ("support agreed", step.support_agreed),
                    ("notes", step.notes),
                )
                if text
            ]
            summary = "; ".join(parts)
            await self._write(
                notes=[self._note("meeting", summary, step.by, step.role)],
                close_task_kinds=["meeting_held", "meeting_outcome", "meeting_outcome_missing"],
            )
            if not step.attended and stage.on_no_improvement:
                await self._enter(
                    ladder, ladder.stage(stage.on_no_improvement), "did not attend the meeting"
                )
            elif step.next_review:
                ls.review_on = step.next_review
            self.changed = True
            return StepResult(summary)

    @record_meeting_outcome.validator
    def _check_outcome(self, step: MeetingOutcomeInput) -> None:
        self._check_staff(step.role)
        self._ladder_for(step.ladder, lambda s: bool(s.meeting_at))
        if step.attended and not (step.targets or step.support_agreed or step.notes):
            raise ValueError("say what was agreed: targets, support or notes")
        if step.next_review:
            try:
                date.fromisoformat(step.next_review)
            except ValueError:
                raise ValueError(f"{step.next_review!r} is not a date (YYYY-MM-DD)") from None

    @workflow.update
    async def record_contract(self, step: ContractInput) -> StepResult:
        async with self.lock:
            _, ls = self._ladder_for(step.ladder, lambda s: s.contract_needed)
            ls.contract_needed = False
            summary = f"Attendance contract signed on {_day(step.signed_on):%d/%m/%Y}" + (
                f": {step.terms}" if step.terms else ""
            )
            await self._write(
                notes=[self._note("contract", summary, step.by, step.role)],
                close_task_kinds=["contract"],
            )
            return StepResult(summary)

    @record_contract.validator
    def _check_contract(self, step: ContractInput) -> None:
        self._check_staff(step.role)
        self._ladder_for(step.ladder, lambda s: s.contract_needed)

    @workflow.update
    async def pause(self, step: PauseInput) -> StepResult:
        async with self.lock:
            self.state.paused = step.reason
            summary = f"Case paused: {step.reason.replace('_', ' ')}" + (
                f" ({step.note})" if step.note else ""
            )
            await self._write(
                notes=[self._note("pause", summary, step.by, step.role)], status="paused"
            )
            self.changed = True
            return StepResult(summary)

    @pause.validator
    def _check_pause(self, step: PauseInput) -> None:
        if self.state.paused:
            raise ValueError(f"the case is already paused ({self.state.paused})")
        agreed_by = self._policy().pauses.get(step.reason)
        if agreed_by is None:
            raise ValueError(
                f"{step.reason!r} is not a reason this school's policy allows; "
                f"one of {', '.join(self._policy().pauses) or 'none'}"
            )
        if step.role not in (agreed_by, *LEADERS):
            raise ValueError(
                f"a pause for {step.reason} is agreed by the "
                f"{agreed_by.replace('_', ' ')}, not {step.role}"
            )

    @workflow.update
    async def resume(self, step: ResumeInput) -> StepResult:
        async with self.lock:
            reason, self.state.paused = self.state.paused, None
            for ladder in self._policy().ladders:
                ls = self.state.ladders[ladder.id]
                if ls.stage:  # monitoring starts again from today
                    ls.since = self._today()
                    ls.review_on = await self._review_on(ladder, ladder.stage(ls.stage), ls.since)
            summary = f"Case resumed after pause ({reason})" + (
                f": {step.note}" if step.note else ""
            )
            await self._write(notes=[self._note("pause", summary, step.by, step.role)])
            self.inbox.append(
                ThresholdsChanged(self.state.as_of or self._today(), self.state.holding)
            )
            self.changed = True
            return StepResult(summary)

    @resume.validator
    def _check_resume(self, step: ResumeInput) -> None:
        if not self.state.paused:
            raise ValueError("the case is not paused")
        agreed_by = self._policy().pauses.get(self.state.paused, "headteacher")
        if step.role not in (agreed_by, *LEADERS):
            raise ValueError(f"only the {agreed_by.replace('_', ' ')} may resume this case")

    @workflow.update
    async def decide(self, step: DecisionInput) -> StepResult:
        async with self.lock:
            ladder, ls = self._ladder_for("", lambda s: s.decision_key == step.decision_key)
            stage = ladder.stage(ls.stage)
            today = self._today()
            ls.decision_key = ls.decision_asked_on = ls.decision_reminded_on = None
            verdict = "approved" if step.approve else "declined"
            summary = f"{stage.name}: {verdict} by the {step.role.replace('_', ' ')}: {step.reason}"
            await self._write(
                notes=[self._note("decision", summary, step.by, step.role)],
                decisions_made=[
                    DecisionMade(step.decision_key, verdict, today, step.by, step.reason)
                ],
                close_task_kinds=["decision", "decision_overdue"],
            )
            if step.approve:
                await self._carry_out(ladder, stage, ls)
            ls.review_on = ls.review_on or await self._review_on(ladder, stage, today)
            self.changed = True
            return StepResult(summary)

    @decide.validator
    def _check_decision(self, step: DecisionInput) -> None:
        ladder, ls = self._ladder_for(
            "",
            lambda s: s.decision_key == step.decision_key,
            what=f"a decision {step.decision_key!r} awaited",
        )
        approver = ladder.stage(ls.stage).approver or "headteacher"
        if step.role not in (approver, "headteacher"):
            raise ValueError(f"only the {approver.replace('_', ' ')} may decide a legal step")
        if not step.reason.strip():
            raise ValueError("a decision is recorded with its reason, either way")

    async def _carry_out(self, ladder: CaseLadder, stage: CaseStage, ls: LadderState) -> None:
        """An approved legal step."""
        assert self.input
        policy = self._policy()
        today = self._today()
        if stage.legal_step == "penalty_notice_request":
            key = self._key("penalty_notice")
            result = await workflow.execute_activity_method(
                CaseActivities.request_penalty_notice,
                PenaltyNoticeInput(
                    key,
                    self.input.school_id,
                    self.input.pupil_id,
                    workflow.info().workflow_id,
                    today,
                    policy.penalty_repeat_years,
                    policy.penalty_amounts,
                    policy.penalty_reduced_first,
                ),
                **ACTIVITY,
            )
            issued = [n for n in result.notices if n.sequence]
            beyond = [n.parent for n in result.notices if not n.sequence]
            if beyond:
                summary = (
                    f"No further penalty notice within {policy.penalty_repeat_years} years for "
                    f"{', '.join(beyond)}: referred to the LA to consider prosecution instead"
                )
                await self._write(
                    notes=[self._note("legal", summary)],
                    returns=[
                        ReturnToRaise(
                            self._key("prosecution"), "prosecution_referral", today, summary
                        )
                    ],
                )
                await self._letter("la/legal_referral", ladder, stage, {"reason": summary})
            if issued:
                amounts = ", ".join(f"{n.parent}: £{n.amount}" for n in issued)
                ls.awaiting_la = key
                await self._write(
                    notes=[self._note("legal", f"Penalty notice requested from the LA ({amounts})")]
                )
                await self._letter(
                    "la/penalty_notice_request",
                    ladder,
                    stage,
                    {
                        "notices": [
                            {"parent": n.parent, "sequence": n.sequence, "amount": n.amount}
                            for n in issued
                        ]
                    },
                )
            await self._send_stage_letters(ladder, stage)
            return
        if stage.legal_step in (
            "prosecution_referral",
            "education_supervision_order",
            "notice_to_improve",
        ):
            await self._write(
                returns=[
                    ReturnToRaise(self._key(stage.legal_step), stage.legal_step, today, stage.name)
                ]
            )
            # The referral goes to the LA with the evidence pack bound in. Cases that made
            # their referral before this letter existed replay without it.
            if stage.legal_step == "prosecution_referral" and workflow.patched(
                "legal-referral-letter"
            ):
                await self._letter("la/legal_referral", ladder, stage, {"reason": stage.name})
        await self._send_stage_letters(ladder, stage)

    @workflow.update
    async def record_la_outcome(self, step: LAOutcomeInput) -> StepResult:
        async with self.lock:
            _, ls = self._ladder_for("", lambda s: bool(s.awaiting_la))
            key = ls.awaiting_la
            await workflow.execute_activity_method(
                CaseActivities.record_penalty_outcome,
                PenaltyOutcomeInput(key, step.outcome, step.on_day),
                **ACTIVITY,
            )
            words = {
                "issued": "issued by the LA",
                "paid_reduced": "paid at the reduced amount",
                "paid": "paid",
                "unpaid": "not paid",
                "withdrawn": "withdrawn",
            }[step.outcome]
            summary = f"Penalty notice {words} ({_day(step.on_day):%d/%m/%Y})"
            tasks = []
            if step.outcome != "issued":
                ls.awaiting_la = None
            if step.outcome == "unpaid":
                tasks.append(
                    self._task(
                        "prosecution",
                        "Unpaid penalty notice: the LA considers "
                        "prosecution (s444), an education supervision order "
                        "first",
                        "senior_attendance_champion",
                    )
                )
            await self._write(
                notes=[self._note("legal", summary, step.by, step.role)], open_tasks=tasks
            )
            return StepResult(summary)

    @record_la_outcome.validator
    def _check_la_outcome(self, step: LAOutcomeInput) -> None:
        self._check_staff(step.role)
        self._ladder_for(
            "", lambda s: bool(s.awaiting_la), what="a penalty notice awaiting the LA's outcome"
        )
        if step.outcome not in LA_OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(LA_OUTCOMES)}")

    @workflow.update
    async def move_to_stage(self, step: MoveToStageInput) -> StepResult:
        async with self.lock:
            ladder = next(ld for ld in self._policy().ladders if ld.id == step.ladder)
            await self._enter(
                ladder, ladder.stage(step.stage), f"staff decision by {step.by}: {step.reason}"
            )
            self.changed = True
            return StepResult(f"{ladder.name}: {ladder.stage(step.stage).name}")

    @move_to_stage.validator
    def _check_move(self, step: MoveToStageInput) -> None:
        self._check_staff(step.role)
        ladder = next((ld for ld in self._policy().ladders if ld.id == step.ladder), None)
        if ladder is None or step.stage not in [s.id for s in ladder.stages]:
            raise ValueError(f"no stage {step.stage!r} on ladder {step.ladder!r}")
        if not ladder.stage(step.stage).staff_decision:
            raise ValueError(
                f"{ladder.stage(step.stage).name} is reached by the figures, "
                "not by a staff decision"
            )
        if step.role not in ("attendance_officer", "designated_safeguarding_lead", *LEADERS):
            raise ValueError("only the attendance officer, DSL or senior leaders move a case")
        if not step.reason.strip():
            raise ValueError("say why")
        if self.state.paused:
            raise ValueError(f"the case is paused ({self.state.paused})")

    # Helpers ------------------------------------------------------------------------------

    def _policy(self) -> CasePolicy:
        if self.state.policy is None:
            raise ValueError("the case is still starting; try again in a moment")
        return self.state.policy

    def _check_staff(self, role: str) -> None:
        if self.state.closed:
            raise ValueError("the case is closed")
        if role not in STAFF_ROLES:
            raise ValueError(f"role {role!r} may not act on a case")

    def _ladder_for(self, ladder_id: str, wanted, what: str = "") -> tuple[CaseLadder, LadderState]:
        matches = [
            (ladder, self.state.ladders[ladder.id])
            for ladder in self._policy().ladders
            if (not ladder_id or ladder.id == ladder_id)
            and self.state.ladders[ladder.id].stage
            and wanted(self.state.ladders[ladder.id])
        ]
        if not matches:
            raise ValueError(f"nothing in this case is waiting for {what or 'that step'}")
        if len(matches) > 1:
            raise ValueError(
                "more than one ladder waits for that: say which ladder ("
                + ", ".join(ladder.id for ladder, _ in matches)
                + ")"
            )
        return matches[0]

    def _stages(self) -> dict[str, str]:
        return {k: v.stage for k, v in self.state.ladders.items() if v.stage}

    def _stage_summary(self) -> str:
        if not self.state.policy:
            return ""
        return "; ".join(
            f"{ladder.name}: {ladder.stage(self.state.ladders[ladder.id].stage).name}"
            for ladder in self.state.policy.ladders
            if self.state.ladders[ladder.id].stage
        )

    def _awaiting(self) -> list[str]:
        waiting = []
        if not self.state.policy:
            return waiting
        for ladder in self.state.policy.ladders:
            ls = self.state.ladders[ladder.id]
            if ls.decision_key:
                waiting.append(f"decision:{ls.decision_key}")
            if ls.meeting_needed and not ls.meeting_at:
                waiting.append(f"meeting to arrange:{ladder.id}")
            if ls.meeting_at:
                waiting.append(f"meeting outcome:{ladder.id}")
            if ls.contract_needed:
                waiting.append(f"contract:{ladder.id}")
            if ls.awaiting_la:
                waiting.append(f"LA outcome:{ladder.id}")
            if ls.review_on:
                waiting.append(f"review on {ls.review_on}:{ladder.id}")
        return waiting

    def _available_actions(self) -> list[str]:
        if self.state.closed or not self.state.policy:
            return []
        ladders = list(self.state.ladders.values())
        actions = ["resume"] if self.state.paused else ["pause", "move_to_stage"]
        checks = (
            ("schedule_meeting", lambda s: s.meeting_needed),
            ("record_meeting_outcome", lambda s: bool(s.meeting_at)),
            ("record_contract", lambda s: s.contract_needed),
            ("decide", lambda s: bool(s.decision_key)),
            ("record_la_outcome", lambda s: bool(s.awaiting_la)),
        )
        actions += [name for name, wanted in checks if any(s.stage and wanted(s) for s in ladders)]
        return actions

    def _now(self) -> datetime:
        """The case's clock (naive, the school's local time)."""
        if not self.state.anchored_at:
            return workflow.now().replace(tzinfo=None)
        since = workflow.now() - datetime.fromisoformat(self.state.anchored_at)
        return datetime.combine(_day(self.state.as_of), SWEEP_TIME) + since

    def _workflow_time(self, moment: datetime) -> datetime:
        """The workflow time at which the case's clock shows `moment`."""
        if not self.state.anchored_at:
            return moment.replace(tzinfo=UTC)
        start = datetime.combine(_day(self.state.as_of), SWEEP_TIME)
        return datetime.fromisoformat(self.state.anchored_at) + (moment - start)

    def _today(self) -> str:
        return self._now().date().isoformat()

    def _key(self, what: str) -> str:
        self.state.steps += 1
        return f"{workflow.info().workflow_id}/{self.state.steps}/{what}"

    def _note(
        self, kind: str, summary: str, actor: str = "engine", role: str = ""
    ) -> ChronologyNote:
        return ChronologyNote(
            self._key(kind),
            self._today(),
            kind,
            summary,
            actor,
            role,
            self._stage_summary(),
        )

    def _task(
        self, kind: str, summary: str, role: str, days: int = 2, due: datetime | None = None
    ) -> TaskToOpen:
        due = due or datetime.combine(_day(self._today()) + timedelta(days=days), time(16, 0))
        return TaskToOpen(self._key(kind), kind, summary, role, due.isoformat())

    async def _write(
        self, *, status: str | None = None, closed_reason: str = "", **changes
    ) -> None:
        assert self.input
        waiting = self._awaiting()
        await workflow.execute_activity_method(
            CaseActivities.apply_case_update,
            CaseUpdate(
                case_id=workflow.info().workflow_id,
                school_id=self.input.school_id,
                pupil_id=self.input.pupil_id,
                kind="attendance_case",
                opened_on=self.state.opened_on or self._today(),
                status=status
                or ("paused" if self.state.paused else "closed" if self.state.closed else "open"),
                stage=self._stage_summary(),
                next_action=waiting[0] if waiting else "",
                closed_reason=closed_reason,
                **changes,
            ),
            **ACTIVITY,
        )
