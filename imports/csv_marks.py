"""Register marks from an MIS CSV export, through a column mapping.

There is no national CSV layout (SIMS, Arbor, Bromcom and the rest each differ), so
the importer reads a small YAML *mapping* naming the columns. Presets live in
`imports/mappings/` (`standard`, `sims`, `arbor`); a school with another layout writes
its own file and passes its path. Keys of a mapping file:

- `name`: a label, for messages (default: the file's stem).
- `layout`: `long` (one mark per line, a session column and a code column) or `wide`
  (one line per pupil per day, one code column per session).
- `date_format`: a `strptime` format for the date column, e.g. `%Y-%m-%d`, `%d/%m/%Y`.
- `delimiter`: the field separator (default `,`).
- `columns`: the header names holding
  - `upn` (required): the pupil's UPN; must be on the school's roll.
  - `date` (required): the day of the mark, in `date_format`.
  - `session` (long layout, required): AM or PM, or an alias from `session_values`.
  - `code` (long layout, required): a national attendance code (2024 regulations).
  - `minutes_late` (optional): a whole number of minutes, or empty.
  - `reason` (optional): why a stored mark is being changed; used only for amendments.
- `session_columns` (wide layout, required): `{AM: header, PM: header}`, the code column
  of each session; an empty cell means no mark for that session.
- `minutes_late_columns` (wide layout, optional): `{AM: header, PM: header}`.
- `session_values` (optional): aliases per session, e.g. `{AM: [a, morning]}`; `AM` and
  `PM` themselves always work. Matched ignoring case and surrounding spaces.
- `code_values` (optional): aliases for codes, e.g. `{"PRESENT AM": "/"}`. A national
  code is also accepted in lower case.

Header names are matched exactly, then ignoring case and surrounding spaces; other
columns (names, registration group...) are ignored. Files are UTF-8, with or without
a byte-order mark.

A file is parsed whole before anything is stored, and refused (ImportRefused) listing
every problem with its line number: a header missing a mapped column, a line with the
wrong number of fields or bad quoting, a bad UPN, a bad date, an unknown session value,
an unknown code, minutes late that are not a whole number. Then `store_marks` checks
what needs the database (pupil on roll, school day, duplicate sessions, amendments).

Built for a local authority's day (about 460,000 lines in 600 files). A clean file in the
long layout is read column by column: each distinct UPN, date, session, code and minutes
value is checked once, and the lines go through C-level maps into `store_new_marks`. A file
with anything to report, in the wide layout, or changing a stored mark is parsed line by
line (lookups still computed once per distinct value) and stored by `store_marks`, which
reports every problem.
"""

import codecs
import csv
import hashlib
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path

import yaml
from sqlmodel import Session

from figures.calendars import school_calendar
from figures.register_week import MAX_MINUTES_LATE
from imports.marks import (
    Batch,
    ImportRefused,
    ImportResult,
    MarkRow,
    Marks,
    Progress,
    paused_gc,
    register_places,
    school_roll,
    store_marks,
    store_new_marks,
)
from models.codes import NATIONAL_CODES
from models.tables import RegisterSession
from models.upn import InvalidUPNError, validate_upn

__all__ = [
    "MAPPINGS_DIR",
    "MappingError",
    "MarkMapping",
    "import_marks_csv",
    "load_mapping",
    "mapping_from_dict",
    "parse_marks_csv",
    "preset_names",
]

MAPPINGS_DIR = Path(__file__).parent / "mappings"
KIND = "marks-csv"

_SESSIONS = {"AM": RegisterSession.AM, "PM": RegisterSession.PM}
_COLUMN_KEYS = ("upn", "date", "session", "code", "minutes_late", "reason")


class MappingError(ValueError):
    """A mapping file that cannot be used; says which key is wrong."""


