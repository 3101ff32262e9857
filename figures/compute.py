"""Every pupil's attendance figures as of a date: one set-based SQL statement per school.

Date ranges (this year, this half-term, the rolling school weeks) are worked out in
Python from the school's calendar; SQL then sums the compact weekly register, taking
whole weeks from its count columns and the weeks at either edge of a range by counting
characters of `marks`. Works the same on SQLite and PostgreSQL.
"""

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import text
from sqlmodel import Session

from figures.register_week import (
    SLOTS,
    count_classes,
    possible_in,
    trailing_absence_in,
)
from models.calendar import SchoolCalendar, load_calendar, week_start
from models.codes import (
    ABSENCE_RETURN_CLASSES,
    AUTHORISED_CLASSES,
    ILLNESS,
    LATE_CLASSES,
    PRESENT_CLASSES,
    UNAUTHORISED_CLASSES,
    UNEXPLAINED,
)
from models.figures import FigureRules, PupilFigures

# Which count column of RegisterWeek holds each class set for a whole week.
_COLUMNS = {
    "possible": None,
    PRESENT_CLASSES: "present",
    AUTHORISED_CLASSES: "authorised",
    ILLNESS: "illness",
    UNAUTHORISED_CLASSES: "unauthorised",
    UNEXPLAINED: "unexplained",
    LATE_CLASSES: "late",
}


@dataclass(frozen=True)
class DateRange:
    first: date
    last: date

    @property
    def empty(self) -> bool:
        return self.last < self.first


def _lit(day: date) -> str:
    return f"'{day.isoformat()}'"


def _first_slot(day: date) -> int:
    """1-based position in `marks` of `day`'s AM session (past the end for a weekend)."""
    return min(day.weekday(), 5) * 2 + 1


def _last_slot(day: date) -> int:
    """1-based position in `marks` of `day`'s PM session (the whole week for a weekend)."""
    return min(day.weekday() * 2 + 2, SLOTS)


def range_sum(classes: str, span: DateRange) -> str:
    """SQL summing, over a pupil's weeks, the sessions in `span` whose class is in
    `classes` (or "possible" for possible sessions)."""
    if span.empty:
        return "0"

    def count(expr: str) -> str:
        return possible_in(expr) if classes == "possible" else count_classes(expr, classes)

    column = "possible" if classes == "possible" else _COLUMNS[classes]
    first_week, last_week = week_start(span.first), week_start(span.last)
    start, end = _first_slot(span.first), _last_slot(span.last)
    if first_week == last_week:
        return (
            f"SUM(CASE WHEN w.week_start = {_lit(first_week)} "
            f"THEN {count(f'substr(w.marks, {start}, {max(end - start + 1, 0)})')} ELSE 0 END)"
        )
    return (
        f"SUM(CASE WHEN w.week_start > {_lit(first_week)} AND w.week_start < {_lit(last_week)}"
        f" THEN w.{column}"
        f" WHEN w.week_start = {_lit(first_week)} THEN {count(f'substr(w.marks, {start})')}"
        f" WHEN w.week_start = {_lit(last_week)} THEN {count(f'substr(w.marks, 1, {end})')}"
        " ELSE 0 END)"
    )


@dataclass(frozen=True)
class FigureRanges:
    """The date ranges one school's figures are computed over, as of a day."""

    as_of: date
    year: DateRange
    half_term: DateRange
    short_window: DateRange
    rolling_window: DateRange
    this_week: DateRange
    overdue_unexplained: DateRange
    earliest: date

    @classmethod
    def for_day(cls, calendar: SchoolCalendar, as_of: date, rules: FigureRules) -> "FigureRanges":
        year_start = calendar.year_start(as_of) or as_of + timedelta(days=1)
        term = calendar.half_term_of(as_of)
        term_start = term.starts if term else as_of + timedelta(days=1)
        rolling = calendar.school_weeks_back(as_of, rules.rolling_school_weeks)
        short = calendar.school_weeks_back(as_of, rules.short_window_school_weeks)
        earliest_week = calendar.school_weeks[0] if calendar.school_weeks else year_start
        rolling = rolling or earliest_week
        short = short or earliest_week
        cutoff = calendar.school_days_before(as_of, rules.unexplained_resolution_school_days)
        overdue_last = (cutoff - timedelta(days=1)) if cutoff else year_start - timedelta(days=1)
        return cls(
            as_of=as_of,
            year=DateRange(year_start, as_of),
            half_term=DateRange(max(term_start, year_start), as_of),
            short_window=DateRange(short, as_of),
            rolling_window=DateRange(rolling, as_of),
            this_week=DateRange(week_start(as_of), as_of),
            overdue_unexplained=DateRange(year_start, overdue_last),
            earliest=min(year_start, rolling),
        )


