"""Storing register marks: every import (CSV, CTF, demo data, a call's outcome) writes
through here, into the weekly register (RegisterWeek), a batch at a time.

A batch is validated whole before anything is written; a bad batch raises
ImportRefused listing every offending line, and the caller's transaction writes
nothing. A mark that differs from the stored one becomes an amendment that keeps the
original entry, with its reason and author, as the 2024 regulations require. Each batch
is an ImportBatch row, and each mark it writes points to it: who recorded it and when.

`store_marks` takes a batch line by line (MarkRow) and reports every problem;
`store_new_marks` takes a batch already checked column by column (Marks, from a clean
file) and declines, writing nothing, if it would change a stored mark. Both plan the
batch week by week (`_plan`: only weeks that may already hold a mark where the batch
writes are read), compare it with those (`_sort`) and write it (`_write`): a day's
import reads no week and merges each pupil's day into the stored week in SQL.

Built for a local authority's day (460,000 marks in 600 files) and a term's history (30
million): a good batch is checked per distinct UPN, day and code rather than per line,
the reads go to the driver's cursor, and the weekly rows to the driver's own executemany
as tuples already in the form SQLAlchemy would store (its per-row parameter handling costs
more than SQLite's own work).
"""

import gc
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import repeat
from operator import add, itemgetter

