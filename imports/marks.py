"""Storing register marks: the one path every import (CSV, CTF, demo data) takes.

A batch is validated whole before anything is written; a bad batch raises
ImportRefused listing every offending line, and the caller's transaction writes
nothing. A mark that differs from the stored one becomes an amendment that keeps the
original entry, with its reason and author, as the 2024 regulations require.

Built for a local authority's day (460,000 marks in 600 files) and a term's history (30
million): a good batch is checked per distinct UPN, day and code rather than per line,
and the marks and weekly rows go to the driver's own executemany as tuples already in
the form SQLAlchemy would store (its per-row parameter handling costs more than SQLite's
insert).
"""

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from operator import itemgetter

from sqlalchemy import Column, Select, bindparam, insert, select, text, update
from sqlalchemy.engine import Connection, Dialect
from sqlmodel import Session

from figures.calendars import school_calendar
from figures.register_week import EMPTY_WEEK, UPSERT_WEEK_SQL, WEEK_COLUMNS, slot_of, week_counts
from models.calendar import SchoolCalendar, load_calendar, week_start
from models.codes import NATIONAL_CODES, UnknownCodeError
from models.tables import (
    ImportBatch,
    MarkAmendment,
    Pupil,
    RegisterMark,
    RegisterSession,
    RegisterWeek,
)

__all__ = [
    "ImportRefused",
    "ImportResult",
    "MarkRow",
    "Progress",
    "SchoolCalendar",
    "load_calendar",
    "paused_gc",
    "school_roll",
    "update_weeks",
    "store_marks",
]

Progress = Callable[[int, int], None]


@dataclass(frozen=True, init=False)
class MarkRow:
    line: int  # where the mark came from, for error messages (file line or position)
    upn: str
    day: date
    session: RegisterSession
    code: str
    minutes_late: int | None = None
    reason: str | None = None  # why a stored mark is being changed, if it is

    def __init__(
        self,
        line: int,
        upn: str,
        day: date,
        session: RegisterSession,
        code: str,
        minutes_late: int | None = None,
        reason: str | None = None,
    ):
        # Made by the hundred thousand: setting one dict takes half the time of the
        # generated frozen __init__, which calls object.__setattr__ once per field.
        object.__setattr__(
            self,
            "__dict__",
            {
                "line": line,
                "upn": upn,
                "day": day,
                "session": session,
                "code": code,
                "minutes_late": minutes_late,
                "reason": reason,
            },
        )


@dataclass
class ImportResult:
    rows: int = 0
    added: int = 0
    amended: int = 0
    unchanged: int = 0
    already_imported: bool = False


@dataclass
class ImportRefused(Exception):
    """A file refused whole: every problem, one per offending line; nothing was stored."""

    source: str
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        shown = self.problems[:50]
        more = len(self.problems) - len(shown)
        lines = [f"{self.source}: refused, nothing was stored ({len(self.problems)} problem(s))"]
        lines += [f"  {p}" for p in shown]
        if more:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)


def school_roll(session: Session, school_id: int) -> dict[str, int]:
    """UPN to pupil id for every pupil of the school, on roll or not (a mark may be for
    a pupil who has since left)."""
    pupil = Pupil.__table__
    found = session.connection().execute(
        select(pupil.c.upn, pupil.c.id).where(pupil.c.school_id == school_id)
    )
    return dict(found.all())


def update_weeks(
    *, session: Session, school_id: int, marks: Iterable[tuple[int, date, int, str]]
) -> None:
    """Write these marks, as (pupil id, week start, slot, class), into the school's
    weekly register rows."""
    marks = list(marks)
    if not marks:
        return
    connection = session.connection()
    to_day = _to_driver(connection, RegisterWeek.__table__.c.week_start)
    stored_form = {start: to_day(start) for start in {start for _, start, _, _ in marks}}
    stored = {
        (pupil_id, start): text_
        for pupil_id, start, text_ in _fetch(
            connection,
            "stored weeks",
            school_id=school_id,
            first_week=min(stored_form.values()),
            last_week=max(stored_form.values()),
        )
    }
    patched: dict[tuple[int, date], list[str]] = {}
    for pupil_id, start, slot, cls in marks:
        key = (pupil_id, stored_form[start])
        slots = patched.get(key)
        if slots is None:
            slots = patched[key] = list(stored.get(key, EMPTY_WEEK))
        slots[slot] = cls
    # Week by week: the rows of a school's week end up side by side, so the next day's
    # marks rewrite a few pages of the table rather than one per pupil.
    rows = []
    for (pupil_id, start), slots in sorted(patched.items(), key=lambda item: item[0][::-1]):
        text_ = "".join(slots)
        rows.append((pupil_id, start, text_, *week_counts(text_)))
    _executemany(connection, "weeks", rows)


