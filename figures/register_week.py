"""The compact weekly register: one row per pupil per week, one class character per
session (models.codes), rebuilt from RegisterMark whenever marks change.

The figures read only these rows: whole weeks through their count columns, the edges of
a date range by counting characters of `marks`. Everything here is plain SQL that runs
on SQLite and PostgreSQL alike.
"""

from models.codes import (
    ABSENCE_RETURN_CLASSES,
    AUTHORISED_CLASSES,
    ILLNESS,
    LATE_CLASSES,
    NATIONAL_CODES,
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


CODE_CLASS_SQL = (
    "CASE code "
    + " ".join(f"WHEN {_quote(c.code)} THEN {_quote(c.cls)}" for c in NATIONAL_CODES.values())
    + " END"
)

_MARKS_SQL = " || ".join(
    f"COALESCE(MAX(CASE WHEN slot = {i} THEN cls END), '{NO_MARK}')" for i in range(SLOTS)
)

_WEEK_COLUMNS = (
    "pupil_id, week_start, marks, possible, present, authorised, illness, unauthorised, "
    "unexplained, late, trailing_absence, breaks_absence_run"
)


def rebuild_weeks_sql(affected_table: str) -> tuple[str, str]:
    """Two statements that rebuild the weeks listed in `affected_table`
    (pupil_id, week_start) from RegisterMark: delete, then insert."""
    delete = (
        f"DELETE FROM registerweek WHERE EXISTS (SELECT 1 FROM {affected_table} a "
        "WHERE a.pupil_id = registerweek.pupil_id AND a.week_start = registerweek.week_start)"
    )
    insert = f"""
        INSERT INTO registerweek ({_WEEK_COLUMNS})
        SELECT pupil_id, week_start, marks,
            {possible_in("marks")},
            {count_classes("marks", PRESENT_CLASSES)},
            {count_classes("marks", AUTHORISED_CLASSES)},
            {count_classes("marks", ILLNESS)},
            {count_classes("marks", UNAUTHORISED_CLASSES)},
            {count_classes("marks", UNEXPLAINED)},
            {count_classes("marks", LATE_CLASSES)},
            {trailing_absence_in("marks")},
            {count_classes("marks", PRESENT_CLASSES + AUTHORISED_CLASSES)} > 0
        FROM (
            SELECT m.pupil_id, m.week_start, {_MARKS_SQL} AS marks
            FROM (
                SELECT r.pupil_id, r.week_start, r.slot, {CODE_CLASS_SQL} AS cls
                FROM registermark r JOIN {affected_table} a
                  ON a.pupil_id = r.pupil_id AND a.week_start = r.week_start
            ) m
            GROUP BY m.pupil_id, m.week_start
        ) w
    """
    return delete, insert