from sqlalchemy import (
    Column,
    Executable,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Dialect
from sqlmodel import Session

from database import driver_rows
from figures.calendars import school_calendar
from figures.register_week import (
    CODE_AT,
    CODE_WIDTH,
    EMPTY_SESSION,
    EMPTY_WEEK,
    ENTRY_WIDTH,
    GUARDED_MERGE_WEEK_SQL,
    MAX_MINUTES_LATE,
    MERGE_WEEK_SQL,
    MINUTES_AT,
    MINUTES_WIDTH,
    NEW_WEEK_SQL,
    SESSION_WIDTH,
    SLOTS,
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
    "store_new_marks",
    "register_places",
    "Marks",
    "Batch",
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
    return dict(_fetch(session.connection(), "roll", school_id=school_id))


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
    _hold_the_register(connection)
    if _fetch(connection, "imported", school_id=school_id, sha256=sha256):
        return ImportResult(rows=len(rows), already_imported=True)

    now = now or datetime.now(UTC)
    pupils = roll if roll is not None else school_roll(session, school_id)
    calendar = school_calendar(session, school_id)
    with paused_gc():
        keys = [(pupils.get(row.upn), row.day, row.session) for row in rows]
        if not _all_good(rows, pupils, calendar, distinct=len(set(keys))):
            raise ImportRefused(source, _problems(rows, pupils, calendar))

        places = register_places(connection, {key[1:] for key in keys})
        marks = Marks(
            pupil_ids=[key[0] for key in keys],
            places=[places[key[1:]] for key in keys],
            codes=[row.code for row in rows],
            minutes_late=[row.minutes_late for row in rows],
            days=(min(key[1] for key in keys), max(key[1] for key in keys)) if keys else None,
        )
        plan = _plan(connection, school_id, _sessions(marks), marks.days)
        changed, unchanged = _sort(plan)
        written = len(marks.codes) - unchanged
        position = _positions(marks) if changed else {}
        changed = [(position[key], before) for key, before in changed]
        problems = [
            f"line {rows[i].line}: changes the stored mark {before[0]} to {rows[i].code} for "
            f"{rows[i].day.isoformat()} {rows[i].session}; an amendment needs a reason"
            for i, before in changed
            if not (rows[i].reason or default_reason)
        ]
        if problems:
            raise ImportRefused(source, problems)

        result = ImportResult(
            rows=len(rows),
            added=written - len(changed),
            amended=len(changed),
            unchanged=unchanged,
        )
        batch = Batch(school_id, kind, source, sha256, recorded_by, now)
        _write(connection, batch, result, marks.days, plan)
        if changed:
            connection.execute(
                insert(MarkAmendment),
                [
                    {
                        "pupil_id": marks.pupil_ids[i],
                        "day": rows[i].day,
                        "session": str(rows[i].session),
                        "original_code": before[0],
                        "new_code": rows[i].code,
                        "original_minutes_late": before[1],
                        "new_minutes_late": rows[i].minutes_late,
                        "reason": rows[i].reason or default_reason,
                        "amended_by": recorded_by,
                        "amended_role": role,
                        "amended_at": now,
                    }
                    for i, before in changed
                ],
            )
        if progress:
            progress(written, written)
        return result


@dataclass
class Marks:
    """A validated batch of marks, column by column: each mark's pupil, its place in the
    weekly register (the week as stored, the slot), code and minutes late."""

    pupil_ids: list[int]
    places: list[tuple[str, int]]
    codes: list[str]
    minutes_late: list[int | None]
    days: tuple[date, date] | None  # the first and last day the batch has marks on


@dataclass
class Batch:
    """Who is writing a batch of marks, from where, and when."""

    school_id: int
    kind: str
    source: str
    sha256: str
    recorded_by: str
    at: datetime


def store_new_marks(
    *, session: Session, batch: Batch, marks: Marks, rows: int
) -> ImportResult | None:
    """Write a batch already checked whole (a clean file read column by column), if it
    changes no stored mark; None, writing nothing, if it does (an amendment needs its
    line's reason: the caller takes the line-by-line path of `store_marks`)."""
    connection = session.connection()
    _hold_the_register(connection)
    if _fetch(connection, "imported", school_id=batch.school_id, sha256=batch.sha256):
        return ImportResult(rows=rows, already_imported=True)
    sessions = _sessions(marks)
    if sessions is None:
        return None  # a pupil twice in one session
    plan = _plan(connection, batch.school_id, sessions, marks.days)
    changed, unchanged = _sort(plan)
    if changed:
        return None
    result = ImportResult(rows=rows, added=len(marks.codes) - unchanged, unchanged=unchanged)
    _write(connection, batch, result, marks.days, plan)
    return result


def _hold_the_register(connection: Connection) -> None:
    """With SQLite, take the database's write lock before a batch looks at the register,
    if its transaction does not hold it yet: the driver begins a transaction only at the
    first write, and another import could otherwise write between what this one reads
    and what it writes. Other writers wait for it (busy_timeout); readers do not."""
    if connection.dialect.name != "sqlite":
        return  # PostgreSQL: the weeks read are locked as read, the merge re-checks
    driver = connection.connection.driver_connection
    if not driver.in_transaction:
        driver.execute("BEGIN IMMEDIATE")


def register_places(
    connection: Connection, sessions: Iterable[tuple[date, str]]
) -> dict[tuple[date, str], tuple[str, int]]:
    """Each (day, session)'s place in the weekly register: its week as stored, its slot."""
    to_day = _to_driver(connection, RegisterWeek.__table__.c.week_start)
    return {
        (day, session): (to_day(week_start(day)), slot_of(day.weekday(), session))
        for day, session in sessions
    }


# A batch's marks session by session: each pupil's code and minutes late, by the
# session's place in the weekly register (week start as stored, slot).
Sessions = dict[tuple[str, int], dict[int, tuple[str, int | None]]]
# The marks to write into a stored week, in slot order: (slot, code, minutes late), by
# (pupil id, week start as stored).
Writes = dict[tuple[int, str], list[tuple[int, str, int | None]]]
# A week as stored: its marks, sessions and (SQLite) rowid, by (pupil id, week start).
StoredWeeks = dict[tuple[int, str], tuple[str, str, int | None]]


@dataclass
class _Plan:
    """Where a batch's marks go. For each week start, its slots with marks and the
    pupils whose week has no mark yet from the first of them on, with each pupil's marks
    in those slots (None where it has none): these weeks are inserted or merged into,
    whole columns at a time. Every other week is stored (`stored`): its marks are
    compared with the stored ones and the week patched (`writes`)."""

    new: list[tuple[str, tuple[int, ...], list[int], list[tuple]]]
    stored: StoredWeeks
    writes: Writes


def _sessions(marks: Marks) -> Sessions | None:
    """The batch's marks by session; None if a pupil has two marks in one session."""
    sessions: Sessions = {}
    marked = zip(marks.codes, marks.minutes_late, strict=True)
    for place, pupil_id, mark in zip(marks.places, marks.pupil_ids, marked, strict=True):
        pupils = sessions.get(place)
        if pupils is None:
            pupils = sessions[place] = {}
        pupils[pupil_id] = mark
    if sum(map(len, sessions.values())) != len(marks.codes):
        return None
    return sessions


def _plan(
    connection: Connection,
    school_id: int,
    sessions: Sessions,
    days: tuple[date, date] | None,
) -> _Plan:
    """Sort the batch's weeks into those with no mark yet from the batch's first
    session of the week on (as the next day of a week finds them) and those stored
    with one, reading only the latter. Only if a batch of the school has written marks
    on the batch's days or later in their weeks are the weeks looked at (a day's import
    looks at none)."""
    by_start: dict[str, list[tuple[int, dict]]] = {}
    for (start, slot), pupils in sessions.items():
        by_start.setdefault(start, []).append((slot, pupils))
    sqlite = connection.dialect.name == "sqlite"
    query = "weeks marked from, with rowid" if sqlite else "weeks marked from"
    to_day = _to_driver(connection, ImportBatch.__table__.c.first_day)
    look = days is not None and _fetch(
        connection,
        "batches over",
        school_id=school_id,
        first=to_day(days[0]),
        last=to_day(days[1] + timedelta(days=6 - days[1].weekday())),
    )
    plan = _Plan([], {}, {})
    for start in sorted(by_start):
        slots = sorted(by_start[start], key=itemgetter(0))
        pupils = set().union(*(at.keys() for _, at in slots))
        stored = {}
        if look:
            rows = _fetch(
                connection,
                query,
                school_id=school_id,
                week=start,
                sessions_from=slots[0][0] * SESSION_WIDTH + 1,
            )
            stored = {row[0]: row[2:] for row in rows if row[0] in pupils}
        for pupil_id, week in stored.items():
            plan.stored[pupil_id, start] = week
            plan.writes[pupil_id, start] = [
                (slot, *at[pupil_id]) for slot, at in slots if pupil_id in at
            ]
        new = sorted(pupils.difference(stored))
        marks = list(zip(*(map(at.get, new) for _, at in slots), strict=True))
        plan.new.append((start, tuple(slot for slot, _ in slots), new, marks))
    return plan


def _positions(marks: Marks) -> dict[tuple[int, str, int], int]:
    """Each mark's position in the batch, by (pupil id, week start, slot)."""
    pairs = zip(marks.pupil_ids, marks.places, strict=True)
    return {(pupil_id, start, slot): i for i, (pupil_id, (start, slot)) in enumerate(pairs)}


def _sort(plan: _Plan) -> tuple[list[tuple[tuple, tuple]], int]:
    """Compare the marks for stored weeks with what is stored: a mark the same as the
    stored one is dropped from the plan's writes, one that differs is a change. The
    changes as ((pupil id, week start, slot), the stored code and minutes), and how many
    were the same."""
    changed: list[tuple[tuple[int, str, int], tuple[str, int | None]]] = []
    unchanged = 0
    blank = " " * CODE_WIDTH
    for week, stored in plan.stored.items():
        kept = []
        for slot, code, minutes in plan.writes[week]:
            at = slot * SESSION_WIDTH
            before = stored[1][at + CODE_AT : at + CODE_AT + CODE_WIDTH]
            if before != blank:
                late = stored[1][at + MINUTES_AT : at + MINUTES_AT + MINUTES_WIDTH].strip()
                stored_mark = (before.rstrip(), int(late) if late else None)
                if stored_mark == (code, minutes):
                    unchanged += 1
                    continue
                changed.append(((*week, slot), stored_mark))
            kept.append((slot, code, minutes))
        if kept:
            plan.writes[week] = kept
        else:
            del plan.writes[week]
    return changed, unchanged


def _write(
    connection: Connection,
    batch: Batch,
    result: ImportResult,
    days: tuple[date, date] | None,
    plan: _Plan,
) -> None:
    """Record the batch, then its writes into the weekly rows, as entries of it: a stored
    week rewritten whole, any other week inserted or merged into."""
    to_day = _to_driver(connection, ImportBatch.__table__.c.first_day)
    ((batch_id,),) = _fetch(
        connection,
        "new batch",
        school_id=batch.school_id,
        kind=batch.kind,
        filename=batch.source,
        sha256=batch.sha256,
        imported_at=_to_driver(connection, ImportBatch.__table__.c.imported_at)(batch.at),
        imported_by=batch.recorded_by,
        rows=result.rows,
        added=result.added,
        amended=result.amended,
        unchanged=result.unchanged,
        first_day=to_day(days[0]) if days else None,
        last_day=to_day(days[1]) if days else None,
    )
    entry = str(batch_id).rjust(ENTRY_WIDTH)
    new_rows: list[tuple] = []
    for start, slots, pupils, marks in plan.new:
        # The week each distinct set of marks makes, once; then every pupil's row is
        # (pupil, week start) + that week, put together in C.
        week_of = {}
        for day in set(marks):
            marks_, *counts, first, written = _new_week(slots, day)
            sessions = "".join(EMPTY_SESSION if s is None else s + entry for s in written)
            week_of[day] = (
                *(marks_, sessions, *counts, first),
                marks_[first:],
                sessions[first * SESSION_WIDTH :],
            )
        new_rows += map(add, zip(pupils, repeat(start)), map(week_of.__getitem__, marks))

    classes, codes_, minutes_slot, counts_of = _CLASSES, _CODES, _MINUTES_SLOT, week_counts
    stored_rows, rowid_rows = [], []
    for week in sorted(plan.writes):
        marks_, sessions, rowid = plan.stored[week]
        for slot, code, minutes in plan.writes[week]:
            at = slot * SESSION_WIDTH
            marks_ = marks_[:slot] + classes[code] + marks_[slot + 1 :]
            sessions = (
                sessions[:at]
                + codes_[code]
                + minutes_slot[minutes]
                + entry
                + sessions[at + SESSION_WIDTH :]
            )
        if rowid is not None:
            rowid_rows.append((marks_, sessions, *counts_of(marks_), rowid))
        else:
            stored_rows.append((marks_, sessions, *counts_of(marks_), *week))
    _executemany(connection, "stored weeks", stored_rows)
    _executemany(connection, "stored weeks by rowid", rowid_rows)
    # With SQLite this transaction has held the write lock since before _plan looked
    # (_hold_the_register): what it saw is what is written into.
    merge = "merged weeks" if connection.dialect.name == "sqlite" else "merged weeks, guarded"
    updated = _executemany(connection, merge, new_rows)
    if updated != len(new_rows):  # weeks not stored yet (or a driver that cannot say)
        inserted = _executemany(connection, "new weeks", new_rows)
        if updated >= 0 and inserted >= 0 and updated + inserted < len(new_rows):
            raise RuntimeError(
                f"{len(new_rows) - updated - inserted} week(s) of the register were written"
                " by another import while this one was; import it again"
            )


@lru_cache(maxsize=1 << 14)
def _new_week(slots: tuple[int, ...], day: tuple[tuple[str, int | None] | None, ...]):
    """The week that marks (code, minutes late; None for no mark) in `slots` make on
    their own: its marks, its counts, the first slot with a mark, and each slot's code
    and minutes late (None for a slot with no mark), for its entry to follow. Cached: a
    day's file gives most pupils' weeks one of a few."""
    marks = EMPTY_WEEK
    written: list[str | None] = [None] * SLOTS
    for slot, mark in zip(slots, day, strict=True):
        if mark is not None:
            code, minutes = mark
            marks = marks[:slot] + _CLASSES[code] + marks[slot + 1 :]
            written[slot] = _CODES[code] + _MINUTES_SLOT[minutes]
    first = next(slot for slot, mark in zip(slots, day, strict=True) if mark is not None)
    return (marks, *week_counts(marks), first, tuple(written))


_CLASSES = {code: c.cls for code, c in NATIONAL_CODES.items()}
_CODES = {code: code.ljust(CODE_WIDTH) for code in NATIONAL_CODES}


_MINUTES_SLOT = {
    None: " " * MINUTES_WIDTH,
    **{minutes: str(minutes).rjust(MINUTES_WIDTH) for minutes in range(MAX_MINUTES_LATE + 1)},
}


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


def _queries() -> dict[str, Executable]:
    """The reads of every batch, each run through `_fetch`; parameters are bound as the
    driver takes them (a day as stored) and rows come back as the driver gives them."""
    batch, pupil, week = ImportBatch.__table__, Pupil.__table__, RegisterWeek.__table__
    school = bindparam("school_id")
    return {
        "roll": select(pupil.c.upn, pupil.c.id).where(pupil.c.school_id == school),
        "new batch": insert(batch)
        .values({c.name: bindparam(c.name) for c in batch.columns if c.name != "id"})
        .returning(batch.c.id),
        "imported": select(batch.c.id).where(
            batch.c.school_id == school, batch.c.sha256 == bindparam("sha256")
        ),
        # The batches of the school that wrote marks on a day from `first` to `last`.
        "batches over": select(batch.c.id).where(
            batch.c.school_id == school,
            batch.c.last_day >= bindparam("first"),
            batch.c.first_day <= bindparam("last"),
        ),
        # The school's weeks starting `week` with a mark from `sessions_from` on, locked
        # for this transaction where the database locks rows (with SQLite it already
        # holds the write lock). With SQLite each row's rowid too, for its update to find
        # it in one look-up instead of two (the key's index, then the table).
        **{
            name: select(
                week.c.pupil_id,
                week.c.week_start,
                week.c.marks,
                week.c.sessions,
                literal_column(locator),
            )
            .join(pupil, pupil.c.id == week.c.pupil_id)
            .where(
                pupil.c.school_id == school,
                week.c.week_start == bindparam("week"),
                func.trim(func.substr(week.c.sessions, bindparam("sessions_from")))
                != literal_column("''"),
            )
            .with_for_update(of=week)
            for name, locator in (
                ("weeks marked from", "NULL"),
                ("weeks marked from, with rowid", "registerweek.rowid"),
            )
        },
    }


_QUERIES = _queries()


def _fetch(connection: Connection, name: str, **params) -> list[tuple]:
    return driver_rows(connection, _QUERIES[name], **params)


# The bulk statements, and the order of the values in each row passed to _executemany.
_WEEK_KEYS = ("pupil_id", "week_start", "marks", "sessions", *WEEK_COLUMNS)
# A new week's row, then where it goes into a stored week: the first slot and each
# register column from there on (MERGE_WEEK_SQL).
_MERGED_KEYS = (*_WEEK_KEYS, "first", "marks_from", "sessions_from")
_BULK = {
    "merged weeks": (text(MERGE_WEEK_SQL), _MERGED_KEYS),
    "merged weeks, guarded": (text(GUARDED_MERGE_WEEK_SQL), _MERGED_KEYS),
    "new weeks": (text(NEW_WEEK_SQL), _MERGED_KEYS),
    "stored weeks": (  # its rows have the week's key last, as the statement takes it
        update(RegisterWeek.__table__)
        .values({key: bindparam(key) for key in _WEEK_KEYS[2:]})
        .where(
            RegisterWeek.__table__.c.pupil_id == bindparam("pupil_id"),
            RegisterWeek.__table__.c.week_start == bindparam("week_start"),
        ),
        (*_WEEK_KEYS[2:], *_WEEK_KEYS[:2]),
    ),
    "stored weeks by rowid": (
        text(
            "UPDATE registerweek SET "
            + ", ".join(f"{key} = :{key}" for key in _WEEK_KEYS[2:])
            + " WHERE rowid = :rowid"
        ),
        (*_WEEK_KEYS[2:], "rowid"),
    ),
}


def _executemany(connection: Connection, name: str, rows: list[tuple]) -> int:
    """Run a _BULK statement once per row, straight through the driver's executemany;
    the rows it changed, as the driver counts them."""
    if not rows:
        return 0
    sql, order = _driver_sql(name, connection.dialect)
    if order is None:  # a driver taking named parameters
        keys = _BULK[name][1]
        rows = [dict(zip(keys, row, strict=True)) for row in rows]
    elif order == tuple(range(len(order))):
        if len(order) < len(rows[0]):  # a statement using the first parameters only
            rows = [row[: len(order)] for row in rows]
    else:
        rows = [tuple(row[i] for i in order) for row in rows]
    return connection.exec_driver_sql(sql, rows).rowcount


@lru_cache(maxsize=16)
def _driver_sql(name: str, dialect: Dialect) -> tuple[str, tuple | None]:
    """A _BULK statement compiled for the dialect, in its driver's parameter style, and
    for a positional style the place in our rows of each parameter. SQLite's are
    numbered by their place in our rows (`?NNN`), so that rows go to it as they are and a
    parameter used twice is bound once."""
    statement, keys = _BULK[name]
    if dialect.paramstyle == "qmark":
        compiled = statement.compile(dialect=type(dialect)(paramstyle="numeric"))
        names = compiled.positiontup
        sql = re.sub(
            r":(\d+)\b", lambda n: f"?{keys.index(names[int(n[1]) - 1]) + 1}", compiled.string
        )
        return sql, tuple(range(max(keys.index(name) for name in names) + 1))
    compiled = statement.compile(dialect=dialect)
    if not compiled.positional:
        return compiled.string, None
    return compiled.string, tuple(keys.index(key) for key in compiled.positiontup)


def _to_driver(connection: Connection, column: Column) -> Callable:
    """How SQLAlchemy hands the column's values to the driver (SQLite keeps a date as
    'YYYY-MM-DD' and a datetime as 'YYYY-MM-DD HH:MM:SS.ffffff'), to apply once per
    distinct value."""
    dialect = connection.dialect
    return column.type.dialect_impl(dialect).bind_processor(dialect) or (lambda value: value)
