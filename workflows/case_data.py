"""The attendance case's signals, Updates, state and results: plain dataclasses, in a
module of their own that the workflow sandbox imports once and passes through, rather than
defining them again each time it loads a case (most of a load's time when they lived in
workflows/case.py)."""

from dataclasses import dataclass, field

from activities.cases import CasePolicy


@dataclass
class ThresholdsChanged:
    """From the sweep: the thresholds the pupil is over now, and what changed (signal)."""

    as_of: str
    holding: list[str]
    crossed: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)


@dataclass
class PreviousYearAbsence:
    """From the September baseline: the pupil was persistently absent last year (signal)."""

    as_of: str  # the day it is sent
    rate_year: float | None  # last year's attendance, %
    year_ended: str  # the last school day of last year


@dataclass
class LadderState:
    stage: str | None = None
    since: str = ""  # the day the current stage began
    review_on: str | None = None
    meeting_needed: bool = False
    meeting_at: str | None = None  # ISO datetime, local
    meeting_reminders: int = 0
    contract_needed: bool = False
    decision_key: str | None = None
    decision_asked_on: str | None = None
    decision_reminded_on: str | None = None
    awaiting_la: str | None = None  # the penalty-notice request waiting for the LA


@dataclass
class CaseState:
    policy: CasePolicy | None = None
    ladders: dict[str, LadderState] = field(default_factory=dict)
    holding: list[str] = field(default_factory=list)
    opened_on: str = ""
    as_of: str = ""  # the last sweep's day: with anchored_at, the case's clock
    anchored_at: str = ""  # the workflow time when that sweep's signal arrived
    paused: str | None = None
    seen_days: list[str] = field(default_factory=list)
    returns_raised: list[str] = field(default_factory=list)
    baseline_on: str = ""  # the day of the September baseline taken, if any
    steps: int = 0  # counts the case's steps, for idempotency keys
    closed: bool = False


@dataclass
class AttendanceCaseInput:
    school_id: int
    pupil_id: int
    academic_year: int
    state: CaseState | None = None  # carried across continue-as-new
    continue_after_events: int = 4000


@dataclass
class ScheduleMeetingInput:
    when: str  # ISO datetime, the school's local time
    with_whom: str
    by: str
    role: str
    ladder: str = ""  # needed only when two ladders wait for a meeting


@dataclass
class MeetingOutcomeInput:
    attended: bool
    by: str
    role: str
    targets: str = ""
    support_agreed: str = ""
    next_review: str | None = None  # ISO date
    notes: str = ""
    ladder: str = ""


@dataclass
class ContractInput:
    signed_on: str
    by: str
    role: str
    terms: str = ""
    ladder: str = ""


@dataclass
class PauseInput:
    reason: str
    by: str
    role: str
    note: str = ""


@dataclass
class ResumeInput:
    by: str
    role: str
    note: str = ""


@dataclass
class DecisionInput:
    decision_key: str
    approve: bool
    reason: str
    by: str
    role: str


@dataclass
class LAOutcomeInput:
    outcome: str  # issued | paid_reduced | paid | unpaid | withdrawn
    on_day: str
    by: str
    role: str


@dataclass
class MoveToStageInput:
    ladder: str
    stage: str
    reason: str
    by: str
    role: str


@dataclass
class StepResult:
    summary: str


@dataclass
class CaseStatus:
    stage: str
    ladder_stages: dict[str, str]
    paused: bool
    pause_reason: str | None
    awaiting: list[str]
    available_actions: list[str]
    holding: list[str]
    opened_on: str
    closed: bool


@dataclass
class AttendanceCaseResult:
    closed_on: str
    stages: dict[str, str]
