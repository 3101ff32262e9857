"""A school's attendance policy as validated data.

A school's escalation lives in a YAML file (`policies/presets/*.yaml` for the seed
schools) and is checked here as a whole: register times, the numbers the figures depend
on, the national rules, the thresholds the register-close sweep evaluates, the
day-by-day procedure for unexplained absence, the escalation ladders and who approves
which legal step. Every model refuses unknown keys, so a misspelt key is an error rather
than a setting silently ignored.

The only numbers written in this module are the national rules, as schema defaults
(the 2024 regulations and the National Framework for Penalty Notices), so that a school
file may leave the `national` block out. A school's own numbers live in its file.
"""

import difflib
import operator
import re
import warnings
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Annotated, Any, Literal, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from models.figures import FIGURE_NAMES, FigureRules, PupilFigures

# --------------------------------------------------------------------------- helpers

Loc = tuple[str | int, ...]


def _error(kind: str, reason: str) -> PydanticCustomError:
    # The reason goes through the context so that braces in it are never read as a template.
    return PydanticCustomError(kind, "{reason}", {"reason": reason})


class Problems:
    """The problems one validator finds, each at its own field path, raised together so
    that a school sees every mistake at once."""

    def __init__(self) -> None:
        self.found: list[tuple[Loc, str]] = []

    def add(self, loc: Loc | str, reason: str) -> None:
        self.found.append(((loc,) if isinstance(loc, str) else loc, reason))

    def raise_any(self, title: str) -> None:
        if self.found:
            raise ValidationError.from_exception_data(
                title,
                [
                    InitErrorDetails(type=_error("policy", reason), loc=loc, input=None)
                    for loc, reason in self.found
                ],
            )


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' when a close match exists, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known(word: str, kind: str, choices: Iterable[str]) -> str:
    choices = list(dict.fromkeys(choices))
    listed = ", ".join(choices) if choices else "none"
    return f"no {kind} named {word!r}{did_you_mean(word, choices)}; known: {listed}"


# --------------------------------------------------------------------------- value types

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _clock_time(value: Any) -> str:
    if not isinstance(value, str) or not _CLOCK.match(value):
        raise _error("time", f'{value!r} is not a time: write "HH:MM" (24-hour), e.g. "09:25"')
    return value


def minutes(clock: str) -> int:
    """Minutes after midnight of an "HH:MM" time."""
    hours, mins = clock.split(":")
    return int(hours) * 60 + int(mins)


def _percent(value: float) -> float:
    if not 0 <= value <= 100:
        raise _error("percentage", f"a percentage is between 0 and 100, not {value:g}")
    return value


def _not_negative(value: int) -> int:
    if value < 0:
        raise _error("count", f"a count of days, weeks or sessions cannot be negative ({value})")
    return value


def _at_least_one(value: int) -> int:
    _not_negative(value)
    if value < 1:
        raise _error("count", f"must be at least 1, not {value}")
    return value


def _absence_day(value: int) -> int:
    if value < 1:
        raise _error("count", f"days of absence count from 1 (the first day), not {value}")
    return value


_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
_VARIANT = re.compile(r"^[a-z0-9][a-z0-9_]*$")
_TEMPLATE = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")


def _snake_case(value: str) -> str:
    if not _SNAKE.match(value):
        raise _error(
            "name",
            f"{value!r} is not a snake_case name "
            "(lower-case letters, digits and underscores, starting with a letter)",
        )
    return value


def _variant_name(value: str) -> str:
    if not _VARIANT.match(value):
        raise _error(
            "name", f"{value!r} is not a variant name like '1a' (lower-case letters and digits)"
        )
    return value


def _template_name(value: str) -> str:
    if not _TEMPLATE.match(value):
        raise _error(
            "template",
            f"{value!r} is not a template name like 'all_saints/stage_1a' "
            "(lower-case letters, digits and underscores; folders separated by '/')",
        )
    return value


