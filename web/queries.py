"""What each page shows, read from SQL: one function per page, each scoped to one school.

Every function takes the school (already checked against the user's schools by the
caller) and filters on its ID, so no query here can reach another school's pupils.
Figures come from the register's weekly rows, as the sweep's do.
"""

import contextlib
import logging
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, text
from sqlmodel import Session, col, select

from figures.compute import compute_figures
from models.calendar import SchoolCalendar, academic_year_of, load_calendar, week_start
from models.codes import NATIONAL_CODES
from models.figures import FigureRules, PupilFigures
from models.letters import Letter, Outbox
from models.policy import SchoolPolicy, minutes
from models.tables import (
    CaseRecord,
    ChronologyEntry,
    Contact,
    LAReturn,
    LegalDecision,
    MarkAmendment,
    Pupil,
    RegisterMark,
    School,
    StaffTask,
    ThresholdState,
)
from policies import load_policy

CALL_KINDS = ("call_parents", "text_parents", "email_parents", "call_emergency_contacts")
VISIT_KINDS = ("home_visit", "calling_card")
log = logging.getLogger(__name__)
REFERRAL_ACTIONS = ("cme_referral", "missing_persons_referral")
# How many school days before the referral day an episode shows on the Today page.
REFERRAL_WARNING_DAYS = 2
COHORTS: dict[str, str] = {
    "send": "SEND",
    "fsm": "Free school meals",
    "social_worker": "Social worker",
    "looked_after": "Looked after",
}
SESSIONS = ("AM", "PM")


# --------------------------------------------------------------------------- the school


@dataclass
class SchoolContext:
    """A school as every page needs it: its policy, calendar and the days that matter."""

    school: School
    policy: SchoolPolicy
    calendar: SchoolCalendar
    today: date  # in the school's time zone
    as_of: date  # the last day with register marks, up to today: what figures are as of
    zone: ZoneInfo


_calendars: dict[int, tuple[float, SchoolCalendar]] = {}
_calendar_lock = threading.Lock()
CALENDAR_MAX_AGE = 300.0  # seconds: term dates change a few times a year


def school_calendar(session: Session, school_id: int) -> SchoolCalendar:
    """The school's calendar, kept for a few minutes (building it reads bank holidays)."""
    now = time.monotonic()
    with _calendar_lock:
        found = _calendars.get(school_id)
    if found and now - found[0] < CALENDAR_MAX_AGE:
        return found[1]
    calendar = load_calendar(session=session, school_id=school_id)
    with _calendar_lock:
        _calendars[school_id] = (now, calendar)
    return calendar


def last_register_day(session: Session, school_id: int, today: date) -> date | None:
    """The newest day with marks up to `today`: the newest week with marks (a seek per
    pupil in the weekly register), then that week's marks (a seek per pupil in the
    register's week-first index)."""
    connection = session.connection()
    params = {"school_id": school_id, "today": today.isoformat()}
    week = connection.execute(
        text(
            "SELECT MAX((SELECT MAX(w.week_start) FROM registerweek w"
            " WHERE w.pupil_id = p.id AND w.week_start <= :today))"
            " FROM pupil p WHERE p.school_id = :school_id"
        ),
        params,
    ).scalar()
    if week is None:
        return None
    found = connection.execute(
        text(
            "SELECT MAX(m.day) FROM pupil p JOIN registermark m"
            " ON m.week_start = :week AND m.pupil_id = p.id"
            " WHERE p.school_id = :school_id AND m.day <= :today"
        ),
        {**params, "week": week},
    ).scalar()
    if found is None:  # that week's marks are all after today: look further back
        found = connection.execute(
            text(
                "SELECT MAX((SELECT MAX(m.day) FROM registermark m"
                " WHERE m.pupil_id = p.id AND m.day <= :today))"
                " FROM pupil p WHERE p.school_id = :school_id"
            ),
            params,
        ).scalar()
    return date.fromisoformat(str(found)[:10]) if found else None


def school_context(session: Session, school: School, now: datetime | None = None) -> SchoolContext:
    policy = load_policy(school.policy)
    zone = ZoneInfo(policy.timezone)
    today = (now or datetime.now(UTC)).astimezone(zone).date()
    calendar = school_calendar(session, school.id)
    as_of = last_register_day(session, school.id, today) or today
    return SchoolContext(school, policy, calendar, today, as_of, zone)


# --------------------------------------------------------------------------- pupils


@dataclass
class ContactLine:
    name: str
    relationship: str
    phone: str
    email: str
    address: str
    postcode: str
    parental_responsibility: bool


def pupil_name(pupil: Pupil) -> str:
    return f"{pupil.forename} {pupil.surname}"


def flags_of(pupil: Pupil) -> list[str]:
    """The cohorts and safeguarding flags a member of staff should see at a glance."""
    flags = []
    if pupil.send or pupil.ehcp:
        flags.append("EHCP" if pupil.ehcp else "SEND")
    if pupil.fsm:
        flags.append("FSM")
    if pupil.social_worker:
        flags.append("Social worker")
    if pupil.child_protection_plan:
        flags.append("CP plan")
    if pupil.looked_after:
        flags.append("Looked after")
    if pupil.young_carer:
        flags.append("Young carer")
    if pupil.part_time_timetable:
        flags.append("Part-time timetable")
    return flags


def year_name(year_group: int) -> str:
    return "Reception" if year_group == 0 else f"Year {year_group}"


def contacts_of(session: Session, pupil_ids: list[int]) -> dict[int, list[ContactLine]]:
    if not pupil_ids:
        return {}
    rows = session.exec(  # the columns shown, not whole rows: pages list many pupils
        select(
            Contact.pupil_id,
            Contact.title,
            Contact.forename,
            Contact.surname,
            Contact.relationship,
            Contact.phone,
            Contact.email,
            Contact.address,
            Contact.postcode,
            Contact.parental_responsibility,
        )
        .where(col(Contact.pupil_id).in_(pupil_ids))
        .order_by(Contact.pupil_id, Contact.priority)
    ).all()
    found: dict[int, list[ContactLine]] = defaultdict(list)
    for pupil_id, title, forename, surname, *rest in rows:
        name = " ".join(part for part in (title, forename, surname) if part)
        found[pupil_id].append(ContactLine(name, *rest))
    return found