def store_marks(
    *,
    session: Session,
    school_id: int,
    rows: Sequence[MarkRow],
    recorded_by: str,
    role: str,
    source: str,
    kind: str,
    sha256: str,
    default_reason: str | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
    roll: dict[str, int] | None = None,
) -> ImportResult:
    """Validate a batch of marks whole, then write it in the caller's transaction.

    Raises ImportRefused (nothing written) listing every bad line. A batch whose file
    hash was already imported for this school changes nothing. `roll` is the school's
    roll as `school_roll` gives it, if the caller has just read it (after a flush).
    """
    session.flush()  # pupils the caller has just added are on the roll
    connection = session.connection()
    if _fetch(connection, "imported", school_id=school_id, sha256=sha256):
        return ImportResult(rows=len(rows), already_imported=True)

    now = now or datetime.now(UTC)
    pupils = roll if roll is not None else school_roll(session, school_id)
    calendar = school_calendar(session, school_id)
    with paused_gc():
        keys = [(pupils.get(row.upn), row.day, row.session) for row in rows]
        if not _all_good(rows, pupils, calendar, distinct=len(set(keys))):
            raise ImportRefused(source, _problems(rows, pupils, calendar))

        mark = RegisterMark.__table__
        to_day = _to_driver(connection, mark.c.day)
        recorded_at = _to_driver(connection, mark.c.recorded_at)(now)
        places = {}  # (day, session) -> the day as stored, its week, as stored, and slot
        for day, session_ in {key[1:] for key in keys}:
            start = week_start(day)
            places[day, session_] = (
                to_day(day),
                start,
                to_day(start),
                slot_of(day.weekday(), session_),
            )
        stored = _stored_marks(connection, school_id, places)
        classes = {code: c.cls for code, c in NATIONAL_CODES.items()}
        new_marks: list[tuple] = []
        week_marks: list[tuple[int, date, int, str]] = []
        changes: list[tuple[MarkRow, tuple[str, int | None]]] = []
        unchanged = 0
        problems: list[str] = []
        for row, key in zip(rows, keys, strict=True):
            pupil_id, _, session_ = key
            day, start, start_value, slot = places[key[1:]]
            before = stored.get((pupil_id, day, session_)) if stored else None
            if before is None:
                new_marks.append(
                    (
                        pupil_id,
                        day,
                        str(session_),
                        row.code,
                        row.minutes_late,
                        recorded_by,
                        recorded_at,
                        start_value,
                        slot,
                    )
                )
                week_marks.append((pupil_id, start, slot, classes[row.code]))
            elif before == (row.code, row.minutes_late):
                unchanged += 1
            elif not (row.reason or default_reason):
                problems.append(
                    f"line {row.line}: changes the stored mark {before[0]} to {row.code} for "
                    f"{row.day.isoformat()} {row.session}; an amendment needs a reason"
                )
            else:
                changes.append((row, before))
                week_marks.append((pupil_id, start, slot, classes[row.code]))
        if problems:
            raise ImportRefused(source, problems)

        total = len(new_marks) + len(changes)
        # In the unique index's order (week, pupil, day, session): each insert lands next
        # to the one before.
        new_marks.sort(key=_INDEX_ORDER)
        for first in range(0, len(new_marks), _CHUNK):
            _executemany(connection, "marks", new_marks[first : first + _CHUNK])
            if progress:
                progress(min(first + _CHUNK, len(new_marks)), total)
        if changes:
            connection.execute(
                update(mark)
                .where(
                    mark.c.week_start == bindparam("p_week_start"),  # the unique index's lead
                    mark.c.pupil_id == bindparam("p_pupil_id"),
                    mark.c.day == bindparam("p_day"),
                    mark.c.session == bindparam("p_session"),
                )
                .values(
                    code=bindparam("p_code"),
                    minutes_late=bindparam("p_minutes_late"),
                    recorded_by=bindparam("p_recorded_by"),
                    recorded_at=bindparam("p_recorded_at"),
                ),
                [
                    {
                        "p_week_start": week_start(row.day),
                        "p_pupil_id": pupils[row.upn],
                        "p_day": row.day,
                        "p_session": str(row.session),
                        "p_code": row.code,
                        "p_minutes_late": row.minutes_late,
                        "p_recorded_by": recorded_by,
                        "p_recorded_at": now,
                    }
                    for row, _ in changes
                ],
            )
            connection.execute(
                insert(MarkAmendment),
                [
                    {
                        "pupil_id": pupils[row.upn],
                        "day": row.day,
                        "session": str(row.session),
                        "original_code": before[0],
                        "new_code": row.code,
                        "original_minutes_late": before[1],
                        "new_minutes_late": row.minutes_late,
                        "reason": row.reason or default_reason,
                        "amended_by": recorded_by,
                        "amended_role": role,
                        "amended_at": now,
                    }
                    for row, before in changes
                ],
            )
            if progress:
                progress(total, total)

        update_weeks(session=session, school_id=school_id, marks=week_marks)
        result = ImportResult(
            rows=len(rows), added=len(new_marks), amended=len(changes), unchanged=unchanged
        )
        imported_at = _to_driver(connection, ImportBatch.__table__.c.imported_at)(now)
        _executemany(
            connection,
            "batch",
            [
                (
                    school_id,
                    kind,
                    source,
                    sha256,
                    imported_at,
                    recorded_by,
                    result.rows,
                    result.added,
                    result.amended,
                    result.unchanged,
                )
            ],
        )
        return result


