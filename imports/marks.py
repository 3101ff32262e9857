"""Storing register marks: the one path every import (CSV, CTF, demo data) takes.

A batch is validated whole before anything is written; a bad batch raises
ImportRefused listing every offending line, and the caller's transaction writes
nothing. A mark that differs from the stored one becomes an amendment that keeps the
original entry, with its reason and author, as the 2024 regulations require.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import text
from sqlmodel import Session, select

from models.calendar import SchoolCalendar, week_start
from models.codes import attendance_code, UnknownCodeError
from models.tables import Pupil
from models.tables import Session as RegisterSession

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