def pupils_by_id(session: Session, school_id: int, pupil_ids: set[int]) -> dict[int, Pupil]:
    if not pupil_ids:
        return {}
    rows = session.exec(
        select(Pupil).where(Pupil.school_id == school_id, col(Pupil.id).in_(pupil_ids))
    ).all()
    return {p.id: p for p in rows}


# --------------------------------------------------------------------------- Today


@dataclass
class AbsenceLine:
    pupil: Pupil
    sessions: list[str]
    contacts: list[ContactLine]
    episode_id: str | None


@dataclass
class TaskLine:
    task: StaffTask
    pupil: Pupil
    contacts: list[ContactLine]
    overdue: bool


@dataclass
class EpisodeLine:
    record: CaseRecord
    pupil: Pupil
    day: int
    referral_day: int
    referral: str


@dataclass
class TodayPage:
    day: date  # the register shown: today's, or the last one taken
    closes: dict[str, str]  # register close times
    closed: list[str]  # the sessions of `day` whose register has closed (AM, PM)
    absences: list[AbsenceLine]
    calls: list[TaskLine]
    visits: list[TaskLine]
    approaching: list[EpisodeLine]


def _referral_day(policy: SchoolPolicy, pupil: Pupil) -> tuple[int, str] | None:
    """The day of absence on which the school refers the pupil to the LA (or missing
    persons), on the path the pupil is on."""
    episode = policy.absence_episode
    paths = [episode]
    variant = episode.safeguarding
    flagged = {
        "social_worker": pupil.social_worker,
        "child_protection_plan": pupil.child_protection_plan,
        "looked_after": pupil.looked_after,
        "send": pupil.send,
    }
    if variant and any(flagged.get(str(flag)) for flag in variant.applies_to):
        paths.insert(0, variant)
    for path in paths:
        days = [(path.day_of(a), a) for a in REFERRAL_ACTIONS if path.day_of(a)]
        if days:
            return min(days)
    return None


def _episode_day(stage: str) -> int | None:
    match = re.fullmatch(r"day (\d+)", stage or "")
    return int(match.group(1)) if match else None


def today_page(session: Session, ctx: SchoolContext, now: datetime | None = None) -> TodayPage:
    now = now or datetime.now(UTC)
    school_id, day = ctx.school.id, ctx.as_of
    marks = session.exec(
        select(RegisterMark.pupil_id, RegisterMark.session)
        .join(Pupil, Pupil.id == RegisterMark.pupil_id)
        .where(
            Pupil.school_id == school_id,
            RegisterMark.week_start == week_start(day),  # the register's index leads with it
            RegisterMark.day == day,
            RegisterMark.code == "N",
        )
    ).all()
    # An N is unexplained once its register has closed: before then the office is still
    # taking the register, and today's sessions not yet closed are left out.
    register = ctx.policy.register
    closed = {"AM", "PM"}
    if day == ctx.today:
        local = now.astimezone(ctx.zone)
        at = local.hour * 60 + local.minute
        closed = {
            half
            for half, times in (("AM", register.am), ("PM", register.pm))
            if at >= minutes(times.closes)
        }
    sessions: dict[int, list[str]] = defaultdict(list)
    for pupil_id, half in marks:
        if str(half) in closed:
            sessions[pupil_id].append(str(half))
    end_of_day = datetime.combine(ctx.today + timedelta(days=1), clock(0), ctx.zone)
    tasks = session.exec(
        select(StaffTask)
        .where(
            StaffTask.school_id == school_id,
            StaffTask.status == "open",
            col(StaffTask.kind).in_(CALL_KINDS + VISIT_KINDS),
        )
        .order_by(StaffTask.due_at, StaffTask.id)
    ).all()
    episodes = session.exec(
        select(CaseRecord).where(
            CaseRecord.school_id == school_id,
            CaseRecord.kind == "absence_episode",
            CaseRecord.status == "open",
        )
    ).all()
    wanted = set(sessions) | {t.pupil_id for t in tasks} | {e.pupil_id for e in episodes}
    pupils = pupils_by_id(session, school_id, wanted)
    contacts = contacts_of(session, sorted(wanted))
    episode_of = {e.pupil_id: e.case_id for e in episodes}

    absences = [
        AbsenceLine(pupils[p], sorted(s), contacts.get(p, []), episode_of.get(p))
        for p, s in sessions.items()
        if p in pupils
    ]
    absences.sort(key=lambda a: (a.pupil.surname, a.pupil.forename))

    def line(task: StaffTask) -> TaskLine:
        due = task.due_at if task.due_at.tzinfo else task.due_at.replace(tzinfo=UTC)
        return TaskLine(task, pupils[task.pupil_id], contacts.get(task.pupil_id, []), due < now)

    def due_by_today(task: StaffTask) -> bool:
        due = task.due_at if task.due_at.tzinfo else task.due_at.replace(tzinfo=UTC)
        return due < end_of_day

    calls = [
        line(t) for t in tasks if t.kind in CALL_KINDS and due_by_today(t) and t.pupil_id in pupils
    ]
    visits = [line(t) for t in tasks if t.kind in VISIT_KINDS and t.pupil_id in pupils]
    approaching = []
    for record in episodes:
        pupil = pupils.get(record.pupil_id)
        days = _episode_day(record.stage)
        referral = _referral_day(ctx.policy, pupil) if pupil else None
        if pupil and days and referral and days >= referral[0] - REFERRAL_WARNING_DAYS:
            approaching.append(EpisodeLine(record, pupil, days, referral[0], referral[1]))
    approaching.sort(key=lambda e: e.referral_day - e.day)
    return TodayPage(
        day=day,
        closed=sorted(closed),
        closes={"AM": register.am.closes, "PM": register.pm.closes},
        absences=absences,
        calls=calls,
        visits=visits,
        approaching=approaching,
    )


