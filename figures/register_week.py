"""The weekly register: one row per pupil per week holding each session's code, minutes
late and entry (who recorded it, when) in `sessions`, with one class character per session
(models.codes) and the week's counts, all written by `imports.marks` in the transaction
that changes the marks; `registermark` is a view of it, a row per mark.

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

# The register itself: `sessions` holds each session in a fixed-width slot of text, its
# code padded with spaces, its minutes late right-aligned, and its entry (the
# ImportBatch's id) right-aligned; a slot of spaces is a session with no mark.
CODE_WIDTH, MINUTES_WIDTH, ENTRY_WIDTH = 2, 3, 8
CODE_AT, MINUTES_AT, ENTRY_AT = 0, CODE_WIDTH, CODE_WIDTH + MINUTES_WIDTH  # in a slot
SESSION_WIDTH = CODE_WIDTH + MINUTES_WIDTH + ENTRY_WIDTH
MAX_MINUTES_LATE = 10**MINUTES_WIDTH - 1
EMPTY_SESSION = " " * SESSION_WIDTH
EMPTY_SESSIONS = EMPTY_SESSION * SLOTS


def _merge_week_sql(guarded: bool) -> str:
    """Write a week's new marks into the stored week from the slot :first to the end of
    the week, which has no mark yet (as the next day of a week finds it): `marks` and
    `sessions` keep their first :first slots and take the rest from the parameters
    `marks_from` and `sessions_from`; the counts are the new marks' own (as NEW_WEEK_SQL
    inserts them), and simply add up, and the trailing absence is the new sessions' own
    if they break the run, or adds to the stored one.

    `guarded`: a stored week with a mark from :first on is left as it is and not counted
    in the statement's rowcount, for a database where another transaction may write the
    week after this one has looked at it. With SQLite the import holds the write lock
    from before it looks (imports.marks._hold_the_register)."""
    merge = {
        column: f"substr({column}, 1, :first * {width}) || :{column}_from"
        for column, width in (("marks", 1), ("sessions", SESSION_WIDTH))
    }
    merge |= {name: f"{name} + :{name}" for name in (*PACKED_COUNTS, "late", "counts")}
    merge |= {
        "breaks_absence_run": "breaks_absence_run OR :breaks_absence_run",
        "trailing_absence": "CASE WHEN :breaks_absence_run THEN :trailing_absence"
        " ELSE trailing_absence + :trailing_absence END",
    }
    guard = f" AND trim(substr(sessions, :first * {SESSION_WIDTH} + 1)) = ''" if guarded else ""
    return (
        "UPDATE registerweek SET "
        + ", ".join(f"{column} = {value}" for column, value in merge.items())
        + " WHERE pupil_id = :pupil_id AND week_start = :week_start"
        + guard
    )


def register_mark_view_sql(dialect: str) -> str:
    """The `registermark` view: the weekly register as one row per marked session."""
    sessions = " UNION ALL ".join(
        f"SELECT {slot} AS slot, {slot // 2} AS day_offset, '{'PM' if slot % 2 else 'AM'}'"
        " AS session"
        for slot in range(SLOTS)
    )
    if dialect == "postgresql":
        day = "w.week_start + s.day_offset"
    else:
        day = "date(w.week_start, '+' || s.day_offset || ' days')"

    def sql_slot(at: int, width: int) -> str:
        return f"substr(w.sessions, s.slot * {SESSION_WIDTH} + {at + 1}, {width})"

    minutes = sql_slot(MINUTES_AT, MINUTES_WIDTH)
    return f"""
        CREATE VIEW registermark AS
        SELECT w.pupil_id AS pupil_id, {day} AS day, s.session AS session,
            rtrim({sql_slot(CODE_AT, CODE_WIDTH)}) AS code,
            CAST(nullif(trim({minutes}), '') AS INTEGER) AS minutes_late,
            b.imported_by AS recorded_by, b.imported_at AS recorded_at,
            w.week_start AS week_start, s.slot AS slot, b.id AS batch_id
        FROM registerweek w
        CROSS JOIN ({sessions}) s
        JOIN importbatch b
            ON b.id = CAST(nullif(trim({sql_slot(ENTRY_AT, ENTRY_WIDTH)}), '') AS INTEGER)
        WHERE {sql_slot(CODE_AT, CODE_WIDTH)} <> '{" " * CODE_WIDTH}'
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

_WEEK_ROW = ("pupil_id", "week_start", "marks", "sessions", *WEEK_COLUMNS)
MERGE_WEEK_SQL = _merge_week_sql(guarded=False)
GUARDED_MERGE_WEEK_SQL = _merge_week_sql(guarded=True)
NEW_WEEK_SQL = (
    f"INSERT INTO registerweek ({', '.join(_WEEK_ROW)}) VALUES"
    f" ({', '.join(':' + c for c in _WEEK_ROW)}) ON CONFLICT (pupil_id, week_start) DO NOTHING"
)
