"""Side effects of the case workflows: the chronology, staff tasks, the case list,
decisions, LA returns, register amendments and the penalty-notice ledger.

Every row written here carries a key chosen by the workflow step that asked for it, so a
retried activity writes nothing twice.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, update
from sqlmodel import Session, select
from temporalio import activity

from database import SessionFactory
from imports.marks import MarkRow, store_marks
from models.tables import (
    CaseRecord,
    ChronologyEntry,
    Contact,
    LAReturn,
    LegalDecision,
    PenaltyNotice,
    Pupil,
    RegisterMark,
    School,
    StaffTask,
)


@dataclass
class ChronologyNote:
    key: str
    on_day: str  # ISO date
    kind: str
    summary: str
    actor: str = "engine"
    role: str = ""
    stage: str = ""
    detail: dict = field(default_factory=dict)


@dataclass
class TaskToOpen:
    key: str
    kind: str
    summary: str
    role: str
    due_at: str  # ISO datetime, UTC


@dataclass
class ReturnToRaise:
    key: str
    kind: str
    raised_on: str
    summary: str
    figure: float | None = None


@dataclass
class DecisionToAsk:
    key: str
    kind: str
    asked_on: str
    due_on: str


@dataclass
class DecisionMade:
    key: str
    status: str  # approved | declined
    decided_on: str
    decided_by: str
    reason: str


@dataclass
class CaseUpdate:
    """Everything one step of a case changes, written in one transaction."""

    case_id: str
    school_id: int
    pupil_id: int
    kind: str  # absence_episode | attendance_case
    opened_on: str
    status: str = "open"
    stage: str = ""
    next_action: str = ""
    next_due: str | None = None
    closed_reason: str = ""
    notes: list[ChronologyNote] = field(default_factory=list)
    open_tasks: list[TaskToOpen] = field(default_factory=list)
    close_task_kinds: list[str] = field(default_factory=list)  # ["*"]: every open task
    returns: list[ReturnToRaise] = field(default_factory=list)
    decisions: list[DecisionToAsk] = field(default_factory=list)
    decisions_made: list[DecisionMade] = field(default_factory=list)


@dataclass
class AmendRegisterInput:
    key: str
    school_id: int
    pupil_id: int
    sessions: list[tuple[str, str]]  # (ISO day, AM|PM) currently N
    new_code: str
    reason: str
    by: str
    role: str


@dataclass
class AmendRegisterResult:
    amended: int


@dataclass
class PenaltyNoticeInput:
    key: str
    school_id: int
    pupil_id: int
    case_id: str
    requested_on: str
    lookback_years: int
    amounts: list[int]  # by sequence: [first, second]; beyond: prosecution instead
    reduced_first: int | None


@dataclass
class ParentNotice:
    """One parent's line of a penalty-notice request; sequence and amount are None where
    prosecution is considered instead."""

    contact_id: int
    parent: str
    sequence: int | None
    amount: int | None


@dataclass
class PenaltyNoticeResult:
    """Per parent with parental responsibility: the notice each would get, or None where
    this would be the third within the period (prosecution is considered instead)."""

    notices: list[ParentNotice]
    prosecution_instead: bool


@dataclass
class PenaltyOutcomeInput:
    key: str  # the request's key
    outcome: str  # issued | paid_reduced | paid | unpaid | withdrawn
    on_day: str


def _dt(text: str | None, zone: ZoneInfo) -> datetime | None:
    """An ISO datetime; a naive one is the school's local time."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


def _school_zone(session: Session, school_id: int) -> ZoneInfo:
    from policies import load_policy

    return ZoneInfo(load_policy(session.get(School, school_id).policy).timezone)