# --------------------------------------------------------------------------- Caseload


@dataclass(slots=True)
class CaseLine:
    """A row of the caseload: the case's and its pupil's columns the page shows."""

    case_id: str
    kind: str
    status: str
    stage: str
    next_action: str
    next_due: datetime | None
    overdue: bool
    forename: str
    surname: str
    year_group: int
    flags: list[str]


@dataclass
class CaseloadPage:
    lines: list[CaseLine]
    stages: list[tuple[str, int]]  # every open stage and how many cases are at it
    year_groups: list[int]
    total: int


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _in_cohort(pupil: Any, cohort: str | None) -> bool:
    if cohort == "send":
        return bool(pupil.send or pupil.ehcp)
    return bool(getattr(pupil, cohort)) if cohort in COHORTS else True


def caseload_page(
    session: Session,
    school_id: int,
    *,
    year_group: int | None = None,
    cohort: str | None = None,
    stage: str | None = None,
    kind: str | None = None,
    now: datetime | None = None,
) -> CaseloadPage:
    """Open cases, overdue first, then by due date; filtered by year group and cohort.
    Every open case is read (the filters' choices count them all), as plain columns:
    a few hundred rows, filtered here."""
    now = now or datetime.now(UTC)
    rows = session.exec(
        select(
            CaseRecord.case_id,
            CaseRecord.kind,
            CaseRecord.status,
            CaseRecord.stage,
            CaseRecord.next_action,
            CaseRecord.next_due,
            Pupil.forename,
            Pupil.surname,
            Pupil.year_group,
            Pupil.send,
            Pupil.ehcp,
            Pupil.fsm,
            Pupil.social_worker,
            Pupil.child_protection_plan,
            Pupil.looked_after,
            Pupil.young_carer,
            Pupil.part_time_timetable,
        )
        .join(Pupil, Pupil.id == CaseRecord.pupil_id)
        .where(
            CaseRecord.school_id == school_id,
            Pupil.school_id == school_id,
            col(CaseRecord.status).in_(("open", "paused")),
        )
    ).all()
    stages = Counter(row.stage or "(no stage yet)" for row in rows)
    years = sorted({row.year_group for row in rows})
    wanted_stage = None if not stage else ("" if stage == "(no stage yet)" else stage)
    lines = []
    for row in rows:
        if (
            (year_group is not None and row.year_group != year_group)
            or not _in_cohort(row, cohort)
            or (wanted_stage is not None and row.stage != wanted_stage)
            or (kind and row.kind != kind)
        ):
            continue
        due = _aware(row.next_due)
        lines.append(
            CaseLine(
                row.case_id,
                row.kind,
                row.status,
                row.stage,
                row.next_action,
                due,
                bool(due and due < now),
                row.forename,
                row.surname,
                row.year_group,
                flags_of(row),
            )
        )
    far = datetime.max.replace(tzinfo=UTC)
    lines.sort(key=lambda c: (not c.overdue, c.next_due or far, c.surname))
    return CaseloadPage(lines, sorted(stages.items()), years, len(rows))


# --------------------------------------------------------------------------- Case


@dataclass
class RegisterWeekLine:
    week_start: date
    cells: list[tuple[date, str, str, str]]  # (day, session, code, amended-from)


@dataclass
class WeekPoint:
    week_start: date
    possible: int
    present: int

    @property
    def rate(self) -> float | None:
        return 100.0 * self.present / self.possible if self.possible else None


@dataclass
class LetterLine:
    letter: Letter
    copies: list[Outbox]


@dataclass
class CasePage:
    record: CaseRecord
    pupil: Pupil
    flags: list[str]
    contacts: list[ContactLine]
    figures: PupilFigures | None
    thresholds: list[str]
    weeks: list[WeekPoint]
    register: list[RegisterWeekLine]
    codes_used: list[tuple[str, str]]
    chronology: list[ChronologyEntry]
    letters: list[LetterLine]
    tasks: list[StaffTask]
    decisions: list[LegalDecision]
    other_cases: list[CaseRecord]


def figures_of(
    session: Session, ctx: SchoolContext, pupil_ids: list[int], as_of: date | None = None
) -> dict[int, PupilFigures]:
    """The figures of these pupils (those on roll), by pupil ID: computed for them alone,
    so that a case or the approvals queue does not compute the whole school's."""
    if not pupil_ids:
        return {}
    rows = compute_figures(
        session=session,
        school_id=ctx.school.id,
        as_of=as_of or ctx.as_of,
        rules=ctx.policy.figure_rules(),
        calendar=ctx.calendar,
        pupil_ids=pupil_ids,
    )
    return {f.pupil_id: f for f in rows}


def pupil_figures(
    session: Session, ctx: SchoolContext, pupil_id: int, as_of: date | None = None
) -> PupilFigures | None:
    return figures_of(session, ctx, [pupil_id], as_of).get(pupil_id)


def year_first_day(ctx: SchoolContext) -> date:
    return ctx.calendar.year_start(ctx.as_of) or date(academic_year_of(ctx.as_of), 9, 1)