def _digits(count: int, what: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        # YAML reads 886 as a number; such codes are text, and 0-padded.
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(text, str) or not re.fullmatch(rf"\d{{{count}}}", text):
            raise _error("digits", f"{what} is {count} digits, not {value!r}")
        return text

    return check


def _email(value: str) -> str:
    if "@" not in value:
        raise _error("email", f"{value!r} is not an email address")
    return value


ClockTime = Annotated[str, PlainValidator(_clock_time)]
Percent = Annotated[float, AfterValidator(_percent)]
Count = Annotated[int, AfterValidator(_not_negative)]
AtLeastOne = Annotated[int, AfterValidator(_at_least_one)]
AbsenceDay = Annotated[int, AfterValidator(_absence_day)]
Name = Annotated[str, AfterValidator(_snake_case)]
VariantName = Annotated[str, AfterValidator(_variant_name)]
TemplateName = Annotated[str, AfterValidator(_template_name)]
Email = Annotated[str, AfterValidator(_email)]


# --------------------------------------------------------------------------- closed sets


class Role(StrEnum):
    """Who does something, in the schools' own words."""

    HEADTEACHER = "headteacher"
    SENIOR_ATTENDANCE_CHAMPION = "senior_attendance_champion"
    DESIGNATED_SAFEGUARDING_LEAD = "designated_safeguarding_lead"
    ATTENDANCE_OFFICER = "attendance_officer"
    ATTENDANCE_TEAM = "attendance_team"
    OFFICE_STAFF = "office_staff"
    CLASS_TEACHER = "class_teacher"
    TUTOR = "tutor"
    DIVISIONAL_HEAD = "divisional_head"
    BOARDING_HOUSE_MASTER = "boarding_house_master"
    SLT = "slt"


# Only the headteacher or the Senior Attendance Champion decides a legal step.
Approver = Literal["headteacher", "senior_attendance_champion"]
APPROVERS: tuple[str, ...] = ("headteacher", "senior_attendance_champion")


class LegalStep(StrEnum):
    NONE = "none"
    EWO_REFERRAL = "ewo_referral"
    FORMAL_WARNING = "formal_warning"
    NOTICE_TO_IMPROVE = "notice_to_improve"
    PENALTY_NOTICE_REQUEST = "penalty_notice_request"
    PROSECUTION_REFERRAL = "prosecution_referral"
    EDUCATION_SUPERVISION_ORDER = "education_supervision_order"

    @property
    def needs_approval(self) -> bool:
        """Statutory steps wait for a decision; a referral to the education welfare officer
        is support, not enforcement."""
        return self not in (LegalStep.NONE, LegalStep.EWO_REFERRAL)

    @property
    def is_enforcement(self) -> bool:
        """Steps a school takes on its own penalty-notice ladder (an independent school
        without one asks the LA instead)."""
        return self in (
            LegalStep.FORMAL_WARNING,
            LegalStep.NOTICE_TO_IMPROVE,
            LegalStep.PENALTY_NOTICE_REQUEST,
            LegalStep.PROSECUTION_REFERRAL,
        )


class EpisodeAction(StrEnum):
    """What staff do while a pupil's absence is unexplained."""

    CALL_PARENTS = "call_parents"
    TEXT_PARENTS = "text_parents"
    EMAIL_PARENTS = "email_parents"
    CALL_EMERGENCY_CONTACTS = "call_emergency_contacts"
    LETTER_HOME = "letter_home"
    HOME_VISIT = "home_visit"
    CALLING_CARD = "calling_card"
    NOTIFY_DSL = "notify_dsl"
    NOTIFY_SOCIAL_WORKER = "notify_social_worker"
    CME_REFERRAL = "cme_referral"
    MISSING_PERSONS_REFERRAL = "missing_persons_referral"
    WIDER_SEARCH = "wider_search"
    DAILY_CONTACT_ATTEMPTS = "daily_contact_attempts"
    ASK_TUTOR = "ask_tutor"
    ASK_DIVISIONAL_HEAD = "ask_divisional_head"
    ASK_HEALTH_CENTRE = "ask_health_centre"
    ASK_BOARDING_HOUSE = "ask_boarding_house"
    NOTIFY_SENIOR_STAFF = "notify_senior_staff"
    NOTIFY_POLICE = "notify_police"


class PupilFlag(StrEnum):
    """What puts a pupil on a different absence path."""

    SOCIAL_WORKER = "social_worker"
    CHILD_PROTECTION_PLAN = "child_protection_plan"
    LOOKED_AFTER = "looked_after"
    SEND = "send"
    SAFETY_CONCERN = "safety_concern"
    REGULAR_UNAUTHORISED_ABSENCE = "regular_unauthorised_absence"
    BOARDER = "boarder"


class Notify(StrEnum):
    HEADTEACHER = "headteacher"
    GOVERNORS_ANONYMOUSLY = "governors_anonymously"
    DESIGNATED_SAFEGUARDING_LEAD = "designated_safeguarding_lead"
    SOCIAL_WORKER = "social_worker"
    LOCAL_AUTHORITY = "local_authority"
    TRUST = "trust"


class PauseReason(StrEnum):
    MEDICAL = "medical"
    SEND_ADJUSTMENTS = "send_adjustments"
    PART_TIME_TIMETABLE = "part_time_timetable"
    REINTEGRATION_PLAN = "reintegration_plan"
    LICENSED_PERFORMANCE = "licensed_performance"


class SchoolType(StrEnum):
    MAINTAINED_PRIMARY = "maintained_primary"
    MAINTAINED_SECONDARY = "maintained_secondary"
    ACADEMY_PRIMARY = "academy_primary"
    ACADEMY_SECONDARY = "academy_secondary"
    ACADEMY_ALL_THROUGH = "academy_all_through"
    INDEPENDENT = "independent"


class Model(BaseModel):
    """Unknown keys are refused (a misspelt key is an error, not a setting silently
    ignored), and a loaded policy is never changed in place: the loader shares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- school


class Person(Model):
    """Someone letters are signed by."""

    name: str
    role: str  # the title under the signature, e.g. "Deputy Head Pastoral"
    email: Email | None = None


class School(Model):
    name: str
    urn: Annotated[str, PlainValidator(_digits(6, "a URN"))]
    la_code: Annotated[str, PlainValidator(_digits(3, "an LA number"))]
    estab: Annotated[str, PlainValidator(_digits(4, "an establishment number"))]
    local_authority: str
    la_attendance_service: str | None = None
    trust: str | None = None
    type: SchoolType
    boarding: bool = False
    address: list[str] = Field(min_length=1)
    phone: str
    email: Email
    website: str | None = None
    headteacher: Person
    senior_attendance_champion: Person
    designated_safeguarding_lead: Person
    attendance_officer: Person
    office_contact: Person | None = None
    attendance_governor: Person | None = None


# --------------------------------------------------------------------------- register


class RegisterSession(Model):
    """One session's register: taken at `opens`; a pupil arriving after that but before
    `closes` is late but present (L); after `closes` the mark is U (unauthorised)."""

    opens: ClockTime
    closes: ClockTime

    @model_validator(mode="after")
    def _closes_after_opens(self) -> "RegisterSession":
        problems = Problems()
        if minutes(self.closes) <= minutes(self.opens):
            problems.add(
                "closes", f"the register closes at {self.closes}, before it opens at {self.opens}"
            )
        problems.raise_any("RegisterSession")
        return self

    @property
    def window_minutes(self) -> int:
        return minutes(self.closes) - minutes(self.opens)


class Register(Model):
    am: RegisterSession
    pm: RegisterSession
    late_mark: Literal["L"] = "L"  # national code: arrived before the register closed
    after_close_mark: Literal["U"] = "U"  # national code: arrived after it closed
    record_minutes_late: bool = False
    day_ends: ClockTime | None = None  # end of the school day: a day's tasks are due by then

    @model_validator(mode="after")
    def _pm_after_am(self) -> "Register":
        problems = Problems()
        if minutes(self.pm.opens) < minutes(self.am.closes):
            problems.add(
                ("pm", "opens"),
                f"the afternoon register opens at {self.pm.opens}, before the morning "
                f"register closes at {self.am.closes}",
            )
        if self.day_ends is not None and minutes(self.day_ends) <= minutes(self.pm.closes):
            problems.add(
                "day_ends",
                f"the school day ends at {self.day_ends}, before the afternoon register "
                f"closes at {self.pm.closes}",
            )
        problems.raise_any("Register")
        return self


# --------------------------------------------------------------------------- figures

_NATIONAL_FIGURES = FigureRules()  # its defaults are the national definitions


class Figures(Model):
    """Exactly the fields of `models.figures.FigureRules`. Defaults are the national
    definitions: PA at 10% absence and SA at 50% (once 20 sessions were possible), the
    10-school-week penalty-notice period, N resolved within 5 school days."""

    persistent_absence_rate: Percent = _NATIONAL_FIGURES.persistent_absence_rate
    severe_absence_rate: Percent = _NATIONAL_FIGURES.severe_absence_rate
    persistent_absence_min_possible: Count = _NATIONAL_FIGURES.persistent_absence_min_possible
    rolling_school_weeks: AtLeastOne = _NATIONAL_FIGURES.rolling_school_weeks
    short_window_school_weeks: AtLeastOne = _NATIONAL_FIGURES.short_window_school_weeks
    unexplained_resolution_school_days: AtLeastOne = (
        _NATIONAL_FIGURES.unexplained_resolution_school_days
    )

    @model_validator(mode="after")
    def _severe_above_persistent(self) -> "Figures":
        problems = Problems()
        if self.severe_absence_rate < self.persistent_absence_rate:
            problems.add(
                "severe_absence_rate",
                f"severe absence ({self.severe_absence_rate:g}%) cannot start below "
                f"persistent absence ({self.persistent_absence_rate:g}%)",
            )
        problems.raise_any("Figures")
        return self


# --------------------------------------------------------------------------- national rules
# Defaults below are the national rules: the one place their numbers are written in code.


class PenaltyNotice(Model):
    """The National Framework for Penalty Notices (2024)."""

    unauthorised_sessions: AtLeastOne = 10  # G, O, U sessions oblige the school to consider...
    school_weeks: AtLeastOne = 10  # ...within this many rolling school weeks
    amount_pounds: Count = 160  # per parent, per child
    reduced_amount_pounds: Count = 80  # a first notice paid within reduced_if_paid_within_days
    reduced_if_paid_within_days: AtLeastOne = 21
    pay_within_days: AtLeastOne = 28
    repeat_period_years: AtLeastOne = 3  # notices are counted per parent over this period
    second_notice_amount_pounds: Count = 160  # a second notice: no reduction
    notices_before_prosecution: AtLeastOne = 2  # another is not issued: LA considers prosecution
    notice_to_improve_min_weeks: AtLeastOne = 3
    notice_to_improve_max_weeks: AtLeastOne = 6
    prosecution_max_fine_pounds: Count = 2500
    prosecution_max_prison_months: Count = 3

    @model_validator(mode="after")
    def _consistent(self) -> "PenaltyNotice":
        problems = Problems()
        if self.notice_to_improve_max_weeks < self.notice_to_improve_min_weeks:
            problems.add("notice_to_improve_max_weeks", "shorter than notice_to_improve_min_weeks")
        if self.reduced_amount_pounds > self.amount_pounds:
            problems.add("reduced_amount_pounds", "more than the full amount")
        if self.reduced_if_paid_within_days > self.pay_within_days:
            problems.add("reduced_if_paid_within_days", "longer than pay_within_days")
        problems.raise_any("PenaltyNotice")
        return self


class Returns(Model):
    """Returns to the local authority (regulation 13 of the 2024 regulations)."""

    attendance_return_school_days: AtLeastOne = 10  # continuous school days of N, O, G, U
    sickness_return_school_days: AtLeastOne = 15  # school days of I, consecutive or cumulative
    new_entry_within_school_days: AtLeastOne = 5
    at_least_every_months: AtLeastOne = 1


class Deletion(Model):
    """Grounds for deletion from roll when school and LA cannot establish whereabouts."""

    unauthorised_consecutive_school_days: AtLeastOne = 20
    not_returned_after_authorised_school_days: AtLeastOne = 10


class AttendanceContract(Model):
    """Attendance (formerly parenting) contracts: voluntary, reviewed every few weeks."""

    review_min_weeks: AtLeastOne = 4
    review_max_weeks: AtLeastOne = 6


class National(Model):
    """Rules every school in England follows; a school file normally leaves them out."""

    penalty_notice: PenaltyNotice = PenaltyNotice()
    returns: Returns = Returns()
    deletion: Deletion = Deletion()
    attendance_contract: AttendanceContract = AttendanceContract()
    unexplained_code_resolution_school_days: AtLeastOne = 5  # N becomes O after this
    register_retention_years: AtLeastOne = 6  # every register entry, from when it was made


# --------------------------------------------------------------------------- thresholds

_FIGURE_TYPES = get_type_hints(PupilFigures)
BOOLEAN_FIGURES = frozenset(n for n in FIGURE_NAMES if _FIGURE_TYPES[n] is bool)
PERCENT_FIGURES = frozenset(n for n in FIGURE_NAMES if n.startswith("rate_"))

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}


def _threshold_value(value: Any) -> bool | int | float:
    if not isinstance(value, bool | int | float):
        raise _error(
            "threshold_value",
            f"a threshold value is a number, or true/false for a yes/no figure, not {value!r}",
        )
    return value


def _shown(value: bool | int | float) -> str:
    return str(value).lower() if isinstance(value, bool) else f"{value:g}"


class Threshold(Model):
    """A named condition on one of a pupil's figures, evaluated at every register close."""

    name: Name
    figure: str
    op: Literal["<", "<=", ">", ">=", "=="]
    value: Annotated[bool | int | float, PlainValidator(_threshold_value)]
    description: str

    @field_validator("figure")
    @classmethod
    def _known_figure(cls, value: str) -> str:
        if value not in FIGURE_NAMES:
            raise _error("figure", _known(value, "figure", FIGURE_NAMES))
        return value

    @model_validator(mode="after")
    def _value_fits_figure(self) -> "Threshold":
        problems = Problems()
        if self.figure in BOOLEAN_FIGURES:
            if not isinstance(self.value, bool):
                problems.add("value", f"{self.figure} is yes/no: the value is true or false")
            if self.op != "==":
                problems.add("op", f"{self.figure} is yes/no: compare it with ==")
        elif isinstance(self.value, bool):
            problems.add("value", f"{self.figure} is a number, not {_shown(self.value)}")
        elif self.figure in PERCENT_FIGURES and not 0 <= self.value <= 100:
            problems.add("value", f"a percentage is between 0 and 100, not {self.value:g}")
        problems.raise_any("Threshold")
        return self

    def holds(self, figures: PupilFigures) -> bool:
        """Whether the pupil is over this threshold. A figure that is None (no possible
        sessions yet) never holds."""
        value = getattr(figures, self.figure)
        return value is not None and _OPERATORS[self.op](value, self.value)

    @property
    def condition(self) -> str:
        return f"{self.figure} {self.op} {_shown(self.value)}"


def national_thresholds(national: National) -> dict[str, tuple[str, str, bool | int, str]]:
    """The thresholds every school has, as name -> (figure, op, value, where it comes from)."""
    penalty, returns = national.penalty_notice, national.returns
    return {
        "penalty_notice_consideration": (
            "unauthorised_rolling_window",
            ">=",
            penalty.unauthorised_sessions,
            "national.penalty_notice.unauthorised_sessions",
        ),
        "attendance_return": (
            "unauthorised_run_days",
            ">=",
            returns.attendance_return_school_days,
            "national.returns.attendance_return_school_days",
        ),
        "sickness_return": (
            "illness_days_year",
            ">=",
            returns.sickness_return_school_days,
            "national.returns.sickness_return_school_days",
        ),
        "persistent_absence": ("persistent_absence", "==", True, "the national PA definition"),
        "severe_absence": ("severe_absence", "==", True, "the national SA definition"),
        "unexplained_overdue": (
            "overdue_unexplained",
            ">=",
            1,
            "any N older than figures.unexplained_resolution_school_days",
        ),
    }


NATIONAL_THRESHOLD_NAMES: tuple[str, ...] = tuple(national_thresholds(National()))


# --------------------------------------------------------------------------- absence episode


class FirstDayContact(Model):
    """What the office does on the first day of an unreported absence, and by when."""

    due: ClockTime | None = None  # None: straight after the contact before it
    actions: list[EpisodeAction] = Field(min_length=1)
    possible_actions: list[EpisodeAction] = []  # e.g. "a home visit may be made"
    by: Role
    note: str | None = None


class EpisodeStep(Model):
    """What happens on a later school day of absence while there is still no contact."""

    day: AbsenceDay  # school day of absence, 1-based
    actions: list[EpisodeAction] = Field(min_length=1)
    possible_actions: list[EpisodeAction] = []
    by: Role
    repeat_daily: bool = False  # and again every later day until contact is made
    note: str | None = None


class _Path(Model):
    """First-day contacts in time order, then steps in day order."""

    first_day: list[FirstDayContact] = []
    steps: list[EpisodeStep] = []

    @model_validator(mode="after")
    def _in_order(self) -> "_Path":
        problems = Problems()
        timed = [(i, c.due) for i, c in enumerate(self.first_day) if c.due is not None]
        for (_, before), (i, due) in zip(timed, timed[1:], strict=False):
            if minutes(due) < minutes(before):
                problems.add(("first_day", i, "due"), f"{due} is earlier than {before} before it")
        for i in range(1, len(self.steps)):
            day, before = self.steps[i].day, self.steps[i - 1].day
            if day <= before:
                problems.add(("steps", i, "day"), f"day {day} does not come after day {before}")
        problems.raise_any(type(self).__name__)
        return self

    def day_of(self, action: EpisodeAction | str) -> int | None:
        """The first day of absence on which `action` is taken, if ever."""
        return next((s.day for s in self.steps if action in s.actions), None)


class EpisodeVariant(_Path):
    """A different path for some pupils: shorter for safeguarding, different for boarders."""

    applies_to: list[PupilFlag] = Field(min_length=1)
    note: str | None = None


class WrittenExplanation(Model):
    """When a parent must explain an absence in a signed letter."""

    consecutive_school_days_over: Count | None = None
    school_days_in_term_over: Count | None = None


class AbsenceEpisode(_Path):
    """The school's procedure, day by day, while a pupil's absence is unexplained; it ends
    when contact is made or the pupil returns."""

    parents_report_by: ClockTime | None = None
    parents_report_via: list[str] = []
    first_day: list[FirstDayContact] = Field(min_length=1)
    safeguarding: EpisodeVariant | None = None
    boarders: EpisodeVariant | None = None
    written_explanation: WrittenExplanation | None = None
    note: str | None = None


# --------------------------------------------------------------------------- ladders


class Variant(Model):
    """A version of a stage's letter, e.g. 1a (illness) or 1b (unauthorised absence): the
    first variant whose `when` threshold holds is used; one without `when` is the default."""

    when: str | None = None
    letter: TemplateName | None = None
    description: str | None = None


class Meeting(Model):
    led_by: Role
    attendees: list[str] = []
    invite_la_officer: bool = False
    purpose: str | None = None


class Stage(Model):
    """One step of an escalation ladder."""

    id: Name
    name: str
    description: str | None = None
    enter_when: list[str] = []  # threshold names: any of them moves a pupil onto the stage
    staff_decision: bool = False  # staff may also move a pupil here (e.g. truancy seen)
    letter: TemplateName | None = None
    text_message: TemplateName | None = None
    variants: dict[VariantName, Variant] = {}
    meeting: Meeting | None = None
    tasks: list[str] = []
    attendance_contract: bool = False
    monitoring_school_weeks: AtLeastOne | None = None
    monitoring_weeks: AtLeastOne | None = None
    on_no_improvement: str | None = None  # the id of a later stage
    on_improvement: str | None = None  # the id of an earlier stage, or "close"
    positive_letter: TemplateName | None = None
    requires_approval_by: Role | None = None
    legal_step: LegalStep = LegalStep.NONE
    notify: list[Notify] = []

    @property
    def review_period(self) -> str | None:
        if self.monitoring_school_weeks:
            return f"{self.monitoring_school_weeks} school weeks"
        if self.monitoring_weeks:
            return f"{self.monitoring_weeks} weeks"
        return None


class ReviewPoint(Model):
    name: str
    months: list[Annotated[int, Field(ge=1, le=12)]] = Field(min_length=1)


class Ladder(Model):
    """An ordered escalation: a pupil moves up on no improvement, down on improvement."""

    id: Name
    name: str
    description: str | None = None
    review_points: list[ReviewPoint] = []  # progress is judged at these points of the year
    september_previous_year_pa: bool = False  # last year's PA pupils enter in September
    september_letter: TemplateName | None = None
    stages: list[Stage] = Field(min_length=1)

    def stage(self, stage_id: str) -> Stage:
        return next(s for s in self.stages if s.id == stage_id)


# --------------------------------------------------------------------------- the rest


class LatenessRule(Model):
    when: str  # a threshold name
    by: Role
    tasks: list[str] = Field(min_length=1)


class Lateness(Model):
    on_each_late: list[EpisodeAction] = []  # e.g. a text home for every late mark
    rules: list[LatenessRule] = []
    note: str | None = None


class Pause(Model):
    """An agreed reason an attendance case may be paused: no letters and no legal steps
    while it lasts."""

    reason: PauseReason
    description: str
    agreed_by: Role
    review_every_school_weeks: AtLeastOne | None = None


class CaseReminders(Model):
    """When the engine chases a step nobody has recorded. The engine's defaults; a school
    may set its own."""

    decision_overdue_days: AtLeastOne = 5  # a legal decision not recorded: remind the approver
    meeting_outcome_overdue_days: AtLeastOne = 2  # after the meeting date: remind who led it
    meeting_outcome_escalate_days: AtLeastOne = 5  # still nothing: tell the SAC


class Enforcement(Model):
    """How legal steps happen: on the school's own ladder, or by asking the LA's advice."""

    own_penalty_notice_ladder: bool = True
    seeks_la_advice: Role | None = None  # who asks the LA, for a school without a ladder
    code_of_conduct: str | None = None  # the LA's penalty-notice code of conduct
    note: str | None = None


# --------------------------------------------------------------------------- the policy


# `register` is the schools' word; the attribute it shadows is ABCMeta.register, which lives
# on the class and never on a policy instance.
warnings.filterwarnings("ignore", message='Field name "register" in "SchoolPolicy" shadows')


class SchoolPolicy(Model):
    """One school's attendance policy."""

    source: str | None = None  # the document this policy encodes
    school: School
    timezone: str = "Europe/London"
    register: Register
    attendance_target: Percent | None = None
    # Sent to every family on the last school day of each half-term: the child's
    # attendance this year (All Saints' "Universal" level). None: no such letter.
    half_termly_letter: TemplateName | None = None
    figures: Figures = Figures()
    national: National = National()
    thresholds: list[Threshold] = Field(min_length=1)
    absence_episode: AbsenceEpisode
    ladders: list[Ladder] = Field(min_length=1)
    approvals: dict[LegalStep, Approver] = {}
    enforcement: Enforcement = Enforcement()
    case_reminders: CaseReminders = CaseReminders()
    lateness: Lateness = Lateness()
    pauses: list[Pause] = []
    notes: list[str] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise _error("timezone", f"{value!r} is not a known time zone") from None
        return value

    @model_validator(mode="after")
    def _cross_references(self) -> "SchoolPolicy":
        _CrossReferences(self).check().raise_any("SchoolPolicy")
        return self

    def figure_rules(self) -> FigureRules:
        return FigureRules(**self.figures.model_dump())

    def thresholds_holding(self, figures: PupilFigures) -> list[str]:
        """The names of the thresholds the pupil is over, in policy order."""
        return [t.name for t in self.thresholds if t.holds(figures)]

    def threshold(self, name: str) -> Threshold:
        return next(t for t in self.thresholds if t.name == name)

    def ladder(self, ladder_id: str) -> Ladder:
        return next(ladder for ladder in self.ladders if ladder.id == ladder_id)


class _CrossReferences:
    """Checks that need the whole policy: names that must exist, orders, agreements."""

    def __init__(self, policy: SchoolPolicy):
        self.policy = policy
        self.problems = Problems()
        self.add = self.problems.add
        self.threshold_names = [t.name for t in policy.thresholds]

    def check(self) -> Problems:
        policy = self.policy
        self.unique(("thresholds",), self.threshold_names, "name", "threshold")
        self.national_thresholds()
        self.figures_agree()
        self.first_day_after_register()
        self.unique(("ladders",), [ladder.id for ladder in policy.ladders], "id", "ladder")
        for i, ladder in enumerate(policy.ladders):
            self.ladder(("ladders", i), ladder)
        for i, rule in enumerate(policy.lateness.rules):
            self.threshold_ref(("lateness", "rules", i, "when"), rule.when)
        self.unique(("pauses",), [p.reason.value for p in policy.pauses], "reason", "pause")
        self.approvals()
        return self.problems

    def unique(self, at: Loc, names: list[str], key: str, what: str) -> None:
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                self.add((*at, i, key), f"{what} {name!r} is already at {at[-1]}[{seen[name]}]")
            seen.setdefault(name, i)

    def threshold_ref(self, loc: Loc, name: str) -> None:
        if name not in self.threshold_names:
            self.add(loc, _known(name, "threshold", self.threshold_names))

    def national_thresholds(self) -> None:
        by_name = {t.name: (i, t) for i, t in enumerate(self.policy.thresholds)}
        for name, (figure, op, value, source) in national_thresholds(self.policy.national).items():
            wanted = f"{figure} {op} {_shown(value)}"
            if name not in by_name:
                self.add("thresholds", f"the national threshold {name!r} is missing: {wanted}")
                continue
            i, threshold = by_name[name]
            if threshold.condition != wanted:
                self.add(
                    ("thresholds", i),
                    f"the national threshold {name!r} is {wanted} ({source}), "
                    f"not {threshold.condition}",
                )

    def figures_agree(self) -> None:
        figures, national = self.policy.figures, self.policy.national
        if figures.rolling_school_weeks != national.penalty_notice.school_weeks:
            self.add(
                ("figures", "rolling_school_weeks"),
                f"the penalty-notice period is {national.penalty_notice.school_weeks} school "
                "weeks (national.penalty_notice.school_weeks)",
            )
        limit = national.unexplained_code_resolution_school_days
        if figures.unexplained_resolution_school_days > limit:
            self.add(
                ("figures", "unexplained_resolution_school_days"),
                f"an N must be resolved within {limit} school days "
                "(national.unexplained_code_resolution_school_days)",
            )

    def first_day_after_register(self) -> None:
        closes = self.policy.register.am.closes
        episode = self.policy.absence_episode
        paths = [(("absence_episode",), episode)] + [
            (("absence_episode", name), variant)
            for name, variant in (
                ("safeguarding", episode.safeguarding),
                ("boarders", episode.boarders),
            )
            if variant is not None
        ]
        for at, path in paths:
            for i, contact in enumerate(path.first_day):
                if contact.due is not None and minutes(contact.due) < minutes(closes):
                    self.add(
                        (*at, "first_day", i, "due"),
                        f"due at {contact.due}, before the morning register closes at {closes}",
                    )

    def ladder(self, at: Loc, ladder: Ladder) -> None:
        ids = [s.id for s in ladder.stages]
        self.unique((*at, "stages"), ids, "id", "stage")
        if ladder.september_letter and not ladder.september_previous_year_pa:
            self.add((*at, "september_letter"), "needs september_previous_year_pa: true")
        reached: set[str] = set()
        for i, stage in enumerate(ladder.stages):
            loc = (*at, "stages", i)
            for j, name in enumerate(stage.enter_when):
                self.threshold_ref((*loc, "enter_when", j), name)
            self.variants(loc, stage)
            if stage.monitoring_school_weeks and stage.monitoring_weeks:
                self.add(
                    (*loc, "monitoring_weeks"), "give this or monitoring_school_weeks, not both"
                )
            target = stage.on_no_improvement
            if target is not None:
                if target not in ids:
                    self.add((*loc, "on_no_improvement"), _known(target, "stage", ids))
                elif ids.index(target) <= i:
                    self.add(
                        (*loc, "on_no_improvement"),
                        f"escalation moves up the ladder: {target!r} is not after {stage.id!r}",
                    )
                reached.add(target)
                if stage.review_period is None and not ladder.review_points:
                    self.add(
                        (*loc, "on_no_improvement"),
                        "no improvement by when? give the stage monitoring_school_weeks or "
                        "monitoring_weeks, or the ladder review_points",
                    )
            target = stage.on_improvement
            if target not in (None, "close"):
                if target not in ids:
                    self.add(
                        (*loc, "on_improvement"), _known(target, "stage", ids) + ", or 'close'"
                    )
                elif ids.index(target) >= i:
                    self.add(
                        (*loc, "on_improvement"),
                        f"improvement moves down the ladder: {target!r} is not before {stage.id!r}",
                    )
                reached.add(target)
            if stage.positive_letter and stage.on_improvement is None:
                self.add((*loc, "positive_letter"), "a positive letter needs on_improvement")
            self.legal(loc, stage)
        for i, stage in enumerate(ladder.stages[1:], start=1):
            if not (stage.enter_when or stage.staff_decision or stage.id in reached):
                self.add(
                    (*at, "stages", i),
                    f"stage {stage.id!r} can never be reached: no enter_when, no "
                    "staff_decision, and no stage moves to it",
                )

    def variants(self, loc: Loc, stage: Stage) -> None:
        last = len(stage.variants) - 1
        for k, (name, variant) in enumerate(stage.variants.items()):
            if variant.when is not None:
                self.threshold_ref((*loc, "variants", name, "when"), variant.when)
            elif k != last:
                self.add((*loc, "variants", name), "the default variant (no `when`) comes last")

    def legal(self, loc: Loc, stage: Stage) -> None:
        step, approver = stage.legal_step, stage.requires_approval_by
        if step.is_enforcement and not self.policy.enforcement.own_penalty_notice_ladder:
            self.add(
                (*loc, "legal_step"),
                f"{step} is not taken by a school without its own penalty-notice ladder "
                "(enforcement.own_penalty_notice_ladder: false): it seeks the LA's advice",
            )
        if not step.needs_approval:
            return
        if approver not in APPROVERS:
            self.add(
                (*loc, "requires_approval_by"),
                f"the legal step {step} is approved by the headteacher or the "
                f"senior_attendance_champion, not {approver or 'nobody'}",
            )
        elif (wanted := self.policy.approvals.get(step)) is None:
            self.add((*loc, "legal_step"), f"approvals has no entry for {step}")
        elif wanted != approver:
            self.add(
                (*loc, "requires_approval_by"),
                f"approvals gives {step} to {wanted}, not {approver}",
            )

    def approvals(self) -> None:
        if LegalStep.NONE in self.policy.approvals:
            self.add(("approvals", "none"), "'none' is not a legal step")
        enforcement = self.policy.enforcement
        if not enforcement.own_penalty_notice_ladder and enforcement.seeks_la_advice is None:
            self.add(
                ("enforcement", "seeks_la_advice"),
                "a school without its own penalty-notice ladder names who seeks the LA's advice",
            )
