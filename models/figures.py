"""A pupil's attendance figures as of a date: what the sweep compares with the policy."""

from dataclasses import asdict, dataclass, fields
from datetime import date


@dataclass(frozen=True)
class FigureRules:
    """The numbers the figures depend on; they come from the school's policy."""

    persistent_absence_rate: float = 10.0  # absent this % of possible sessions or more: PA
    severe_absence_rate: float = 50.0  # absent this % or more: SA
    persistent_absence_min_possible: int = 20  # no PA/SA before this many possible sessions
    rolling_school_weeks: int = 10  # the National Framework's penalty-notice period
    short_window_school_weeks: int = 4
    unexplained_resolution_school_days: int = 5  # N must be resolved within this


@dataclass(frozen=True)
class PupilFigures:
    pupil_id: int
    as_of: date
    possible_year: int
    present_year: int
    authorised_year: int
    unauthorised_year: int  # G, O, U
    unexplained_year: int  # N
    rate_year: float | None  # attendance %, None before any possible session
    possible_half_term: int
    rate_half_term: float | None
    rate_short_window: float | None  # rolling FigureRules.short_window_school_weeks
    rate_rolling_window: float | None  # rolling FigureRules.rolling_school_weeks
    unauthorised_rolling_window: int  # G, O, U sessions: the penalty-notice threshold figure
    persistent_absence: bool
    severe_absence: bool
    unauthorised_run_days: float  # consecutive school days of N, O, G, U up to as_of
    illness_days_year: float  # I sessions / 2
    overdue_unexplained: int  # N marks older than the resolution period
    late_this_week: int  # L and U marks in as_of's week

    def as_dict(self) -> dict:
        d = asdict(self)
        d["as_of"] = self.as_of.isoformat()
        return d


FIGURE_NAMES: tuple[str, ...] = tuple(
    f.name for f in fields(PupilFigures) if f.name not in ("pupil_id", "as_of")
)