def register_weeks(
    session: Session, pupil_id: int, first: date, last: date
) -> tuple[list[RegisterWeekLine], list[tuple[str, str]]]:
    """The pupil's register from `first` to `last`, a row per week, with each amended
    mark's original code."""
    marks = session.exec(
        select(RegisterMark.day, RegisterMark.session, RegisterMark.code).where(
            RegisterMark.pupil_id == pupil_id,
            RegisterMark.day >= first,
            RegisterMark.day <= last,
        )
    ).all()
    amended = {
        (a.day, str(a.session)): a.original_code
        for a in session.exec(
            select(MarkAmendment)
            .where(MarkAmendment.pupil_id == pupil_id, MarkAmendment.day >= first)
            .order_by(MarkAmendment.amended_at.desc())  # type: ignore[attr-defined]
        ).all()
    }
    by_day = {(d, str(s)): c for d, s, c in marks}
    weeks: list[RegisterWeekLine] = []
    used: set[str] = set()
    monday = week_start(first)
    while monday <= last:
        cells = []
        for offset in range(5):
            day = monday + timedelta(days=offset)
            for half in SESSIONS:
                code = by_day.get((day, half), "")
                used.add(code)
                cells.append((day, half, code, amended.get((day, half), "")))
        if any(c[2] for c in cells):
            weeks.append(RegisterWeekLine(monday, cells))
        monday += timedelta(days=7)
    codes = [(c, NATIONAL_CODES[c].meaning) for c in NATIONAL_CODES if c in used]
    return weeks, codes


def pupil_weeks(session: Session, pupil_id: int, first: date, last: date) -> list[WeekPoint]:
    rows = session.connection().execute(
        text(
            "SELECT week_start, possible, present FROM registerweek"
            " WHERE pupil_id = :pupil_id AND week_start >= :first AND week_start <= :last"
            " ORDER BY week_start"
        ),
        {"pupil_id": pupil_id, "first": week_start(first), "last": last},
    )
    return [WeekPoint(date.fromisoformat(str(w)[:10]), p, pr) for w, p, pr in rows]


def letters_of(session: Session, pupil_id: int) -> list[LetterLine]:
    letters = session.exec(
        select(Letter)
        .where(Letter.pupil_id == pupil_id)
        .order_by(Letter.written_on.desc(), Letter.id.desc())  # type: ignore[attr-defined]
    ).all()
    if not letters:
        return []
    copies: dict[int, list[Outbox]] = defaultdict(list)
    for row in session.exec(
        select(Outbox).where(col(Outbox.letter_id).in_([x.id for x in letters])).order_by(Outbox.id)
    ).all():
        copies[row.letter_id].append(row)
    return [LetterLine(x, copies[x.id]) for x in letters]


def case_page(session: Session, ctx: SchoolContext, record: CaseRecord) -> CasePage:
    pupil = session.get(Pupil, record.pupil_id)
    assert pupil is not None and pupil.school_id == ctx.school.id
    first = year_first_day(ctx)
    figures = pupil_figures(session, ctx, pupil.id) if pupil.on_roll else None
    register, codes = register_weeks(session, pupil.id, first, ctx.as_of)
    chronology = session.exec(
        select(ChronologyEntry)
        .where(ChronologyEntry.pupil_id == pupil.id, ChronologyEntry.school_id == ctx.school.id)
        .order_by(ChronologyEntry.at.desc(), ChronologyEntry.id.desc())  # type: ignore[attr-defined]
    ).all()
    tasks = session.exec(
        select(StaffTask)
        .where(StaffTask.case_id == record.case_id, StaffTask.status == "open")
        .order_by(StaffTask.due_at)
    ).all()
    decisions = session.exec(
        select(LegalDecision)
        .where(LegalDecision.case_id == record.case_id)
        .order_by(LegalDecision.asked_on.desc())  # type: ignore[attr-defined]
    ).all()
    others = session.exec(
        select(CaseRecord)
        .where(CaseRecord.pupil_id == pupil.id, CaseRecord.case_id != record.case_id)
        .order_by(CaseRecord.opened_on.desc())  # type: ignore[attr-defined]
    ).all()
    return CasePage(
        record=record,
        pupil=pupil,
        flags=flags_of(pupil),
        contacts=contacts_of(session, [pupil.id]).get(pupil.id, []),
        figures=figures,
        thresholds=ctx.policy.thresholds_holding(figures) if figures else [],
        weeks=pupil_weeks(session, pupil.id, first, ctx.as_of),
        register=register,
        codes_used=codes,
        chronology=list(chronology),
        letters=letters_of(session, pupil.id),
        tasks=list(tasks),
        decisions=list(decisions),
        other_cases=list(others),
    )


def letter_of(session: Session, school_id: int, pupil_id: int, letter_id: int) -> Letter | None:
    letter = session.get(Letter, letter_id)
    if letter is None or letter.school_id != school_id or letter.pupil_id != pupil_id:
        return None
    return letter


def first_copy(session: Session, letter_id: int) -> Outbox | None:
    return session.exec(
        select(Outbox).where(Outbox.letter_id == letter_id).order_by(Outbox.id)
    ).first()


# --------------------------------------------------------------------------- Approvals


@dataclass
class DecisionLine:
    decision: LegalDecision
    pupil: Pupil
    figures: PupilFigures | None
    chronology: list[ChronologyEntry]
    letters: int
    overdue: bool
    stage: str


@dataclass
class ThresholdLine:
    pupil: Pupil
    since: date
    value: float | None
    case_id: str | None


@dataclass
class ApprovalsPage:
    awaiting: list[DecisionLine]
    national: list[ThresholdLine]  # over the National Framework threshold, no decision yet
    decided: list[tuple[LegalDecision, Pupil]]


NATIONAL_THRESHOLD = "penalty_notice_consideration"


