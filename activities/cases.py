"""Side effects of the case workflows: the chronology, staff tasks, the case list,
decisions, LA returns, register amendments and the penalty-notice ledger.

Every row written here carries a key chosen by the workflow step that asked for it, so a
retried activity writes nothing twice.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

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
class PenaltyNoticeResult:
    """Per parent with parental responsibility: the notice each would get, or None where
    this would be the third within the period (prosecution is considered instead)."""

    notices: list[tuple[int, int | None, int | None]]  # (contact_id, sequence, amount)
    prosecution_instead: bool


@dataclass
class PenaltyOutcomeInput:
    key: str  # the request's key
    outcome: str  # issued | paid_reduced | paid | unpaid | withdrawn
    on_day: str


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class CaseActivities:
    def __init__(self, session_factory: SessionFactory):
        self.session_factory = session_factory

    @activity.defn
    def apply_case_update(self, update_: CaseUpdate) -> None:
        """Write one step of a case: idempotent, all or nothing."""
        now = datetime.now(UTC)
        with self.session_factory() as session, session.begin():
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
            record.next_action, record.next_due = update_.next_action, _dt(update_.next_due)
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
                            due_at=datetime.fromisoformat(task.due_at),
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
                    notices.append((parent.id, existing.sequence, existing.amount))
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
                    notices.append((parent.id, None, None))
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
                notices.append((parent.id, sequence, input.amounts[sequence - 1]))
            return PenaltyNoticeResult(notices=notices, prosecution_instead=prosecution)

    @activity.defn
    def record_penalty_outcome(self, input: PenaltyOutcomeInput) -> None:
        with self.session_factory() as session, session.begin():
            session.exec(
                update(PenaltyNotice)
                .where(PenaltyNotice.key.startswith(f"{input.key}/"))
                .values(outcome=input.outcome, outcome_on=date.fromisoformat(input.on_day))
            )


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
