"""SQL tables: the system of record for schools, pupils, contacts and the register."""

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, UniqueConstraint
from sqlalchemy import String as SAString
from sqlmodel import Field, SQLModel


class RegisterSession(StrEnum):
    """AM or PM: a session is half a school day."""

    AM = "AM"
    PM = "PM"


class DayKind(StrEnum):
    INSET = "inset"
    CLOSURE = "closure"


class School(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    urn: str = Field(index=True, unique=True)
    la_code: str  # 3-digit LA number, e.g. 886 for Kent
    estab: str  # 4-digit establishment number
    policy: str  # preset name or path of the school's policy file


class HalfTerm(SQLModel, table=True):
    """One half-term of a school's calendar; school days are weekdays inside one."""

    __table_args__ = (UniqueConstraint("school_id", "starts"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    academic_year: int  # the calendar year it starts in: 2026 for 2026/27
    name: str  # "Autumn 1", ...
    starts: date
    ends: date


class NonSchoolDay(SQLModel, table=True):
    """An INSET day or a planned closure inside a half-term (bank holidays come from
    the `holidays` package)."""

    __table_args__ = (UniqueConstraint("school_id", "day"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    day: date
    kind: DayKind
    note: str = ""


class Pupil(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("school_id", "upn"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    upn: str = Field(index=True)
    forename: str
    surname: str
    date_of_birth: date
    year_group: int  # NC year: 0 reception ... 13
    sex: str = ""
    send: bool = False
    ehcp: bool = False
    fsm: bool = False
    social_worker: bool = False
    child_protection_plan: bool = False
    looked_after: bool = False
    young_carer: bool = False
    part_time_timetable: bool = False
    on_roll: bool = True


class Contact(SQLModel, table=True):
    """A parent or carer (or emergency contact) of a pupil, in priority order."""

    __table_args__ = (UniqueConstraint("pupil_id", "priority"),)
    id: int | None = Field(default=None, primary_key=True)
    pupil_id: int = Field(foreign_key="pupil.id", index=True)
    priority: int  # 1 is called first
    title: str = ""
    forename: str
    surname: str
    relationship: str  # Mother, Father, Carer, Grandparent, ...
    parental_responsibility: bool = True
    phone: str = ""
    email: str = ""
    address: str = ""  # postal address, lines separated by newlines
    postcode: str = ""
    preferred_channel: str = "email"  # email | post | both


class RegisterMark(SQLModel, table=True):
    """One session's entry in the attendance register, a legal document: a read-only view
    of the weekly register (RegisterWeek), one row per session that has a mark.

    The register is stored a week per pupil per row, so that a day's marks for a whole
    local authority are 230,000 row updates rather than 460,000 inserts into a
    mark-per-row table and its index. The view gives every reader the mark-per-row shape;
    `imports.marks.store_marks` is the only writer, through RegisterWeek. Who recorded a
    mark and when are those of the ImportBatch that wrote it.
    """

    __table_args__ = {"info": {"view": True}}  # made by database.make_engine, not create_all
    pupil_id: int = Field(primary_key=True)
    day: date = Field(primary_key=True)
    session: RegisterSession = Field(sa_column=Column(SAString(2), primary_key=True))
    code: str = Field(max_length=2)
    minutes_late: int | None = None
    recorded_by: str
    recorded_at: datetime
    week_start: date
    slot: int
    batch_id: int


class MarkAmendment(SQLModel, table=True):
    """An amendment to the register: the original and new entries, why, when, by whom."""

    id: int | None = Field(default=None, primary_key=True)
    pupil_id: int = Field(foreign_key="pupil.id", index=True)
    day: date
    session: RegisterSession = Field(sa_column=Column(SAString(2), nullable=False))
    original_code: str
    new_code: str
    original_minutes_late: int | None = None
    new_minutes_late: int | None = None
    reason: str
    amended_by: str
    amended_role: str
    amended_at: datetime


class RegisterWeek(SQLModel, table=True):
    """A pupil's week of the register: the register itself, and compacted for the figures.

    Ten sessions, Mon AM to Fri PM, each a fixed-width slot of `sessions`
    (figures.register_week): the national code, the minutes late, and the entry, the
    ImportBatch that recorded it (who and when). `marks` has one class character per
    session (see models.codes); the counts are of the whole week. Written only by
    `imports.marks`, in the transaction of the import.
    """

    pupil_id: int = Field(foreign_key="pupil.id", primary_key=True)
    week_start: date = Field(primary_key=True)
    marks: str = Field(max_length=10)
    sessions: str = Field(max_length=130)
    possible: int
    present: int
    authorised: int
    illness: int
    unauthorised: int  # G, O, U
    unexplained: int  # N
    late: int  # L, U
    trailing_absence: int  # N, O, G, U sessions at the end of the week, after the last
    # session the pupil attended or was authorised to miss
    breaks_absence_run: bool  # the week has a present or authorised session
    # possible ... unexplained packed into one integer, for the figures to sum in one go
    # (figures.register_week.PACKED_COUNTS)
    counts: int = Field(sa_column=Column(BigInteger, nullable=False))


class ImportBatch(SQLModel, table=True):
    """One write of marks (a file imported, a call's outcome recorded, the demo's register)
    or of pupils: who did it and when, for every mark it wrote (RegisterWeek.entries), and
    its file's hash, so that importing the same file again is recognised."""

    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    kind: str  # marks-csv | ctf | pupils-csv
    filename: str
    sha256: str = Field(index=True)
    imported_at: datetime
    imported_by: str
    rows: int
    added: int
    amended: int
    unchanged: int
    # The first and last day it wrote marks on (none for a pupils file). Every write of
    # marks must set them: imports.marks reads a school's stored weeks only where its
    # batches' days say there may be marks, and the School page recounts by them.
    first_day: date | None = None
    last_day: date | None = None


class ThresholdState(SQLModel, table=True):
    """Whether a pupil is over one of the policy's thresholds, as of the last sweep."""

    pupil_id: int = Field(foreign_key="pupil.id", primary_key=True)
    threshold: str = Field(primary_key=True)
    active: bool
    since: date
    value: float | None = None


class ThresholdCrossing(SQLModel, table=True):
    """A pupil crossing a policy threshold (or coming back under it) at a sweep."""

    __table_args__ = (UniqueConstraint("pupil_id", "threshold", "on_day", "direction"),)
    id: int | None = Field(default=None, primary_key=True)
    school_id: int = Field(foreign_key="school.id", index=True)
    pupil_id: int = Field(foreign_key="pupil.id", index=True)
    threshold: str
    direction: str  # crossed | cleared
    on_day: date
    value: float | None = None
    recorded_at: datetime


class ChronologyEntry(SQLModel, table=True):
    """One dated entry in a pupil's chronology: every contact, letter, meeting, decision
    and step, the evidence a court or the LA asks for.

    `key` makes writing an entry idempotent: the step that writes it names it uniquely
    (for example the workflow ID and the step), so a retried activity writes it once.
    """

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=200)
    school_id: int = Field(foreign_key="school.id", index=True)
    pupil_id: int = Field(foreign_key="pupil.id", index=True)
    case_id: str | None = Field(default=None, index=True)  # the workflow ID, if any
    on_day: date  # the school day it concerns
    at: datetime  # when it was recorded
    kind: str  # letter | call | text | email | visit | meeting | decision | stage | ...
    summary: str
    actor: str = ""  # who did it (a member of staff, "engine", the LA)
    role: str = ""
    stage: str = ""  # the case's stage at the time, if any
    detail: str = ""  # JSON with anything else worth keeping


class StaffTask(SQLModel, table=True):
    """Something a member of staff must do for a case: a call, a visit, a meeting."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=200)
    school_id: int = Field(foreign_key="school.id", index=True)
    pupil_id: int = Field(foreign_key="pupil.id", index=True)
    case_id: str = Field(index=True)
    kind: str  # call_parents | home_visit | calling_card | meeting | decision | ...
    summary: str
    role: str  # who it falls to: office | attendance_officer | headteacher | dsl
    due_at: datetime
    status: str = "open"  # open | done | cancelled
    created_at: datetime
    closed_at: datetime | None = None


class CaseRecord(SQLModel, table=True):
    """Where each case stands, kept by the workflows for lists and pages (Temporal is the
    system of record; this is its projection for queries across many cases)."""

    case_id: str = Field(primary_key=True)  # the workflow ID
    school_id: int = Field(foreign_key="school.id", index=True)
    pupil_id: int = Field(foreign_key="pupil.id", index=True)
    kind: str  # absence_episode | attendance_case
    status: str  # open | paused | closed
    stage: str = ""
    next_action: str = ""
    next_due: datetime | None = None
    opened_on: date
    updated_at: datetime
    closed_reason: str = ""


class LegalDecision(SQLModel, table=True):
    """A decision the headteacher must record: consider a penalty notice, countersign a
    formal warning, refer for prosecution. Recorded either way, with a reason."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=200)
    school_id: int = Field(foreign_key="school.id", index=True)
    pupil_id: int = Field(foreign_key="pupil.id", index=True)
    case_id: str = Field(index=True)
    kind: str  # penalty_notice | formal_warning | prosecution_referral | ...
    asked_on: date
    due_on: date
    status: str = "awaiting"  # awaiting | approved | declined
    decided_on: date | None = None
    decided_by: str = ""
    reason: str = ""


class PenaltyNotice(SQLModel, table=True):
    """The penalty-notice ledger, per parent: the 3-year count is across all their
    children and schools, so it is keyed by the parent (contact), not the case."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=200)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    pupil_id: int = Field(foreign_key="pupil.id", index=True)
    school_id: int = Field(foreign_key="school.id")
    case_id: str
    requested_on: date
    issued_on: date | None = None
    sequence: int  # 1st, 2nd within 3 years (a 3rd is a prosecution referral instead)
    amount: int  # pounds, before any reduction
    reduced_amount: int | None = None  # if paid within the reduction period
    outcome: str = "requested"  # requested | issued | paid_reduced | paid | unpaid | withdrawn
    outcome_on: date | None = None


class LAReturn(SQLModel, table=True):
    """An entry for a return to the local authority (attendance, sickness, deletion) or
    a referral (child missing education)."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=200)
    school_id: int = Field(foreign_key="school.id", index=True)
    pupil_id: int = Field(foreign_key="pupil.id", index=True)
    case_id: str = ""
    kind: str  # attendance_return | sickness_return | cme_referral | missing_persons | ...
    raised_on: date
    figure: float | None = None
    summary: str = ""
    status: str = "due"  # due | sent