def approvals_page(session: Session, ctx: SchoolContext) -> ApprovalsPage:
    school_id = ctx.school.id
    awaiting = session.exec(
        select(LegalDecision)
        .where(LegalDecision.school_id == school_id, LegalDecision.status == "awaiting")
        .order_by(LegalDecision.due_on, LegalDecision.id)
    ).all()
    decided = session.exec(
        select(LegalDecision)
        .where(LegalDecision.school_id == school_id, LegalDecision.status != "awaiting")
        .order_by(LegalDecision.decided_on.desc(), LegalDecision.id.desc())  # type: ignore[union-attr]
        .limit(20)
    ).all()
    over = session.exec(
        select(ThresholdState)
        .join(Pupil, Pupil.id == ThresholdState.pupil_id)
        .where(
            Pupil.school_id == school_id,
            ThresholdState.threshold == NATIONAL_THRESHOLD,
            ThresholdState.active,
        )
    ).all()
    # A pupil over the threshold with a decision recorded since is no longer waiting.
    recorded = {
        (d.pupil_id, d.asked_on)
        for d in session.exec(
            select(LegalDecision).where(
                LegalDecision.school_id == school_id,
                col(LegalDecision.pupil_id).in_([s.pupil_id for s in over]),
            )
        ).all()
    }
    waiting = [s for s in over if not any(p == s.pupil_id and on >= s.since for p, on in recorded)]
    wanted = (
        {d.pupil_id for d in awaiting}
        | {d.pupil_id for d in decided}
        | {s.pupil_id for s in waiting}
    )
    pupils = pupils_by_id(session, school_id, wanted)
    stages = dict(
        session.exec(
            select(CaseRecord.case_id, CaseRecord.stage).where(
                col(CaseRecord.case_id).in_([d.case_id for d in awaiting])
            )
        ).all()
    )
    cases_of = dict(
        session.exec(
            select(CaseRecord.pupil_id, CaseRecord.case_id).where(
                CaseRecord.school_id == school_id,
                CaseRecord.kind == "attendance_case",
                col(CaseRecord.pupil_id).in_([s.pupil_id for s in waiting]),
            )
        ).all()
    )
    figures = figures_of(
        session, ctx, sorted({d.pupil_id for d in awaiting if d.pupil_id in pupils})
    )
    lines = []
    for decision in awaiting:
        pupil = pupils.get(decision.pupil_id)
        if pupil is None:
            continue
        chronology = session.exec(
            select(ChronologyEntry)
            .where(ChronologyEntry.pupil_id == pupil.id, ChronologyEntry.school_id == school_id)
            .order_by(ChronologyEntry.at.desc(), ChronologyEntry.id.desc())  # type: ignore[attr-defined]
            .limit(8)
        ).all()
        letters = session.exec(
            select(func.count()).select_from(Letter).where(Letter.pupil_id == pupil.id)
        ).one()
        lines.append(
            DecisionLine(
                decision,
                pupil,
                figures.get(pupil.id) if pupil.on_roll else None,
                list(chronology),
                letters,
                decision.due_on < ctx.today,
                stages.get(decision.case_id, ""),
            )
        )
    return ApprovalsPage(
        awaiting=lines,
        national=[
            ThresholdLine(pupils[s.pupil_id], s.since, s.value, cases_of.get(s.pupil_id))
            for s in waiting
            if s.pupil_id in pupils
        ],
        decided=[(d, pupils[d.pupil_id]) for d in decided if d.pupil_id in pupils],
    )


# --------------------------------------------------------------------------- School


@dataclass
class TrendPoint:
    week_start: date
    rate: float | None  # attendance that week
    persistent: int  # PA pupils as of the week's end
    severe: int


@dataclass
class CohortLine:
    name: str
    pupils: int
    rate: float | None
    persistent: int
    severe: int

    @property
    def persistent_share(self) -> float | None:
        return 100.0 * self.persistent / self.pupils if self.pupils else None


@dataclass
class SchoolPage:
    pupils: int
    rate: float | None
    persistent: int
    severe: int
    trend: list[TrendPoint]
    cohorts: list[CohortLine]
    codes: list[tuple[str, str, int, str]]  # (code, meaning, sessions, category)
    returns_due: list[tuple[LAReturn, Pupil | None]]
    returns_counts: dict[str, int]
    cases_by_stage: list[tuple[str, str, int]]  # (kind, stage, open cases)
    decisions: dict[str, int]  # awaiting / approved / declined this year
    year_start: date


# The School page's register figures, kept per school and brought up to date from what
# changed since they were counted (see RegisterCount), so that the page after an import
# or a case step reads that change rather than the whole year's register.
NO_WEEK = 255  # in a pupil's weekly figures: no weekly row for that week
# More pupils than this share of the roll joining or leaving it at once: count it all again.
ROLL_CHANGE_RECOUNT = 0.25


@dataclass
class RegisterCount:
    """One school's register from the year's first day on, as the School page counts it:
    sessions per code and day of the pupils on roll, and each pupil's possible and present
    sessions per week. `seen` is the state of the database it was counted at."""

    first: date
    seen: tuple[int, ...]  # see register_version
    roll: dict[int, tuple[int, ...]]  # on roll: SEND, FSM, social worker, looked after (0/1)
    codes: dict[date, Counter[str]]
    weeks: list[date]  # every week from the first one, in order
    possible: dict[int, bytearray]  # per pupil on roll, a week each (NO_WEEK: no row)
    present: dict[int, bytearray]
    derived: dict[tuple, dict[str, Any]] = field(default_factory=dict)  # by (as of, rules)


# Kept by (database, school): a school's ID means nothing outside its database.
_counts: dict[tuple[str, int], RegisterCount] = {}
_counts_lock = threading.Lock()
_school_locks: dict[tuple[str, int], threading.Lock] = defaultdict(threading.Lock)


def register_version(connection: Any, school_id: int) -> tuple[int, ...]:
    """What the School page's count depends on, in one statement: the newest batch of
    marks and amendment (of any school), the school's batches (counted, the newest) and its
    roll with the pupils' cohorts (counted, and a sum over their IDs and flags, so that a
    pupil leaving or joining or changing cohort is seen even without a batch)."""
    row = connection.execute(
        text(
            "SELECT (SELECT MAX(id) FROM importbatch), (SELECT MAX(id) FROM markamendment),"
            " (SELECT COUNT(*) FROM importbatch WHERE school_id = :school_id),"
            " (SELECT MAX(id) FROM importbatch WHERE school_id = :school_id),"
            " COUNT(*), SUM(id * (1 + 2 * (send OR ehcp) + 4 * fsm + 8 * social_worker"
            " + 16 * looked_after))"
            " FROM pupil WHERE school_id = :school_id AND on_roll"
        ),
        {"school_id": school_id},
    ).one()
    return tuple(int(value or 0) for value in row)