_CHUNK = 20_000


# A new mark's key in registermark's unique index (week, pupil, day, session); the week
# as stored sorts as the week does.
_INDEX_ORDER = itemgetter(7, 0, 1, 2)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: a batch is hundreds of thousands of small
    objects and no cycles, which it would only rescan again and again (about a third of
    the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _all_good(
    rows: Sequence[MarkRow], pupils: dict[str, int], calendar: SchoolCalendar, distinct: int
) -> bool:
    """Whether the batch has no problem, from its distinct UPNs, codes, days and minutes
    and its `distinct` (pupil, day, session) keys: a few set operations."""
    return (
        {row.upn for row in rows} <= pupils.keys()
        and {row.code for row in rows} <= NATIONAL_CODES.keys()
        and all(map(calendar.is_school_day, {row.day for row in rows}))
        and all(m >= 0 for m in {row.minutes_late for row in rows} - {None})
        and distinct == len(rows)
    )


def _problems(rows: Sequence[MarkRow], pupils: dict[str, int], calendar: SchoolCalendar):
    """Every problem with the batch, one per offending line, in line order."""
    problems: list[str] = []
    seen: dict[tuple[str, date, str], int] = {}
    for row in rows:
        where = f"line {row.line}"
        if row.upn not in pupils:
            problems.append(f"{where}: UPN {row.upn} is not on this school's roll")
        if row.code not in NATIONAL_CODES:
            problems.append(f"{where}: {UnknownCodeError.for_code(row.code)}")
        if not calendar.is_school_day(row.day):
            problems.append(f"{where}: {calendar.why_not_a_school_day(row.day)}")
        if row.minutes_late is not None and row.minutes_late < 0:
            problems.append(f"{where}: minutes late cannot be negative ({row.minutes_late})")
        key = (row.upn, row.day, str(row.session))
        if key in seen:
            problems.append(
                f"{where}: the same pupil, day and session as line {seen[key]} "
                f"({row.day.isoformat()} {row.session})"
            )
        else:
            seen[key] = row.line
    return problems


def _stored_marks(
    connection: Connection, school_id: int, places: dict[tuple[date, str], tuple]
) -> dict[tuple[int, str, str], tuple[str, int | None]]:
    """The stored marks the batch could touch, by (pupil id, day as stored, session): this
    school's pupils on the batch's days (for a day's import, that day), week by week."""
    weeks: dict[str, list[str]] = {}
    for day, _, start, _ in places.values():
        weeks.setdefault(start, []).append(day)
    stored = {}
    for start, days in sorted(weeks.items()):
        found = _fetch(
            connection,
            "stored marks",
            school_id=school_id,
            week=start,
            first=min(days),
            last=max(days),
        )
        stored.update(((p, d, s), (c, m)) for p, d, s, c, m in found)
    return stored


def _queries() -> dict[str, Select]:
    """The reads of every batch, each run through `_fetch`; parameters are bound as the
    driver takes them (a day as stored) and rows come back as the driver gives them."""
    batch, pupil = ImportBatch.__table__, Pupil.__table__
    mark, week = RegisterMark.__table__, RegisterWeek.__table__
    school = bindparam("school_id")
    return {
        "imported": select(batch.c.id).where(
            batch.c.school_id == school, batch.c.sha256 == bindparam("sha256")
        ),
        "stored marks": select(
            mark.c.pupil_id, mark.c.day, mark.c.session, mark.c.code, mark.c.minutes_late
        )
        .join(pupil, pupil.c.id == mark.c.pupil_id)
        .where(
            pupil.c.school_id == school,
            # One week: the pupils' runs of the unique index are found by (week, pupil).
            mark.c.week_start == bindparam("week"),
            mark.c.day >= bindparam("first"),
            mark.c.day <= bindparam("last"),
        ),
        "stored weeks": select(week.c.pupil_id, week.c.week_start, week.c.marks)
        .join(pupil, pupil.c.id == week.c.pupil_id)
        .where(
            pupil.c.school_id == school,
            week.c.week_start >= bindparam("first_week"),
            week.c.week_start <= bindparam("last_week"),
        ),
    }


_QUERIES = _queries()


def _fetch(connection: Connection, name: str, **params) -> list[tuple]:
    """Run a _QUERIES statement straight through the driver: SQLAlchemy's per-statement
    work costs more than these index look-ups, once per file of a local authority's day."""
    sql, order = _driver_sql(name, connection.dialect)
    values = params if order is None else tuple(params[key] for key in order)
    return connection.exec_driver_sql(sql, values).fetchall()


# The bulk statements, and the order of the values in each row passed to _executemany.
_BULK = {
    "marks": (
        insert(RegisterMark.__table__),
        (
            "pupil_id",
            "day",
            "session",
            "code",
            "minutes_late",
            "recorded_by",
            "recorded_at",
            "week_start",
            "slot",
        ),
    ),
    "weeks": (text(UPSERT_WEEK_SQL), ("pupil_id", "week_start", "marks", *WEEK_COLUMNS)),
    "batch": (
        insert(ImportBatch.__table__),
        (
            "school_id",
            "kind",
            "filename",
            "sha256",
            "imported_at",
            "imported_by",
            "rows",
            "added",
            "amended",
            "unchanged",
        ),
    ),
}


def _executemany(connection: Connection, name: str, rows: list[tuple]) -> None:
    """Run a _BULK statement once per row, straight through the driver's executemany."""
    if not rows:
        return
    sql, order = _driver_sql(name, connection.dialect)
    if order is None:  # a driver taking named parameters
        keys = _BULK[name][1]
        rows = [dict(zip(keys, row, strict=True)) for row in rows]
    elif order != tuple(range(len(order))):
        rows = [tuple(row[i] for i in order) for row in rows]
    connection.exec_driver_sql(sql, rows)


@lru_cache(maxsize=16)
def _driver_sql(name: str, dialect: Dialect) -> tuple[str, tuple | None]:
    """A _BULK or _QUERIES statement compiled for the dialect, in its driver's parameter
    style, and for a positional style where each parameter is: its place in our rows
    (_BULK) or its name (_QUERIES)."""
    if name in _QUERIES:
        compiled = _QUERIES[name].compile(dialect=dialect)
        return compiled.string, tuple(compiled.positiontup) if compiled.positional else None
    statement, keys = _BULK[name]
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    if not compiled.positional:
        return compiled.string, None
    return compiled.string, tuple(keys.index(key) for key in compiled.positiontup)


def _to_driver(connection: Connection, column: Column) -> Callable:
    """How SQLAlchemy hands the column's values to the driver (SQLite keeps a date as
    'YYYY-MM-DD' and a datetime as 'YYYY-MM-DD HH:MM:SS.ffffff'), to apply once per
    distinct value."""
    dialect = connection.dialect
    return column.type.dialect_impl(dialect).bind_processor(dialect) or (lambda value: value)