class CaseActivities:
    def __init__(self, session_factory: SessionFactory):
        self.session_factory = session_factory

    @activity.defn
    def apply_case_update(self, update_: CaseUpdate) -> None:
        """Write one step of a case: idempotent, all or nothing."""
        now = datetime.now(UTC)
        with self.session_factory() as session, session.begin():
            zone = _school_zone(session, update_.school_id)
            record = session.get(CaseRecord, update_.case_id)
            if record is None:
                record = CaseRecord(
                    case_id=update_.case_id,
                    school_id=update_.school_id,
                    pupil_id=update_.pupil_id,
                    kind=update_.kind,
                    opened_on=date.fromisoformat(update_.opened_on),
                    status=update_.status,
                    updated_at=now,
                )
            record.status, record.stage = update_.status, update_.stage
            record.next_action, record.next_due = update_.next_action, _dt(update_.next_due, zone)
            record.closed_reason, record.updated_at = update_.closed_reason, now
            session.add(record)
            existing = _existing_keys(session, update_)
            for note in update_.notes:
                if note.key not in existing:
                    session.add(
                        ChronologyEntry(
                            key=note.key,
                            school_id=update_.school_id,
                            pupil_id=update_.pupil_id,
                            case_id=update_.case_id,
                            on_day=date.fromisoformat(note.on_day),
                            at=now,
                            kind=note.kind,
                            summary=note.summary,
                            actor=note.actor,
                            role=note.role,
                            stage=note.stage or update_.stage,
                            detail=json.dumps(note.detail) if note.detail else "",
                        )
                    )
            if update_.close_task_kinds:
                tasks = update(StaffTask).where(
                    StaffTask.case_id == update_.case_id, StaffTask.status == "open"
                )
                if "*" not in update_.close_task_kinds:
                    tasks = tasks.where(StaffTask.kind.in_(update_.close_task_kinds))
                session.exec(tasks.values(status="done", closed_at=now))
            for task in update_.open_tasks:
                if task.key not in existing:
                    session.add(
                        StaffTask(
                            key=task.key,
                            school_id=update_.school_id,
                            pupil_id=update_.pupil_id,
                            case_id=update_.case_id,
                            kind=task.kind,
                            summary=task.summary,
                            role=task.role,
                            due_at=_dt(task.due_at, zone),
                            created_at=now,
                        )
                    )
            for ret in update_.returns:
                if ret.key not in existing:
                    session.add(
                        LAReturn(
                            key=ret.key,
                            school_id=update_.school_id,
                            pupil_id=update_.pupil_id,
                            case_id=update_.case_id,
                            kind=ret.kind,
                            raised_on=date.fromisoformat(ret.raised_on),
                            figure=ret.figure,
                            summary=ret.summary,
                        )
                    )
            for ask in update_.decisions:
                if ask.key not in existing:
                    session.add(
                        LegalDecision(
                            key=ask.key,
                            school_id=update_.school_id,
                            pupil_id=update_.pupil_id,
                            case_id=update_.case_id,
                            kind=ask.kind,
                            asked_on=date.fromisoformat(ask.asked_on),
                            due_on=date.fromisoformat(ask.due_on),
                        )
                    )
            session.flush()
            for made in update_.decisions_made:
                decision = session.exec(
                    select(LegalDecision).where(LegalDecision.key == made.key)
                ).one()
                decision.status, decision.reason = made.status, made.reason
                decision.decided_on = date.fromisoformat(made.decided_on)
                decision.decided_by = made.decided_by
                session.add(decision)

    @activity.defn
    def amend_register(self, input: AmendRegisterInput) -> AmendRegisterResult:
        """Replace the episode's N marks with the code the parent's reason gives, through
        the register's amendment history. A retry finds them amended already."""
        with self.session_factory() as session, session.begin():
            pupil = session.get(Pupil, input.pupil_id)
            rows = []
            for day, half in input.sessions:
                mark = session.exec(
                    select(RegisterMark).where(
                        RegisterMark.pupil_id == input.pupil_id,
                        RegisterMark.day == date.fromisoformat(day),
                        RegisterMark.session == half,
                    )
                ).first()
                if mark is not None and mark.code == "N":
                    rows.append(
                        MarkRow(
                            len(rows) + 1,
                            pupil.upn,
                            mark.day,
                            half,
                            input.new_code,
                            reason=input.reason,
                        )
                    )
            if not rows:
                return AmendRegisterResult(amended=0)
            result = store_marks(
                session=session,
                school_id=input.school_id,
                rows=rows,
                recorded_by=input.by,
                role=input.role,
                source=f"case step {input.key}",
                kind="case",
                sha256=input.key,
            )
            return AmendRegisterResult(amended=result.amended)

    @activity.defn
    def request_penalty_notice(self, input: PenaltyNoticeInput) -> PenaltyNoticeResult:
        """Record the request in the per-parent ledger; the notices each parent already
        has in the look-back period set the sequence and amount."""
        requested = date.fromisoformat(input.requested_on)
        since = requested - timedelta(days=365 * input.lookback_years + input.lookback_years // 4)
        with self.session_factory() as session, session.begin():
            parents = session.exec(
                select(Contact)
                .where(Contact.pupil_id == input.pupil_id, Contact.parental_responsibility)
                .order_by(Contact.priority)
            ).all()
            notices = []
            prosecution = False
            for parent in parents:
                key = f"{input.key}/{parent.id}"
                existing = session.exec(
                    select(PenaltyNotice).where(PenaltyNotice.key == key)
                ).first()
                if existing is not None:
                    notices.append(
                        ParentNotice(parent.id, _name(parent), existing.sequence, existing.amount)
                    )
                    continue
                earlier = session.exec(
                    select(func.count())
                    .select_from(PenaltyNotice)
                    .where(
                        PenaltyNotice.contact_id.in_(_same_person(session, parent)),
                        PenaltyNotice.requested_on >= since,
                        PenaltyNotice.outcome != "withdrawn",
                    )
                ).one()
                sequence = earlier + 1
                if sequence > len(input.amounts):
                    prosecution = True
                    notices.append(ParentNotice(parent.id, _name(parent), None, None))
                    continue
                session.add(
                    PenaltyNotice(
                        key=key,
                        contact_id=parent.id,
                        pupil_id=input.pupil_id,
                        school_id=input.school_id,
                        case_id=input.case_id,
                        requested_on=requested,
                        sequence=sequence,
                        amount=input.amounts[sequence - 1],
                        reduced_amount=input.reduced_first if sequence == 1 else None,
                    )
                )
                notices.append(
                    ParentNotice(parent.id, _name(parent), sequence, input.amounts[sequence - 1])
                )
            return PenaltyNoticeResult(notices=notices, prosecution_instead=prosecution)

    @activity.defn
    def record_penalty_outcome(self, input: PenaltyOutcomeInput) -> None:
        with self.session_factory() as session, session.begin():
            session.exec(
                update(PenaltyNotice)
                .where(PenaltyNotice.key.startswith(f"{input.key}/"))
                .values(outcome=input.outcome, outcome_on=date.fromisoformat(input.on_day))
            )


def _name(parent: Contact) -> str:
    return " ".join(part for part in (parent.title, parent.forename, parent.surname) if part)


def _same_person(session: Session, parent: Contact):
    """Contact rows for the same parent across their children: matched on name and
    phone or email (the MIS holds one contact row per child)."""
    same = select(Contact.id).where(
        func.lower(Contact.forename) == parent.forename.lower(),
        func.lower(Contact.surname) == parent.surname.lower(),
    )
    if parent.email:
        return same.where(func.lower(Contact.email) == parent.email.lower())
    if parent.phone:
        return same.where(Contact.phone == parent.phone)
    return select(Contact.id).where(Contact.id == parent.id)


def _existing_keys(session: Session, update_: CaseUpdate) -> set[str]:
    keys = (
        [n.key for n in update_.notes]
        + [t.key for t in update_.open_tasks]
        + [r.key for r in update_.returns]
        + [d.key for d in update_.decisions]
    )
    if not keys:
        return set()
    found = set()
    for table in (ChronologyEntry, StaffTask, LAReturn, LegalDecision):
        found |= set(session.exec(select(table.key).where(table.key.in_(keys))).all())
    return found


# The school's policy as the case workflow carries it ------------------------------------


@dataclass
class CaseStage:
    id: str
    name: str
    enter_when: list[str] = field(default_factory=list)
    letter: str | None = None
    variants: list[tuple[str | None, str]] = field(default_factory=list)  # (threshold, letter)
    text_message: str | None = None
    meeting_led_by: str | None = None
    meeting_purpose: str = ""
    invite_la_officer: bool = False
    tasks: list[str] = field(default_factory=list)
    attendance_contract: bool = False
    monitoring_weeks: int | None = None
    monitoring_school_weeks: int | None = None
    on_no_improvement: str | None = None
    on_improvement: str | None = None  # a stage id or "close"
    positive_letter: str | None = None
    approver: str | None = None
    legal_step: str = "none"
    notify: list[str] = field(default_factory=list)
    staff_decision: bool = False


@dataclass
class CaseLadder:
    id: str
    name: str
    stages: list[CaseStage]
    review_months: list[int] = field(default_factory=list)
    # Last year's persistently absent pupils start the year on the first rung with this
    # letter (All Saints' September baseline); None: the ladder has no such start.
    september_letter: str | None = None

    def stage(self, stage_id: str) -> CaseStage:
        return next(s for s in self.stages if s.id == stage_id)

    def index(self, stage_id: str) -> int:
        return next(i for i, s in enumerate(self.stages) if s.id == stage_id)


@dataclass
class LatenessFollowUp:
    """What the policy has staff do when a pupil crosses a lateness threshold."""

    by: str
    tasks: list[str]


@dataclass
class CasePolicy:
    """What the attendance case needs of the school's policy, taken when the case starts so
    that editing the policy never changes the history of a running case."""

    school_name: str
    ladders: list[CaseLadder]
    pauses: dict[str, str]  # reason -> role that agrees it
    approvers: list[str]  # roles that may decide legal steps
    penalty_amounts: list[int]  # by sequence within the repeat period: first, second
    penalty_reduced_first: int
    penalty_repeat_years: int
    penalty_pay_within_days: int
    decision_reminder_days: int
    meeting_reminder_days: int
    meeting_escalate_days: int
    own_penalty_notice_ladder: bool = True
    la_advice_role: str | None = None
    lateness_rules: dict[str, LatenessFollowUp] = field(default_factory=dict)


@dataclass
class LoadCasePolicyInput:
    school_id: int


@dataclass
class ReviewInput:
    school_id: int
    pupil_id: int
    as_of: str
    since: str  # the day the stage began


@dataclass
class ReviewFigures:
    as_of: str
    rate_year: float | None
    rate_since: float | None  # attendance from `since` to `as_of`
    rate_at_start: float | None  # the year's rate on the day the stage began
    holding: list[str]


@dataclass
class ReviewDayInput:
    school_id: int
    start: str
    school_weeks: int


def case_policy(policy) -> CasePolicy:
    """The workflow's copy of a SchoolPolicy (models.policy)."""
    ladders = []
    for ladder in policy.ladders:
        stages = []
        for s in ladder.stages:
            variants = sorted(
                ((v.when, v.letter) for v in s.variants.values() if v.letter),
                key=lambda v: v[0] is None,  # the variant with no condition is the default
            )
            stages.append(
                CaseStage(
                    id=s.id,
                    name=s.name,
                    enter_when=list(s.enter_when),
                    letter=s.letter,
                    variants=variants,
                    text_message=s.text_message,
                    meeting_led_by=s.meeting.led_by.value if s.meeting else None,
                    meeting_purpose=(s.meeting.purpose or "") if s.meeting else "",
                    invite_la_officer=bool(s.meeting and s.meeting.invite_la_officer),
                    tasks=list(s.tasks),
                    attendance_contract=s.attendance_contract,
                    monitoring_weeks=s.monitoring_weeks,
                    monitoring_school_weeks=s.monitoring_school_weeks,
                    on_no_improvement=s.on_no_improvement,
                    on_improvement=s.on_improvement,
                    positive_letter=s.positive_letter,
                    approver=s.requires_approval_by.value if s.requires_approval_by else None,
                    legal_step=s.legal_step.value,
                    notify=[n.value for n in s.notify],
                    staff_decision=s.staff_decision,
                )
            )
        months = sorted({m for point in ladder.review_points for m in point.months[:1]})
        september = ladder.september_letter if ladder.september_previous_year_pa else None
        ladders.append(CaseLadder(ladder.id, ladder.name, stages, months, september))
    penalty = policy.national.penalty_notice
    amounts = [penalty.amount_pounds, penalty.second_notice_amount_pounds]
    reminders = policy.case_reminders
    return CasePolicy(
        school_name=policy.school.name,
        ladders=ladders,
        pauses={p.reason.value: p.agreed_by.value for p in policy.pauses},
        approvers=sorted({role for role in policy.approvals.values()} | {"headteacher"}),
        penalty_amounts=amounts[: penalty.notices_before_prosecution],
        penalty_reduced_first=penalty.reduced_amount_pounds,
        penalty_repeat_years=penalty.repeat_period_years,
        penalty_pay_within_days=penalty.pay_within_days,
        decision_reminder_days=reminders.decision_overdue_days,
        meeting_reminder_days=reminders.meeting_outcome_overdue_days,
        meeting_escalate_days=reminders.meeting_outcome_escalate_days,
        own_penalty_notice_ladder=policy.enforcement.own_penalty_notice_ladder,
        la_advice_role=(
            policy.enforcement.seeks_la_advice.value if policy.enforcement.seeks_la_advice else None
        ),
        lateness_rules={
            rule.when: LatenessFollowUp(rule.by.value, list(rule.tasks))
            for rule in policy.lateness.rules
        },
    )


class CasePolicyActivities:
    """Reads for the case workflow: its policy, and the figures a review judges."""

    def __init__(self, session_factory: SessionFactory):
        self.session_factory = session_factory

    @activity.defn
    def load_case_policy(self, input: LoadCasePolicyInput) -> CasePolicy:
        from models.tables import School
        from policies import load_policy

        with self.session_factory() as session:
            school = session.get(School, input.school_id)
            return case_policy(load_policy(school.policy))

    @activity.defn
    def review_figures(self, input: ReviewInput) -> ReviewFigures:
        from figures.compute import compute_figures
        from models.codes import NATIONAL_CODES
        from models.tables import School
        from policies import load_policy

        as_of, since = date.fromisoformat(input.as_of), date.fromisoformat(input.since)
        with self.session_factory() as session:
            policy = load_policy(session.get(School, input.school_id).policy)
            rules = policy.figure_rules()

            def figures_on(day: date):
                found = compute_figures(
                    session=session,
                    school_id=input.school_id,
                    as_of=day,
                    rules=rules,
                    pupil_ids=[input.pupil_id],
                )
                return found[0] if found else None

            now, start = figures_on(as_of), figures_on(since - timedelta(days=1))
            codes = session.exec(
                select(RegisterMark.code).where(
                    RegisterMark.pupil_id == input.pupil_id,
                    RegisterMark.day >= since,
                    RegisterMark.day <= as_of,
                )
            ).all()
            possible = sum(NATIONAL_CODES[c].is_possible_session for c in codes)
            present = sum(NATIONAL_CODES[c].counts_as_present for c in codes)
            return ReviewFigures(
                as_of=input.as_of,
                rate_year=now.rate_year if now else None,
                rate_since=round(100 * present / possible, 2) if possible else None,
                rate_at_start=start.rate_year if start else None,
                holding=policy.thresholds_holding(now) if now else [],
            )

    @activity.defn
    def review_day(self, input: ReviewDayInput) -> str:
        """The day `school_weeks` school weeks after `start` (holidays not counted)."""
        from models.calendar import load_calendar, week_start

        start = date.fromisoformat(input.start)
        with self.session_factory() as session:
            calendar = load_calendar(session=session, school_id=input.school_id)
        later = [w for w in calendar.school_weeks if w > week_start(start)]
        if len(later) >= input.school_weeks:
            return (later[input.school_weeks - 1] + timedelta(days=start.weekday())).isoformat()
        return (start + timedelta(weeks=input.school_weeks)).isoformat()