@dataclass(frozen=True)
class MarkMapping:
    """Where a CSV layout keeps each part of a mark (see the module docstring)."""

    name: str
    date_format: str
    upn: str
    date: str
    session: str | None = None
    code: str | None = None
    minutes_late: str | None = None
    reason: str | None = None
    session_columns: dict[RegisterSession, str] = field(default_factory=dict)
    minutes_late_columns: dict[RegisterSession, str] = field(default_factory=dict)
    session_values: dict[str, RegisterSession] = field(default_factory=dict)
    code_values: dict[str, str] = field(default_factory=dict)
    delimiter: str = ","

    @property
    def wide(self) -> bool:
        return bool(self.session_columns)


@lru_cache(maxsize=1)
def preset_names() -> tuple[str, ...]:
    """The presets shipped in MAPPINGS_DIR (looked up once: a local authority's day
    names one for each of hundreds of files)."""
    return tuple(sorted(p.stem for p in MAPPINGS_DIR.glob("*.yaml")))


def load_mapping(spec: "str | Path | MarkMapping") -> MarkMapping:
    """A mapping from a preset name (`standard`, `sims`, `arbor`) or a YAML file's path."""
    if isinstance(spec, MarkMapping):
        return spec
    path = Path(spec)
    if isinstance(spec, str) and spec in preset_names():
        path = MAPPINGS_DIR / f"{spec}.yaml"
    if not path.is_file():
        raise MappingError(
            f"no mapping {str(spec)!r}: give a preset ({', '.join(preset_names())}) "
            "or the path of a mapping file"
        )
    stat = path.stat()
    return _read_mapping(path.resolve(), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=32)