def figures_sql(ranges: FigureRanges) -> str:
    """The one statement computing every pupil's figure sums for a school (:school_id)."""
    r = ranges
    this_week = _lit(week_start(r.as_of))
    partial = f"substr(w.marks, 1, {_last_slot(r.as_of)})"
    partial_breaks = f"{count_classes(partial, PRESENT_CLASSES + AUTHORISED_CLASSES)} > 0"
    return f"""
    WITH w AS (
        SELECT rw.* FROM registerweek rw JOIN pupil p ON p.id = rw.pupil_id
        WHERE p.school_id = :school_id AND p.on_roll
          AND rw.week_start >= {_lit(week_start(r.earliest))} AND rw.week_start <= {this_week}
    ),
    last_break AS (
        SELECT w.pupil_id,
            MAX(CASE WHEN w.week_start < {this_week} AND w.breaks_absence_run
                THEN w.week_start END) AS week_start,
            MAX(CASE WHEN w.week_start = {this_week} AND {partial_breaks}
                THEN 1 ELSE 0 END) AS this_week
        FROM w GROUP BY w.pupil_id
    )
    SELECT p.id,
        COALESCE({range_sum("possible", r.year)}, 0),
        COALESCE({range_sum(PRESENT_CLASSES, r.year)}, 0),
        COALESCE({range_sum(AUTHORISED_CLASSES, r.year)}, 0),
        COALESCE({range_sum(UNAUTHORISED_CLASSES, r.year)}, 0),
        COALESCE({range_sum(UNEXPLAINED, r.year)}, 0),
        COALESCE({range_sum(ILLNESS, r.year)}, 0),
        COALESCE({range_sum("possible", r.half_term)}, 0),
        COALESCE({range_sum(PRESENT_CLASSES, r.half_term)}, 0),
        COALESCE({range_sum("possible", r.short_window)}, 0),
        COALESCE({range_sum(PRESENT_CLASSES, r.short_window)}, 0),
        COALESCE({range_sum("possible", r.rolling_window)}, 0),
        COALESCE({range_sum(PRESENT_CLASSES, r.rolling_window)}, 0),
        COALESCE({range_sum(UNAUTHORISED_CLASSES, r.rolling_window)}, 0),
        COALESCE({range_sum(UNEXPLAINED, r.overdue_unexplained)}, 0),
        COALESCE({range_sum(LATE_CLASSES, r.this_week)}, 0),
        COALESCE(CASE WHEN MAX(lb.this_week) = 1 THEN
            SUM(CASE WHEN w.week_start = {this_week}
                THEN {trailing_absence_in(partial)} ELSE 0 END)
        ELSE
            SUM(CASE
                WHEN w.week_start = {this_week}
                    THEN {count_classes(partial, ABSENCE_RETURN_CLASSES)}
                WHEN lb.week_start IS NULL OR w.week_start > lb.week_start
                    THEN w.unauthorised + w.unexplained
                WHEN w.week_start = lb.week_start THEN w.trailing_absence
                ELSE 0 END)
        END, 0)
    FROM pupil p
    LEFT JOIN w ON w.pupil_id = p.id
    LEFT JOIN last_break lb ON lb.pupil_id = p.id
    WHERE p.school_id = :school_id AND p.on_roll
    GROUP BY p.id
    ORDER BY p.id
    """


def _rate(present: int, possible: int) -> float | None:
    return round(100.0 * present / possible, 2) if possible else None


def compute_figures(
    *,
    session: Session,
    school_id: int,
    as_of: date,
    rules: FigureRules,
    calendar: SchoolCalendar | None = None,
) -> list[PupilFigures]:
    """Every pupil on the school's roll, with figures as of the end of `as_of`."""
    calendar = calendar or load_calendar(session=session, school_id=school_id)
    ranges = FigureRanges.for_day(calendar, as_of, rules)
    rows = session.connection().execute(text(figures_sql(ranges)), {"school_id": school_id})
    result = []
    for (
        pupil_id,
        possible,
        present,
        authorised,
        unauthorised,
        unexplained,
        illness,
        possible_ht,
        present_ht,
        possible_short,
        present_short,
        possible_roll,
        present_roll,
        unauthorised_roll,
        overdue,
        late,
        run,
    ) in rows:
        absent = possible - present
        result.append(
            PupilFigures(
                pupil_id=pupil_id,
                as_of=as_of,
                possible_year=possible,
                present_year=present,
                authorised_year=authorised,
                unauthorised_year=unauthorised,
                unexplained_year=unexplained,
                rate_year=_rate(present, possible),
                possible_half_term=possible_ht,
                rate_half_term=_rate(present_ht, possible_ht),
                rate_short_window=_rate(present_short, possible_short),
                rate_rolling_window=_rate(present_roll, possible_roll),
                unauthorised_rolling_window=unauthorised_roll,
                persistent_absence=possible >= rules.persistent_absence_min_possible
                and absent * 100 >= rules.persistent_absence_rate * possible,
                severe_absence=possible >= rules.persistent_absence_min_possible
                and absent * 100 >= rules.severe_absence_rate * possible,
                unauthorised_run_days=run / 2,
                illness_days_year=illness / 2,
                overdue_unexplained=overdue,
                late_this_week=late,
            )
        )
    return result