@contextlib.contextmanager
def _one_snapshot(session: Session) -> Iterator[Any]:
    """A connection of its own whose reads all see one state of the database. SQLite's
    driver begins no transaction for a read, so without BEGIN each statement would see
    the latest commit, and a count could take half of an import."""
    with session.get_bind().connect() as connection:
        if connection.dialect.name == "sqlite":
            if not connection.connection.dbapi_connection.in_transaction:
                connection.exec_driver_sql("BEGIN")
        else:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        yield connection


def _roll(connection: Any, school_id: int) -> dict[int, tuple[int, ...]]:
    rows = connection.execute(
        text(
            "SELECT id, send OR ehcp, fsm, social_worker, looked_after FROM pupil"
            " WHERE school_id = :school_id AND on_roll"
        ),
        {"school_id": school_id},
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def _weeks_between(first: date, last: date) -> list[date]:
    weeks, monday = [], week_start(first)
    while monday <= last:
        weeks.append(monday)
        monday += timedelta(days=7)
    return weeks


# The School page's reads of the register: these three functions.


def _changed_days(
    connection: Any, school_id: int, seen: tuple[int, ...], now: tuple[int, ...]
) -> set[date]:
    """The days the school's batches after `seen` up to `now` wrote marks on (every day
    from each batch's first to its last), and the days of its amendments."""
    ranges = connection.execute(
        text(
            "SELECT first_day, last_day FROM importbatch"
            " WHERE school_id = :school_id AND id > :batches AND id <= :batches_now"
            " AND first_day IS NOT NULL"
        ),
        {"school_id": school_id, "batches": seen[0], "batches_now": now[0]},
    ).all()
    amended = connection.execute(
        text(
            "SELECT DISTINCT a.day FROM markamendment a JOIN pupil p ON p.id = a.pupil_id"
            " WHERE p.school_id = :school_id AND a.id > :amendments AND a.id <= :amendments_now"
        ),
        {"school_id": school_id, "amendments": seen[1], "amendments_now": now[1]},
    ).all()
    days = {date.fromisoformat(str(d)[:10]) for (d,) in amended}
    for first, last in ranges:
        day, last = date.fromisoformat(str(first)[:10]), date.fromisoformat(str(last)[:10])
        while day <= last:
            days.add(day)
            day += timedelta(days=1)
    return days


def _code_counts(
    connection: Any,
    school_id: int,
    first: date,
    *,
    days: list[date] | None = None,
    pupil_ids: set[int] | None = None,
) -> list[tuple[date, str, int]]:
    """Sessions per day and code from `first` on: of the pupils on roll on these `days`,
    or of these pupils (on roll or not) on every day. The week leads the register's
    index, so each week is named."""
    if days is not None:
        weeks = sorted({week_start(d) for d in days})
        which = "p.on_roll AND m.day IN ({})".format(", ".join(f":d{n}" for n in range(len(days))))
        params: dict[str, Any] = {f"d{n}": d.isoformat() for n, d in enumerate(days)}
    else:
        newest = connection.execute(
            text("SELECT MAX(last_day) FROM importbatch WHERE school_id = :school_id"),
            {"school_id": school_id},
        ).scalar()
        weeks = _weeks_between(first, date.fromisoformat(str(newest)[:10])) if newest else []
        ids = sorted(pupil_ids) if pupil_ids is not None else []
        which = f"p.id IN ({', '.join(str(int(i)) for i in ids)})" if ids else "p.on_roll"
        params = {}
    if not weeks or (pupil_ids is not None and not pupil_ids):
        return []
    in_weeks = ", ".join(f":w{n}" for n in range(len(weeks)))
    params.update({f"w{n}": w.isoformat() for n, w in enumerate(weeks)})
    rows = connection.execute(
        text(
            "SELECT m.day, m.code, COUNT(*) FROM registermark m"
            " JOIN pupil p ON p.id = m.pupil_id"
            f" WHERE p.school_id = :school_id AND {which}"
            f" AND m.week_start IN ({in_weeks}) AND m.day >= :first"
            " GROUP BY m.day, m.code"
        ),
        {**params, "school_id": school_id, "first": first.isoformat()},
    ).all()
    return [(date.fromisoformat(str(d)[:10]), code, n) for d, code, n in rows]


def _week_totals(
    connection: Any,
    school_id: int,
    first: date,
    *,
    weeks: list[date] | None = None,
    pupil_ids: set[int] | None = None,
) -> list[tuple[int, date, int, int]]:
    """(pupil, week, possible, present) from the weekly register from `first`'s week on:
    of the pupils on roll in these `weeks`, or of these pupils in every week."""
    params: dict[str, Any] = {"school_id": school_id, "first": week_start(first).isoformat()}
    which = "p.on_roll"
    if pupil_ids is not None:
        if not pupil_ids:
            return []
        which = f"p.id IN ({', '.join(str(int(i)) for i in sorted(pupil_ids))})"
    if weeks is not None:
        if not weeks:
            return []
        which += " AND rw.week_start IN ({})".format(", ".join(f":w{n}" for n in range(len(weeks))))
        params.update({f"w{n}": w.isoformat() for n, w in enumerate(weeks)})
    rows = connection.execute(
        text(
            "SELECT rw.pupil_id, rw.week_start, rw.possible, rw.present"
            " FROM registerweek rw JOIN pupil p ON p.id = rw.pupil_id"
            f" WHERE p.school_id = :school_id AND {which} AND rw.week_start >= :first"
        ),
        params,
    ).all()
    return [(p, date.fromisoformat(str(w)[:10]), pos, pre) for p, w, pos, pre in rows]


def _put_weeks(count: RegisterCount, rows: list[tuple[int, date, int, int]]) -> None:
    """Write weekly rows into the count's per-pupil arrays, adding weeks as they come."""
    first_week = week_start(count.first)
    for pupil_id, week, possible, present in rows:
        index = (week - first_week).days // 7
        if index >= len(count.weeks):
            _grow(count, week)
        if pupil_id in count.possible:
            count.possible[pupil_id][index] = possible
            count.present[pupil_id][index] = present


def _grow(count: RegisterCount, last: date) -> None:
    more = len(_weeks_between(count.first, last)) - len(count.weeks)
    if more <= 0:
        return
    count.weeks = _weeks_between(count.first, last)
    for figures in (count.possible, count.present):
        for weekly in figures.values():
            weekly.extend(bytes([NO_WEEK]) * more)


def _count_all(connection: Any, school_id: int, first: date, seen: tuple) -> RegisterCount:
    roll = _roll(connection, school_id)
    count = RegisterCount(first, seen, roll, defaultdict(Counter), [], {}, {})
    for day, code, n in _code_counts(connection, school_id, first):
        count.codes[day][code] += n
    count.possible = {p: bytearray() for p in roll}
    count.present = {p: bytearray() for p in roll}
    _put_weeks(count, _week_totals(connection, school_id, first))
    return count


def _count_changes(
    connection: Any, count: RegisterCount, school_id: int, seen: tuple
) -> RegisterCount:
    """Bring the count up to `seen`: the days changed since are counted again whole,
    and the marks of pupils who joined or left the roll are added or taken away."""
    first = count.first
    # The version's last two figures are the roll's: the same, the roll has not changed.
    roll = count.roll if seen[-2:] == count.seen[-2:] else _roll(connection, school_id)
    joined, left = roll.keys() - count.roll.keys(), count.roll.keys() - roll.keys()
    if len(joined) + len(left) > ROLL_CHANGE_RECOUNT * max(len(roll), 1):
        return _count_all(connection, school_id, first, seen)
    days = sorted(d for d in _changed_days(connection, school_id, count.seen, seen) if d >= first)
    for day in days:
        count.codes.pop(day, None)
    for day, code, n in _code_counts(connection, school_id, first, days=days):
        count.codes[day][code] += n
    recounted = set(days)
    for pupils, sign in ((joined, 1), (left, -1)):
        for day, code, n in _code_counts(connection, school_id, first, pupil_ids=pupils):
            if day not in recounted:
                count.codes[day][code] += sign * n
    for pupil_id in left:
        del count.possible[pupil_id], count.present[pupil_id]
    for pupil_id in joined:
        count.possible[pupil_id] = bytearray([NO_WEEK]) * len(count.weeks)
        count.present[pupil_id] = bytearray([NO_WEEK]) * len(count.weeks)
    weeks = sorted({week_start(d) for d in days})
    if weeks:
        _grow(count, weeks[-1])
        first_week = week_start(first)
        for week in weeks:
            index = (week - first_week).days // 7
            for weekly in (*count.possible.values(), *count.present.values()):
                weekly[index] = NO_WEEK
        _put_weeks(count, _week_totals(connection, school_id, first, weeks=weeks))
    _put_weeks(count, _week_totals(connection, school_id, first, pupil_ids=joined))
    if days or roll is not count.roll:  # not just another school's marks
        count.derived.clear()
    count.roll, count.seen = roll, seen
    return count


def register_count(session: Session, school_id: int, first: date) -> RegisterCount:
    """The school's register count, up to date: the one kept if nothing changed since
    (one statement tells), else brought up to date from what did, in one snapshot.
    Counting only what changed relies on IDs given in commit order, as SQLite's are (one
    writer at a time); on another database a change is counted whole again."""
    key = (str(session.get_bind().url), school_id)
    with _counts_lock:
        lock = _school_locks[key]
    with lock:
        kept = _counts.get(key)
        if kept and kept.first == first and kept.seen == register_version(session, school_id):
            return kept
        with _one_snapshot(session) as connection:
            seen = register_version(connection, school_id)
            if kept and kept.first == first and kept.seen == seen:
                return kept
            if kept and kept.first == first and connection.dialect.name == "sqlite":
                count = _count_changes(connection, kept, school_id, seen)
            else:
                count = _count_all(connection, school_id, first, seen)
        with _counts_lock:
            _counts[key] = count
        return count


def forget_register_counts() -> None:
    """Drop every kept count (the next School page counts its register whole)."""
    with _counts_lock:
        _counts.clear()


def _figures_from(count: RegisterCount, as_of: date, rules: FigureRules) -> dict[str, Any]:
    """The School page's register figures as of `as_of`: the weekly trend (pupils in PA
    and SA by the end of each week), the cohorts' year so far, and the codes used."""
    last = (week_start(as_of) - week_start(count.first)).days // 7
    weeks = count.weeks[: last + 1] if last >= 0 else []
    sums = [[0, 0, 0, 0, 0] for _ in weeks]  # possible, present, PA, SA, pupils with a row
    per_pupil = []
    low = rules.persistent_absence_min_possible
    pa, sa = rules.persistent_absence_rate, rules.severe_absence_rate
    for pupil_id, flags in count.roll.items():
        cp = cpr = 0
        # A pupil's weeks run on past `as_of` (marks entered ahead): zip stops at its week.
        weekly = zip(sums, count.possible[pupil_id], count.present[pupil_id], strict=False)
        for week, p, pr in weekly:
            if p == NO_WEEK:
                continue
            cp += p
            cpr += pr
            week[0] += p
            week[1] += pr
            week[4] += 1
            if cp >= low:
                absent = (cp - cpr) * 100
                week[2] += absent >= pa * cp
                week[3] += absent >= sa * cp
        per_pupil.append((pupil_id, *flags, cp, cpr))
    trend = [
        TrendPoint(week, 100.0 * present / possible if possible else None, persistent, severe)
        for week, (possible, present, persistent, severe, pupils) in zip(weeks, sums, strict=True)
        if pupils
    ]
    everyone = _cohort("All pupils", per_pupil, rules)
    cohorts = [everyone]
    for index, (flag, name) in enumerate(COHORTS.items(), start=1):
        inside = [r for r in per_pupil if r[index]]
        cohorts.append(_cohort(name, inside, rules))
        if flag == "fsm":
            cohorts.append(
                _cohort("Not free school meals", [r for r in per_pupil if not r[2]], rules)
            )
    used: Counter[str] = Counter()
    for day, on_day in count.codes.items():
        if day <= as_of:
            used.update(on_day)
    codes = sorted(
        (
            (code, NATIONAL_CODES[code].meaning, n, str(NATIONAL_CODES[code].category))
            for code, n in used.items()
            if n and code in NATIONAL_CODES
        ),
        key=lambda c: (-c[2], c[0]),
    )
    return {"trend": trend, "cohorts": cohorts, "codes": codes}


def school_register_figures(session: Session, ctx: SchoolContext) -> dict[str, Any]:
    """The School page's register figures: from the kept count, up to date."""
    rules = ctx.policy.figure_rules()
    count = register_count(session, ctx.school.id, year_first_day(ctx))
    with _counts_lock:
        lock = _school_locks[str(session.get_bind().url), ctx.school.id]
    with lock:
        key = (ctx.as_of, rules)
        figures = count.derived.get(key)
        if figures is None:
            figures = count.derived[key] = _figures_from(count, ctx.as_of, rules)
        return figures


def _cohort(name: str, rows: list, rules) -> CohortLine:
    possible = sum(r[5] for r in rows)
    present = sum(r[6] for r in rows)

    def over(rate: float) -> int:
        return sum(
            1
            for r in rows
            if r[5] >= rules.persistent_absence_min_possible and (r[5] - r[6]) * 100 >= rate * r[5]
        )

    return CohortLine(
        name,
        len(rows),
        100.0 * present / possible if possible else None,
        over(rules.persistent_absence_rate),
        over(rules.severe_absence_rate),
    )


def refresh_school_figures(engine: Any, *, every: bool = False) -> int:
    """Bring the kept School page counts of this database up to date (or, with `every`,
    count every school's), so that the next page finds them so. The web app runs this
    at start and every few seconds; returns how many schools it looked at."""
    url = str(engine.url)
    with Session(engine, expire_on_commit=False) as session:
        if every:
            school_ids = list(session.exec(select(School.id)).all())
        else:
            with _counts_lock:
                school_ids = sorted(key[1] for key in _counts if key[0] == url)
    for school_id in school_ids:
        with Session(engine, expire_on_commit=False) as session:
            school = session.get(School, school_id)
            if school is not None:
                school_register_figures(session, school_context(session, school))
    return len(school_ids)


def school_page(session: Session, ctx: SchoolContext) -> SchoolPage:
    school_id = ctx.school.id
    first = year_first_day(ctx)
    cached = school_register_figures(session, ctx)
    everyone = cached["cohorts"][0]
    returns = session.exec(
        select(LAReturn)
        .where(LAReturn.school_id == school_id, LAReturn.status == "due")
        .order_by(LAReturn.raised_on, LAReturn.id)
    ).all()
    pupils = pupils_by_id(session, school_id, {r.pupil_id for r in returns})
    stage_rows = session.exec(
        select(CaseRecord.kind, CaseRecord.stage, func.count())
        .where(CaseRecord.school_id == school_id, col(CaseRecord.status).in_(("open", "paused")))
        .group_by(CaseRecord.kind, CaseRecord.stage)
        .order_by(CaseRecord.kind, CaseRecord.stage)
    ).all()
    decisions = dict(
        session.exec(
            select(LegalDecision.status, func.count())
            .where(LegalDecision.school_id == school_id, LegalDecision.asked_on >= first)
            .group_by(LegalDecision.status)
        ).all()
    )
    return SchoolPage(
        pupils=everyone.pupils,
        rate=everyone.rate,
        persistent=everyone.persistent,
        severe=everyone.severe,
        trend=cached["trend"],
        cohorts=cached["cohorts"],
        codes=cached["codes"],
        returns_due=[(r, pupils.get(r.pupil_id)) for r in returns],
        returns_counts=dict(Counter(r.kind for r in returns)),
        cases_by_stage=[(k, s or "(no stage yet)", n) for k, s, n in stage_rows],
        decisions=decisions,
        year_start=first,
    )


def schools_of(session: Session, school_ids: tuple[int, ...]) -> list[School]:
    if not school_ids:
        return []
    return list(
        session.exec(
            select(School).where(col(School.id).in_(school_ids)).order_by(School.name)
        ).all()
    )


@dataclass
class SchoolSummary:
    school: School
    open_cases: int
    awaiting: int
    returns_due: int
    extra: dict[str, int] = field(default_factory=dict)


def schools_summary(session: Session, schools: list[School]) -> list[SchoolSummary]:
    """For the list of an LA officer's schools: what is open at each."""
    ids = [s.id for s in schools]
    if not ids:
        return []
    cases = dict(
        session.exec(
            select(CaseRecord.school_id, func.count())
            .where(
                col(CaseRecord.school_id).in_(ids), col(CaseRecord.status).in_(("open", "paused"))
            )
            .group_by(CaseRecord.school_id)
        ).all()
    )
    awaiting = dict(
        session.exec(
            select(LegalDecision.school_id, func.count())
            .where(col(LegalDecision.school_id).in_(ids), LegalDecision.status == "awaiting")
            .group_by(LegalDecision.school_id)
        ).all()
    )
    returns = dict(
        session.exec(
            select(LAReturn.school_id, func.count())
            .where(col(LAReturn.school_id).in_(ids), LAReturn.status == "due")
            .group_by(LAReturn.school_id)
        ).all()
    )
    return [
        SchoolSummary(s, cases.get(s.id, 0), awaiting.get(s.id, 0), returns.get(s.id, 0))
        for s in schools
    ]