def _read_mapping(path: Path, mtime_ns: int, size: int) -> MarkMapping:
    """A mapping file, read once per version of it: a day's imports for a local
    authority use the same mapping for hundreds of files."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as error:
        raise MappingError(f"{path.name}: not valid YAML ({error})") from None
    return mapping_from_dict(raw, default_name=path.stem)


def mapping_from_dict(raw: object, *, default_name: str = "mapping") -> MarkMapping:
    """Check a mapping's keys and build it; every mistake is a MappingError naming the key."""
    if not isinstance(raw, Mapping):
        raise MappingError(f"{default_name}: a mapping file is a YAML mapping of keys")
    name = str(raw.get("name") or default_name)

    def fail(message: str) -> MappingError:
        return MappingError(f"{name}: {message}")

    known = {
        "name",
        "layout",
        "date_format",
        "delimiter",
        "columns",
        "session_columns",
        "minutes_late_columns",
        "session_values",
        "code_values",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise fail(f"unknown key(s) {', '.join(map(str, unknown))}")
    columns = raw.get("columns") or {}
    if not isinstance(columns, Mapping):
        raise fail("`columns` must map upn, date, ... to header names")
    bad = sorted(set(columns) - set(_COLUMN_KEYS))
    if bad:
        raise fail(f"unknown column key(s) {', '.join(map(str, bad))}")
    cols = {k: str(v) for k, v in columns.items() if v not in (None, "")}

    session_columns = _per_session(raw.get("session_columns"), "session_columns", fail)
    minutes_columns = _per_session(raw.get("minutes_late_columns"), "minutes_late_columns", fail)
    layout = raw.get("layout") or ("wide" if session_columns else "long")
    if layout not in ("long", "wide"):
        raise fail("`layout` is long or wide")
    for key in ("upn", "date"):
        if key not in cols:
            raise fail(f"`columns.{key}` is required")
    if layout == "long":
        if session_columns or minutes_columns:
            raise fail(
                "a long layout names `columns.session` and `columns.code`, not `session_columns`"
            )
        for key in ("session", "code"):
            if key not in cols:
                raise fail(f"`columns.{key}` is required in a long layout")
    else:
        if not session_columns:
            raise fail("a wide layout needs `session_columns` ({AM: header, PM: header})")
        for key in ("session", "code", "minutes_late"):
            if key in cols:
                raise fail(f"a wide layout uses `session_columns`, not `columns.{key}`")

    date_format = raw.get("date_format")
    if not isinstance(date_format, str) or "%" not in date_format:
        raise fail("`date_format` is required, e.g. '%d/%m/%Y' or '%Y-%m-%d'")
    delimiter = str(raw.get("delimiter") or ",")
    if len(delimiter) != 1:
        raise fail("`delimiter` is one character")

    session_values: dict[str, RegisterSession] = {}
    aliases = raw.get("session_values") or {}
    if not isinstance(aliases, Mapping):
        raise fail("`session_values` maps AM and PM to lists of aliases")
    for key, values in aliases.items():
        session = _SESSIONS.get(str(key).upper())
        if session is None:
            raise fail(f"`session_values` has {key!r}; only AM and PM")
        if isinstance(values, str):
            values = [values]
        for value in values or []:
            folded = _fold(str(value))
            if session_values.get(folded, session) != session:
                raise fail(f"session value {value!r} is given for both AM and PM")
            session_values[folded] = session

    code_values: dict[str, str] = {}
    codes = raw.get("code_values") or {}
    if not isinstance(codes, Mapping):
        raise fail("`code_values` maps an exported value to a national code")
    for value, code in codes.items():
        if str(code) not in NATIONAL_CODES:
            raise fail(f"`code_values` maps {value!r} to {code!r}, not a national code")
        code_values[str(value)] = str(code)

    return MarkMapping(
        name=name,
        date_format=date_format,
        upn=cols["upn"],
        date=cols["date"],
        session=cols.get("session"),
        code=cols.get("code"),
        minutes_late=cols.get("minutes_late"),
        reason=cols.get("reason"),
        session_columns=session_columns,
        minutes_late_columns=minutes_columns,
        session_values=session_values,
        code_values=code_values,
        delimiter=delimiter,
    )


def _per_session(raw: object, key: str, fail) -> dict[RegisterSession, str]:
    if raw in (None, ""):
        return {}
    if not isinstance(raw, Mapping):
        raise fail(f"`{key}` maps AM and PM to header names")
    out: dict[RegisterSession, str] = {}
    for name, header in raw.items():
        session = _SESSIONS.get(str(name).upper())
        if session is None:
            raise fail(f"`{key}` has {name!r}; only AM and PM")
        out[session] = str(header)
    return out


def _fold(value: str) -> str:
    return value.strip().casefold()


def parse_marks_csv(path: "str | Path", mapping: "str | Path | MarkMapping") -> list[MarkRow]:
    """Every mark in the file, or ImportRefused listing every bad line."""
    path = Path(path)
    return _parse(path.read_bytes(), load_mapping(mapping), path.name)


def import_marks_csv(
    *,
    session: Session,
    school_id: int,
    path: "str | Path",
    mapping: "str | Path | MarkMapping",
    recorded_by: str,
    role: str,
    default_reason: str | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Parse, hash and store a marks CSV in the caller's transaction (see store_marks)."""
    path = Path(path)
    data = path.read_bytes()
    mapping = load_mapping(mapping)
    session.flush()  # pupils the caller has just added are on the roll
    roll = school_roll(session, school_id)
    sha256 = hashlib.sha256(data).hexdigest()
    with paused_gc():  # once for parsing and storing; the rows are gone when it resumes
        if not mapping.wide:
            marks = _clean_columns(data, mapping, roll, session, school_id)
            if marks is not None:
                batch = Batch(school_id, KIND, path.name, sha256, recorded_by, datetime.now(UTC))
                result = store_new_marks(
                    session=session, batch=batch, marks=marks[0], rows=marks[1]
                )
                if result is not None:
                    if progress:
                        progress(result.added, result.added)
                    return result
        rows = _parse(data, mapping, path.name, roll)
        result = store_marks(
            session=session,
            school_id=school_id,
            rows=rows,
            recorded_by=recorded_by,
            role=role,
            source=path.name,
            kind=KIND,
            sha256=sha256,
            default_reason=default_reason,
            progress=progress,
            roll=roll,
        )
        del rows
    return result


def _clean_columns(
    data: bytes, mapping: MarkMapping, roll: dict[str, int], session: Session, school_id: int
) -> tuple[Marks, int] | None:
    """A long-layout file read column by column, and its number of lines of marks; None
    if anything in it is wrong or unusual (a bad value, a blank or short line, a header
    not on the first line), for the line-by-line path to report or take. A day's file for
    a school is a few hundred lines with a few distinct dates, sessions and codes, so each
    value is checked once and the lines go through C-level maps: a local authority's day
    is 460,000 lines."""
    try:
        rows = list(
            csv.reader(
                io.StringIO(data.decode("utf-8-sig"), newline=""),
                delimiter=mapping.delimiter,
                strict=True,
            )
        )
    except (UnicodeDecodeError, csv.Error):
        return None
    if len(rows) < 2:
        return None
    header, body = rows[0], rows[1:]
    index, missing = _locate(header, _wanted(mapping), 1)
    if missing or set(map(len, body)) != {len(header)}:
        return None
    lookups = _Lookups(mapping)
    calendar = school_calendar(session, school_id)

    columns = list(zip(*body, strict=True))  # every line as long as the header

    def column(key: str) -> tuple[str, ...]:
        return columns[index[key]]

    upns, dates, sessions, codes = column("upn"), column("date"), column("session"), column("code")
    if set(upns) <= roll.keys():  # as the MIS exports them, most often
        pupil_ids = list(map(roll.__getitem__, upns))
    else:
        pupil_of = {}
        for raw in set(upns):
            upn = raw if raw in roll else lookups.upn(raw)[0]
            if upn not in roll:
                return None
            pupil_of[raw] = roll[upn]
        pupil_ids = list(map(pupil_of.__getitem__, upns))
    day_of = _each_once(dates, {}, lookups.day)
    if day_of is None or not all(map(calendar.is_school_day, day_of.values())):
        return None
    session_of = _each_once(sessions, lookups.sessions, lookups.session)
    code_of = _each_once(codes, lookups.codes, lookups.code)
    if session_of is None or code_of is None:
        return None
    minutes: list[int | None] = [None] * len(body)
    if "minutes late" in index:
        raw_minutes = column("minutes late")
        minutes_of = _each_once(raw_minutes, {}, _minutes)
        if minutes_of is None or max(m or 0 for m in minutes_of.values()) > MAX_MINUTES_LATE:
            return None
        minutes = list(map(minutes_of.__getitem__, raw_minutes))
    raw_places = list(zip(dates, sessions, strict=True))
    distinct = set(raw_places)
    places = register_places(
        session.connection(), {(day_of[d], session_of[s]) for d, s in distinct}
    )
    place_of = {(d, s): places[day_of[d], session_of[s]] for d, s in distinct}
    marks = Marks(
        pupil_ids=pupil_ids,
        places=list(map(place_of.__getitem__, raw_places)),
        codes=list(map(code_of.__getitem__, codes)),
        minutes_late=minutes,
        days=(min(day_of.values()), max(day_of.values())),
    )
    return marks, len(body)  # (the same pupil and session twice: store_new_marks declines)


def _each_once(raws: Iterable[str], known: Mapping, resolve) -> dict | None:
    """Each distinct raw value resolved once: from `known`, else by `resolve` (a _Lookups
    method or _minutes, giving the value and what is wrong with it); None if any is
    wrong."""
    resolved = {}
    for raw in set(raws):
        value = known.get(raw)
        if value is None:
            value, why = resolve(raw)
            if why:
                return None
        resolved[raw] = value
    return resolved


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        start = 3 if data.startswith(codecs.BOM_UTF8) else 0
        line = data.count(b"\n", start, error.start) + 1
        raise ImportRefused(
            source, [f"line {line}: not UTF-8 text (export the file as UTF-8 CSV)"]
        ) from None


def _wanted(mapping: MarkMapping) -> dict[str, str]:
    """The header of each column the mapping reads, by what it holds."""
    if mapping.wide:
        wanted = {"upn": mapping.upn, "date": mapping.date}
        for session, name in mapping.session_columns.items():
            wanted[f"{session} code"] = name
        for session, name in mapping.minutes_late_columns.items():
            wanted[f"{session} minutes late"] = name
    else:
        wanted = {
            "upn": mapping.upn,
            "date": mapping.date,
            "session": mapping.session or "",
            "code": mapping.code or "",
        }
        if mapping.minutes_late:
            wanted["minutes late"] = mapping.minutes_late
    if mapping.reason:
        wanted["reason"] = mapping.reason
    return wanted


def _locate(
    header: list[str], wanted: dict[str, str], line: int
) -> tuple[dict[str, int], list[str]]:
    """Column index of each wanted header (exact, then ignoring case and spaces)."""
    exact = {}
    folded = {}
    for i, name in enumerate(header):
        exact.setdefault(name, i)
        folded.setdefault(_fold(name), i)
    found: dict[str, int] = {}
    missing: list[str] = []
    for key, name in wanted.items():
        i = exact.get(name, folded.get(_fold(name)))
        if i is None:
            missing.append(f"line {line}: the header has no column {name!r} ({key})")
        else:
            found[key] = i
    return found, missing


class _Lookups:
    """Each distinct value of a column resolved once.

    The dicts hold the values already accepted, so a line costs one dict look-up per
    column; a value seen for the first time goes through the slow path, which either
    adds it or returns the problem.
    """

    def __init__(self, mapping: MarkMapping):
        self.date_format = mapping.date_format
        self.days: dict[str, date] = {}
        self.upns: dict[str, str] = {}
        self.sessions: dict[str, RegisterSession] = {}
        self.session_aliases = {_fold(k): v for k, v in _SESSIONS.items()}
        self.session_aliases.update(mapping.session_values)
        self.sessions.update(_SESSIONS)
        self.codes: dict[str, str] = {}
        for code in NATIONAL_CODES:
            self.codes[code] = code
            self.codes.setdefault(code.lower(), code)
        self.codes.update(mapping.code_values)
        self.code_aliases = {_fold(k): v for k, v in mapping.code_values.items()}

    def day(self, raw: str) -> tuple[date | None, str | None]:
        try:
            day = datetime.strptime(raw.strip(), self.date_format).date()
        except ValueError:
            return None, f"date {raw!r} does not match the format {self.date_format}"
        self.days[raw] = day
        return day, None

    def upn(self, raw: str) -> tuple[str | None, str | None]:
        if not raw.strip():
            return None, "no UPN"
        try:
            upn = validate_upn(raw)
        except InvalidUPNError as error:
            return None, str(error)
        self.upns[raw] = upn
        return upn, None

    def session(self, raw: str) -> tuple[RegisterSession | None, str | None]:
        session = self.session_aliases.get(_fold(raw))
        if session is None:
            return None, f"unknown session {raw!r}"
        self.sessions[raw] = session
        return session, None

    def code(self, raw: str) -> tuple[str | None, str | None]:
        text = raw.strip()
        code = self.codes.get(text) or self.code_aliases.get(_fold(text))
        if code is None:
            if not text:
                return None, "no attendance code"
            return None, f"{text!r} is not a national attendance code (2024 regulations)"
        self.codes[raw] = code
        return code, None


def _minutes(raw: str) -> tuple[int | None, str | None]:
    if not raw or not raw.strip():
        return None, None
    try:
        minutes = int(raw)
    except ValueError:
        return None, f"minutes late {raw.strip()!r} is not a whole number"
    if minutes < 0:
        return None, f"minutes late cannot be negative ({minutes})"
    return minutes, None


def _parse(
    data: bytes, mapping: MarkMapping, source: str, roll: Iterable[str] = ()
) -> list[MarkRow]:
    """The file's marks. UPNs in `roll` (the school's, checked when each pupil was added)
    are taken as they are; any other goes through the UPN check."""
    with paused_gc():
        return _parse_text(_decode(data, source), mapping, source, roll)


def _parse_text(text: str, mapping: MarkMapping, source: str, roll: Iterable[str]) -> list[MarkRow]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=mapping.delimiter, strict=True)
    problems: list[str] = []
    header: list[str] | None = None
    last_line = 0
    while header is None:
        try:
            row = next(reader)
        except StopIteration:
            raise ImportRefused(source, ["line 1: the file is empty (no header)"]) from None
        except csv.Error as error:
            raise ImportRefused(source, [f"line {reader.line_num}: {error}"]) from None
        if any(cell.strip() for cell in row):
            header = row
        last_line = reader.line_num

    index, missing = _locate(header, _wanted(mapping), last_line)
    if missing:
        raise ImportRefused(source, [f"{m} [mapping {mapping.name}]" for m in missing])

    width = len(header)
    lookups = _Lookups(mapping)
    lookups.upns.update((upn, upn) for upn in roll)
    days, upns, sessions, codes = lookups.days, lookups.upns, lookups.sessions, lookups.codes
    out: list[MarkRow] = []
    add = problems.append
    i_upn, i_date = index["upn"], index["date"]
    i_reason = index.get("reason")
    wide = mapping.wide
    per_session = [
        (session, index[f"{session} code"], index.get(f"{session} minutes late"))
        for session in (RegisterSession.AM, RegisterSession.PM)
        if f"{session} code" in index
    ]
    i_session = index.get("session", -1)
    i_code = index.get("code", -1)
    i_minutes = index.get("minutes late")

    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            add(f"line {last_line + 1}: malformed line ({error})")
            last_line = reader.line_num
            continue
        line = last_line + 1
        last_line = reader.line_num
        if len(row) != width:
            if any(cell.strip() for cell in row):
                add(f"line {line}: {len(row)} fields, the header has {width}")
            continue  # otherwise a blank line
        ok = True
        raw = row[i_upn]
        upn = upns.get(raw)
        if upn is None:
            upn, why = lookups.upn(raw)
            if why:
                add(f"line {line}: {why}")
                ok = False
        raw = row[i_date]
        day = days.get(raw)
        if day is None:
            day, why = lookups.day(raw)
            if why:
                add(f"line {line}: {why}")
                ok = False
        reason = (row[i_reason].strip() or None) if i_reason is not None else None

        if wide:
            for session, i_cell, i_min in per_session:
                raw = row[i_cell]
                if not raw or raw.isspace():
                    continue  # no mark for this session
                code = codes.get(raw)
                if code is None:
                    code, why = lookups.code(raw)
                    if why:
                        add(f"line {line}: {session}: {why}")
                        ok = False
                minutes = None
                if i_min is not None and row[i_min]:
                    minutes, why = _minutes(row[i_min])
                    if why:
                        add(f"line {line}: {session}: {why}")
                        ok = False
                if ok:
                    out.append(MarkRow(line, upn, day, session, code, minutes, reason))
            continue

        raw = row[i_session]
        session = sessions.get(raw)
        if session is None:
            session, why = lookups.session(raw)
            if why:
                add(f"line {line}: {why}")
                ok = False
        raw = row[i_code]
        code = codes.get(raw)
        if code is None:
            code, why = lookups.code(raw)
            if why:
                add(f"line {line}: {why}")
                ok = False
        minutes = None
        if i_minutes is not None and row[i_minutes]:
            minutes, why = _minutes(row[i_minutes])
            if why:
                add(f"line {line}: {why}")
                ok = False
        if ok:
            out.append(MarkRow(line, upn, day, session, code, minutes, reason))
    if problems:
        raise ImportRefused(source, problems)
    return out
