"""Storing register marks: the one path every import (CSV, CTF, demo data) takes.

A batch is validated whole before anything is written; a bad batch raises
ImportRefused listing every offending line, and the caller's transaction writes
nothing. A mark that differs from the stored one becomes an amendment that keeps the
original entry, with its reason and author, as the 2024 regulations require.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import bindparam, insert, text, update
from sqlmodel import Session, select

from figures.register_week import EMPTY_WEEK, UPSERT_WEEK_SQL, slot_of, week_values
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
    "update_weeks",
    "store_marks",
]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class MarkRow:
    line: int  # where the mark came from, for error messages (file line or position)
    upn: str
    day: date
    session: RegisterSession
    code: str
    minutes_late: int | None = None
    reason: str | None = None  # why a stored mark is being changed, if it is


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


def update_weeks(*, session: Session, school_id: int, marks: Sequence[dict]) -> None:
    """Write these marks (RegisterMark values) into the school's weekly register rows."""
    if not marks:
        return
    weeks = sorted({m["week_start"] for m in marks})
    week = RegisterWeek.__table__
    stored = {
        (pupil_id, start): text_
        for pupil_id, start, text_ in session.connection().execute(
            select(week.c.pupil_id, week.c.week_start, week.c.marks)
            .join(Pupil, Pupil.id == week.c.pupil_id)
            .where(Pupil.school_id == school_id, week.c.week_start.in_(weeks))
        )
    }
    patched: dict[tuple[int, date], list[str]] = {}
    for m in marks:
        key = (m["pupil_id"], m["week_start"])
        slots = patched.get(key)
        if slots is None:
            slots = patched[key] = list(stored.get(key, EMPTY_WEEK))
        slots[m["slot"]] = NATIONAL_CODES[m["code"]].cls
    session.connection().execute(
        text(UPSERT_WEEK_SQL),
        [week_values(p, w, "".join(slots)) for (p, w), slots in patched.items()],
    )


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
) -> ImportResult:
    """Validate a batch of marks whole, then write it in the caller's transaction.

    Raises ImportRefused (nothing written) listing every bad line. A batch whose file
    hash was already imported for this school changes nothing.
    """
    already = session.exec(
        select(ImportBatch.id).where(
            ImportBatch.school_id == school_id, ImportBatch.sha256 == sha256
        )
    ).first()
    if already is not None:
        return ImportResult(rows=len(rows), already_imported=True)

    now = now or datetime.now(UTC)
    pupils = dict(
        session.exec(select(Pupil.upn, Pupil.id).where(Pupil.school_id == school_id)).all()
    )
    calendar = load_calendar(session=session, school_id=school_id)
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
    if problems:
        raise ImportRefused(source, problems)

    stored = _stored_marks(session=session, school_id=school_id, rows=rows)
    new_marks: list[dict] = []
    changes: list[tuple[MarkRow, tuple[str, int | None]]] = []
    unchanged = 0
    for row in rows:
        before = stored.get((pupils[row.upn], row.day, str(row.session)))
        if before is None:
            new_marks.append(_mark_values(row, pupils[row.upn], recorded_by, now))
        elif before == (row.code, row.minutes_late):
            unchanged += 1
        elif not (row.reason or default_reason):
            problems.append(
                f"line {row.line}: changes the stored mark {before[0]} to {row.code} for "
                f"{row.day.isoformat()} {row.session}; an amendment needs a reason"
            )
        else:
            changes.append((row, before))
    if problems:
        raise ImportRefused(source, problems)

    connection = session.connection()
    total = len(new_marks) + len(changes)
    done = 0
    for start in range(0, len(new_marks), _CHUNK):
        connection.execute(insert(RegisterMark), new_marks[start : start + _CHUNK])
        done += len(new_marks[start : start + _CHUNK])
        if progress:
            progress(done, total)
    if changes:
        mark = RegisterMark.__table__
        connection.execute(
            update(mark)
            .where(
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

    update_weeks(
        session=session,
        school_id=school_id,
        marks=new_marks
        + [_mark_values(row, pupils[row.upn], recorded_by, now) for row, _ in changes],
    )
    result = ImportResult(
        rows=len(rows), added=len(new_marks), amended=len(changes), unchanged=unchanged
    )
    session.add(
        ImportBatch(
            school_id=school_id,
            kind=kind,
            filename=source,
            sha256=sha256,
            imported_at=now,
            imported_by=recorded_by,
            rows=result.rows,
            added=result.added,
            amended=result.amended,
            unchanged=result.unchanged,
        )
    )
    session.flush()
    return result


_CHUNK = 20_000


def _mark_values(row: MarkRow, pupil_id: int, recorded_by: str, now: datetime) -> dict:
    return {
        "pupil_id": pupil_id,
        "day": row.day,
        "session": str(row.session),
        "code": row.code,
        "minutes_late": row.minutes_late,
        "recorded_by": recorded_by,
        "recorded_at": now,
        "week_start": week_start(row.day),
        "slot": slot_of(row.day.weekday(), str(row.session)),
    }


def _stored_marks(
    *, session: Session, school_id: int, rows: Sequence[MarkRow]
) -> dict[tuple[int, date, str], tuple[str, int | None]]:
    """The stored marks the batch could touch: this school's pupils over its date range."""
    if not rows:
        return {}
    first = min(row.day for row in rows)
    last = max(row.day for row in rows)
    mark = RegisterMark.__table__
    found = session.connection().execute(
        select(mark.c.pupil_id, mark.c.day, mark.c.session, mark.c.code, mark.c.minutes_late)
        .join(Pupil, Pupil.id == mark.c.pupil_id)
        .where(Pupil.school_id == school_id, mark.c.day >= first, mark.c.day <= last)
    )
    return {(p, d, s): (c, m) for p, d, s, c, m in found}
