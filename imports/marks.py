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

from sqlalchemy import Column, Select, bindparam, insert, select, text
from sqlalchemy.engine import Connection, Dialect
from sqlmodel import Session

from figures.calendars import school_calendar
from figures.register_week import (
    CODE_WIDTH,
    EMPTY_CODES,
    EMPTY_ENTRIES,
    EMPTY_MINUTES,
    EMPTY_WEEK,
    ENTRY_WIDTH,
    MAX_MINUTES_LATE,
    MINUTES_WIDTH,
    REGISTER_COLUMNS,
    UPSERT_WEEK_SQL,
    WEEK_COLUMNS,
    slot_of,
    week_counts,
)
from models.calendar import SchoolCalendar, load_calendar, week_start
from models.codes import NATIONAL_CODES, UnknownCodeError
from models.tables import (
    ImportBatch,
    MarkAmendment,
    Pupil,
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

        to_day = _to_driver(connection, RegisterWeek.__table__.c.week_start)
        places = {}  # (day, session) -> the week as stored, and the slot
        for day, session_ in {key[1:] for key in keys}:
            places[day, session_] = (to_day(week_start(day)), slot_of(day.weekday(), session_))
        weeks = _stored_weeks(connection, school_id, {start for start, _ in places.values()})
        writes: list[tuple[tuple[int, str], int, str, int | None]] = []
        changes: list[tuple[MarkRow, tuple[str, int | None]]] = []
        unchanged = 0
        problems: list[str] = []
        for row, key in zip(rows, keys, strict=True):
            start, slot = places[key[1:]]
            week = (key[0], start)
            stored = weeks.get(week)
            before = stored.mark(slot) if stored else None
            if before is None:
                writes.append((week, slot, row.code, row.minutes_late))
            elif before == (row.code, row.minutes_late):
                unchanged += 1
            elif not (row.reason or default_reason):
                problems.append(
                    f"line {row.line}: changes the stored mark {before[0]} to {row.code} for "
                    f"{row.day.isoformat()} {row.session}; an amendment needs a reason"
                )
            else:
                changes.append((row, before))
                writes.append((week, slot, row.code, row.minutes_late))
        if problems:
            raise ImportRefused(source, problems)

        result = ImportResult(
            rows=len(rows),
            added=len(writes) - len(changes),
            amended=len(changes),
            unchanged=unchanged,
        )
        days = [row.day for row in rows]
        entry = _record_batch(
            connection,
            school_id=school_id,
            kind=kind,
            source=source,
            sha256=sha256,
            at=now,
            by=recorded_by,
            result=result,
            days=(min(days), max(days)) if days else None,
        )
        _write_weeks(connection, weeks, writes, entry)
        if changes:
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
            progress(len(writes), len(writes))
        return result


class StoredWeek:
    """A pupil's week of the register as stored, as lists of its slots to patch."""

    __slots__ = ("marks", "codes", "minutes_late", "entries")

    def __init__(self, marks: str, codes: str, minutes_late: str, entries: str):
        self.marks = list(marks)
        self.codes = [codes[i : i + CODE_WIDTH] for i in range(0, len(codes), CODE_WIDTH)]
        self.minutes_late = [
            minutes_late[i : i + MINUTES_WIDTH] for i in range(0, len(minutes_late), MINUTES_WIDTH)
        ]
        self.entries = [entries[i : i + ENTRY_WIDTH] for i in range(0, len(entries), ENTRY_WIDTH)]

    def mark(self, slot: int) -> tuple[str, int | None] | None:
        """The slot's code and minutes late, or None if it has no mark."""
        code = self.codes[slot].rstrip()
        if not code:
            return None
        minutes = self.minutes_late[slot].strip()
        return code, int(minutes) if minutes else None


_EMPTY = (EMPTY_WEEK, EMPTY_CODES, EMPTY_MINUTES, EMPTY_ENTRIES)


def _stored_weeks(
    connection: Connection, school_id: int, starts: Iterable[str]
) -> dict[tuple[int, str], StoredWeek]:
    """The school's stored weeks starting on `starts` (as stored), by (pupil id, start)."""
    weeks = {}
    for start in sorted(starts):
        for pupil_id, start_, *text_ in _fetch(
            connection, "stored weeks", school_id=school_id, week=start
        ):
            weeks[pupil_id, start_] = StoredWeek(*text_)
    return weeks


def _write_weeks(
    connection: Connection,
    weeks: dict[tuple[int, str], StoredWeek],
    writes: Iterable[tuple[tuple[int, str], int, str, int | None]],
    entry: str,
) -> None:
    """Write these marks, as ((pupil id, week start as stored), slot, code, minutes late),
    into their weekly rows, as recorded by the batch `entry`."""
    classes = _CLASSES
    touched: dict[tuple[int, str], StoredWeek] = {}
    for week, slot, code, minutes in writes:
        stored = touched.get(week)
        if stored is None:
            stored = weeks.get(week) or StoredWeek(*_EMPTY)
            touched[week] = stored
        stored.marks[slot] = classes[code]
        stored.codes[slot] = _CODES[code]
        stored.minutes_late[slot] = _minutes_slot(minutes)
        stored.entries[slot] = entry
    # Week by week: the rows of a school's week end up side by side, so the next day's
    # marks rewrite a few pages of the table rather than one per pupil.
    rows = []
    for (pupil_id, start), stored in sorted(touched.items(), key=lambda item: item[0][::-1]):
        marks = "".join(stored.marks)
        rows.append(
            (
                pupil_id,
                start,
                marks,
                "".join(stored.codes),
                "".join(stored.minutes_late),
                "".join(stored.entries),
                *week_counts(marks),
            )
        )
    _executemany(connection, "weeks", rows)


_CLASSES = {code: c.cls for code, c in NATIONAL_CODES.items()}
_CODES = {code: code.ljust(CODE_WIDTH) for code in NATIONAL_CODES}


@lru_cache(maxsize=1024)
def _minutes_slot(minutes: int | None) -> str:
    return " " * MINUTES_WIDTH if minutes is None else str(minutes).rjust(MINUTES_WIDTH)


def _record_batch(
    connection: Connection,
    *,
    school_id: int,
    kind: str,
    source: str,
    sha256: str,
    at: datetime,
    by: str,
    result: ImportResult,
    days: tuple[date, date] | None,
) -> str:
    """Insert the batch's ImportBatch row; its id as an entry of the weekly register."""
    batch = ImportBatch.__table__
    found = connection.execute(
        insert(batch).values(
            school_id=school_id,
            kind=kind,
            filename=source,
            sha256=sha256,
            imported_at=at,
            imported_by=by,
            rows=result.rows,
            added=result.added,
            amended=result.amended,
            unchanged=result.unchanged,
            first_day=days[0] if days else None,
            last_day=days[1] if days else None,
        )
    )
    return str(found.inserted_primary_key[0]).rjust(ENTRY_WIDTH)


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
        and all(0 <= m <= MAX_MINUTES_LATE for m in {row.minutes_late for row in rows} - {None})
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
        elif row.minutes_late is not None and row.minutes_late > MAX_MINUTES_LATE:
            problems.append(
                f"{where}: {row.minutes_late} minutes late is more than the register holds"
                f" ({MAX_MINUTES_LATE})"
            )
        key = (row.upn, row.day, str(row.session))
        if key in seen:
            problems.append(
                f"{where}: the same pupil, day and session as line {seen[key]} "
                f"({row.day.isoformat()} {row.session})"
            )
        else:
            seen[key] = row.line
    return problems


def _queries() -> dict[str, Select]:
    """The reads of every batch, each run through `_fetch`; parameters are bound as the
    driver takes them (a day as stored) and rows come back as the driver gives them."""
    batch, pupil, week = ImportBatch.__table__, Pupil.__table__, RegisterWeek.__table__
    school = bindparam("school_id")
    return {
        "imported": select(batch.c.id).where(
            batch.c.school_id == school, batch.c.sha256 == bindparam("sha256")
        ),
        "stored weeks": select(
            week.c.pupil_id,
            week.c.week_start,
            week.c.marks,
            week.c.codes,
            week.c.minutes_late,
            week.c.entries,
        )
        .join(pupil, pupil.c.id == week.c.pupil_id)
        .where(pupil.c.school_id == school, week.c.week_start == bindparam("week")),
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
    "weeks": (
        text(UPSERT_WEEK_SQL),
        ("pupil_id", "week_start", "marks", *REGISTER_COLUMNS, *WEEK_COLUMNS),
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
