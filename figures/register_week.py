"""The compact weekly register: one row per pupil per week, one class character per
session (models.codes), kept up to date by `store_marks` in the transaction that
changes the marks.

The figures read only these rows: whole weeks through their count columns, the edges of
a date range by counting characters of `marks`. Everything here is plain SQL that runs
on SQLite and PostgreSQL alike.
"""

from functools import lru_cache

from models.codes import (
    ABSENCE_RETURN_CLASSES,
    AUTHORISED_CLASSES,
    ILLNESS,
    LATE_CLASSES,
    NO_MARK,
    NOT_POSSIBLE,
    PRESENT_CLASSES,
    UNAUTHORISED_CLASSES,
    UNEXPLAINED,
)

SLOTS = 10  # Mon AM ... Fri PM


def slot_of(weekday: int, session: str) -> int:
    return weekday * 2 + (1 if session == "PM" else 0)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def count_classes(expr: str, classes: str) -> str:
    """SQL counting the characters of `expr` that are in `classes`."""
    stripped = expr
    for cls in classes:
        stripped = f"replace({stripped}, {_quote(cls)}, '')"
    return f"(length({expr}) - length({stripped}))"


def possible_in(expr: str) -> str:
    return f"(length({expr}) - {count_classes(expr, NO_MARK + NOT_POSSIBLE)})"


def trailing_absence_in(expr: str) -> str:
    """SQL counting the N, O, G, U sessions after the last session that breaks a run of
    absence (present or authorised). Sessions with no mark or not possible are neutral."""
    neutral = ABSENCE_RETURN_CLASSES + NO_MARK + NOT_POSSIBLE
    tail = f"substr({expr}, length(rtrim({expr}, {_quote(neutral)})) + 1)"
    return count_classes(tail, ABSENCE_RETURN_CLASSES)


# The whole-week counts that the figures sum over date ranges, packed PACK_BITS bits each
# (the first in the lowest bits) into RegisterWeek.counts: one SUM over a range then adds
# all six, and the figures statement does a sixth of the work per week row. A sum of up
# to MAX_PACKED_WEEKS weeks cannot carry one count into the next.
PACKED_COUNTS = ("possible", "present", "authorised", "illness", "unauthorised", "unexplained")
PACK_BITS = 10
MAX_PACKED_WEEKS = ((1 << PACK_BITS) - 1) // SLOTS


def packed_count(expr: str, name: str) -> str:
    """SQL taking the count `name` (one of PACKED_COUNTS) out of a packed `expr`."""
    shift = PACKED_COUNTS.index(name) * PACK_BITS
    return f"(({expr} >> {shift}) & {(1 << PACK_BITS) - 1})"


def packed_counts_sql(prefix: str = "") -> str:
    """SQL packing a row's own count columns as RegisterWeek.counts holds them."""
    return " + ".join(
        f"({prefix}{name} << {i * PACK_BITS})" for i, name in enumerate(PACKED_COUNTS)
    )


@lru_cache(maxsize=1 << 16)
def week_counts(marks: str) -> tuple[int, int, int, int, int, int, int, int, bool, int]:
    """The count columns of RegisterWeek for a week's `marks`, in column order after
    `marks` (WEEK_COLUMNS). Cached: most weeks of most pupils look alike."""
    present = sum(marks.count(c) for c in PRESENT_CLASSES)
    authorised = sum(marks.count(c) for c in AUTHORISED_CLASSES)
    summed = (  # in PACKED_COUNTS' order
        len(marks) - marks.count(NO_MARK) - marks.count(NOT_POSSIBLE),
        present,
        authorised,
        marks.count(ILLNESS),
        sum(marks.count(c) for c in UNAUTHORISED_CLASSES),
        marks.count(UNEXPLAINED),
    )
    tail = marks[len(marks.rstrip(_RUN_NEUTRAL)) :]
    return (
        *summed,
        sum(marks.count(c) for c in LATE_CLASSES),
        sum(tail.count(c) for c in ABSENCE_RETURN_CLASSES),
        present + authorised > 0,
        sum(count << (i * PACK_BITS) for i, count in enumerate(summed)),
    )


_RUN_NEUTRAL = ABSENCE_RETURN_CLASSES + NO_MARK + NOT_POSSIBLE
EMPTY_WEEK = NO_MARK * SLOTS

UPSERT_WEEK_SQL = """
    INSERT INTO registerweek (pupil_id, week_start, marks, possible, present, authorised,
        illness, unauthorised, unexplained, late, trailing_absence, breaks_absence_run,
        counts)
    VALUES (:pupil_id, :week_start, :marks, :possible, :present, :authorised, :illness,
        :unauthorised, :unexplained, :late, :trailing_absence, :breaks_absence_run, :counts)
    ON CONFLICT (pupil_id, week_start) DO UPDATE SET marks = excluded.marks,
        possible = excluded.possible, present = excluded.present,
        authorised = excluded.authorised, illness = excluded.illness,
        unauthorised = excluded.unauthorised, unexplained = excluded.unexplained,
        late = excluded.late, trailing_absence = excluded.trailing_absence,
        breaks_absence_run = excluded.breaks_absence_run, counts = excluded.counts
"""
# The count columns of RegisterWeek, in the order week_counts gives them.
WEEK_COLUMNS = (
    "possible",
    "present",
    "authorised",
    "illness",
    "unauthorised",
    "unexplained",
    "late",
    "trailing_absence",
    "breaks_absence_run",
    "counts",
)
