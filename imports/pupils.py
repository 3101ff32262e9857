"""Pupils and their contacts from CSV, the engine's own documented layout.

Pupils file (UTF-8, with or without a byte-order mark; header names are matched
ignoring case and surrounding spaces; a column the layout does not know is refused, so
that a misspelt flag cannot be silently dropped):

- `upn` (required): 13 characters, the check letter is verified.
- `forename`, `surname` (required).
- `date_of_birth` (required): `YYYY-MM-DD` or `DD/MM/YYYY`.
- `year_group` (required): `R` or `Reception` (0), or 1 to 13 (`7`, `Y7`, `Year 7`).
- `sex` (optional): `M`, `F`, `U` (unknown) or `W` (withheld); `Male`/`Female` accepted.
- flags (optional): `send`, `ehcp`, `fsm`, `social_worker`, `child_protection_plan`,
  `looked_after`, `young_carer`, `part_time_timetable`: `Y`/`N`, `yes`/`no`,
  `true`/`false` or `1`/`0`; empty is no. A flag column left out of the file keeps
  the stored value (and is no for a new pupil).
- contacts (optional), in columns `contact1_<field>`, `contact2_<field>`, ... with the
  fields below; a contact whose fields are all empty is no contact.

Contacts, either in those columns or in a second file with a `upn` column and the same
fields (several lines per pupil):

- `priority`: 1 is called first; defaults to N for `contactN_` columns and to the order
  of the lines in a contacts file.
- `title`, `forename`, `surname` (surname required), `relationship` (Mother, Father,
  Carer, Grandparent, ...).
- `parental_responsibility`: a flag as above; empty is yes.
- `phone`, `email`, `address` (lines separated by `;` or newlines), `postcode`.
- `preferred_channel`: `email`, `post` or `both`; empty means email when there is an
  email address, else post. `email` and `both` need an email, `post` and `both` an
  address.

The files are checked whole and refused (ImportRefused) with every problem and its line
(bad UPN or check letter, bad date, unknown year group, bad flag, duplicate UPN, bad
channel, ...); messages name lines and UPNs, never names or dates of birth. Then pupils
are matched by UPN within the school: new ones are added and changed ones updated in
place; contacts are matched by priority. Pupils and contacts missing from the files are
left as they are (leaving the roll is a decision, not an import). The same files twice
change nothing: the second import is recognised by its hash.
"""

import csv
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from sqlmodel import Session, select

from imports.marks import ImportRefused, ImportResult, Progress
from models.tables import Contact, ImportBatch, Pupil
from models.upn import InvalidUPNError, validate_upn

__all__ = ["FLAGS", "PUPIL_COLUMNS", "CONTACT_FIELDS", "import_pupils_csv", "parse_pupils_csv"]

KIND = "pupils-csv"
FLAGS = (
    "send",
    "ehcp",
    "fsm",
    "social_worker",
    "child_protection_plan",
    "looked_after",
    "young_carer",
    "part_time_timetable",
)
REQUIRED = ("upn", "forename", "surname", "date_of_birth", "year_group")
PUPIL_COLUMNS = (*REQUIRED, "sex", *FLAGS)
CONTACT_FIELDS = (
    "priority",
    "title",
    "forename",
    "surname",
    "relationship",
    "parental_responsibility",
    "phone",
    "email",
    "address",
    "postcode",
    "preferred_channel",
)
CHANNELS = ("email", "post", "both")
_TRUE = {"y", "yes", "true", "1"}
_FALSE = {"n", "no", "false", "0", ""}
_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "u": "U", "w": "W", "": ""}


@dataclass
class ContactRow:
    line: str  # "line 4" or "contacts.csv line 4", for messages
    priority: int
    values: dict


@dataclass
class PupilRow:
    line: int
    upn: str
    values: dict  # Pupil fields given by the file
    contacts: list[ContactRow] = field(default_factory=list)


def _flag(raw: str) -> bool | None:
    value = raw.strip().lower()
    return True if value in _TRUE else False if value in _FALSE else None


def _year_group(raw: str) -> int | None:
    value = raw.strip().upper().replace("YEAR", "").replace(" ", "").removeprefix("Y")
    if value in ("R", "RECEPTION", "0"):
        return 0
    if value.isdigit() and 1 <= int(value) <= 13:
        return int(value)
    return None


def _dob(raw: str) -> date | None:
    value = raw.strip()
    for form in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(value, form).date()
        except ValueError:
            continue
    return None


def _read(data: bytes, source: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (folded names) and (line, fields) of each non-blank line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRefused(source, ["not UTF-8 text (export the file as UTF-8 CSV)"]) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    problems: list[str] = []
    last = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.append(f"line {last + 1}: malformed line ({error})")
            last = reader.line_num
            continue
        line, last = last + 1, reader.line_num
        if any(cell.strip() for cell in row):
            rows.append((line, row))
    if problems:
        raise ImportRefused(source, problems)
    if not rows:
        raise ImportRefused(source, ["line 1: the file is empty (no header)"])
    (_, header), *body = rows
    return [h.strip().lower() for h in header], body


def _contact(
    get: Callable[[str], str], where: str, default_priority: int, problems: list[str]
) -> ContactRow | None:
    """A contact from its fields, or None when they are all empty."""
    raw = {name: get(name).strip() for name in CONTACT_FIELDS}
    if not any(raw.values()):
        return None
    priority = default_priority
    if raw["priority"]:
        if raw["priority"].isdigit() and int(raw["priority"]) >= 1:
            priority = int(raw["priority"])
        else:
            problems.append(f"{where}: priority {raw['priority']!r} is not 1, 2, 3 ...")
    responsibility = _flag(raw["parental_responsibility"] or "y")
    if responsibility is None:
        problems.append(
            f"{where}: parental_responsibility {raw['parental_responsibility']!r} "
            "is not Y/N or true/false"
        )
    if not raw["surname"]:
        problems.append(f"{where}: the contact has no surname")
    address = "\n".join(
        part.strip() for part in raw["address"].replace(";", "\n").splitlines() if part.strip()
    )
    channel = raw["preferred_channel"].lower() or ("email" if raw["email"] else "post")
    if channel not in CHANNELS:
        problems.append(
            f"{where}: preferred_channel {raw['preferred_channel']!r} is not email, post or both"
        )
    else:
        if channel in ("email", "both") and not raw["email"]:
            problems.append(f"{where}: preferred_channel {channel} but no email address")
        if channel in ("post", "both") and not address:
            problems.append(f"{where}: preferred_channel {channel} but no postal address")
    return ContactRow(
        line=where,
        priority=priority,
        values={
            "title": raw["title"],
            "forename": raw["forename"],
            "surname": raw["surname"],
            "relationship": raw["relationship"],
            "parental_responsibility": bool(responsibility),
            "phone": raw["phone"],
            "email": raw["email"],
            "address": address,
            "postcode": raw["postcode"].upper(),
            "preferred_channel": channel,
        },
    )


def _contact_columns(header: list[str]) -> tuple[dict[int, dict[str, int]], list[str]]:
    """Columns contactN_field grouped by N, and the names that fit no known column."""
    groups: dict[int, dict[str, int]] = {}
    unknown: list[str] = []
    for i, name in enumerate(header):
        if name in PUPIL_COLUMNS:
            continue
        prefix, _, fieldname = name.partition("_")
        number = prefix.removeprefix("contact")
        if prefix.startswith("contact") and number.isdigit() and fieldname in CONTACT_FIELDS:
            groups.setdefault(int(number), {})[fieldname] = i
        else:
            unknown.append(name)
    return groups, unknown


def parse_pupils_csv(
    path: "str | Path", contacts_path: "str | Path | None" = None
) -> list[PupilRow]:
    """Every pupil (with contacts) in the file(s), or ImportRefused listing every problem."""
    path = Path(path)
    contacts = None
    if contacts_path is not None:
        contacts_path = Path(contacts_path)
        contacts = (contacts_path.name, contacts_path.read_bytes())
    return _parse(path.read_bytes(), path.name, contacts, known_upns=None)


def _parse(
    data: bytes,
    source: str,
    contacts: tuple[str, bytes] | None,
    known_upns: set[str] | None,
) -> list[PupilRow]:
    header, body = _read(data, source)
    problems: list[str] = []
    index = {name: i for i, name in enumerate(header)}
    missing = [name for name in REQUIRED if name not in index]
    groups, unknown = _contact_columns(header)
    problems += [f"line 1: the header has no column {name!r}" for name in missing]
    problems += [f"line 1: unknown column {name!r}" for name in unknown]
    if problems:
        raise ImportRefused(source, problems)

    pupils: list[PupilRow] = []
    seen: dict[str, int] = {}
    width = len(header)
    for line, row in body:
        where = f"line {line}"
        if len(row) != width:
            problems.append(f"{where}: {len(row)} fields, the header has {width}")
            continue

        def get(name: str, row: list[str] = row) -> str:
            return row[index[name]] if name in index else ""

        try:
            upn = validate_upn(get("upn"))
        except InvalidUPNError as error:
            problems.append(f"{where}: {error}")
            upn = ""
        if upn in seen:
            problems.append(f"{where}: UPN {upn} is also on line {seen[upn]}")
        elif upn:
            seen[upn] = line
            where = f"line {line} (UPN {upn})"
        values: dict = {}
        for name in ("forename", "surname"):
            values[name] = get(name).strip()
            if not values[name]:
                problems.append(f"{where}: no {name}")
        values["date_of_birth"] = _dob(get("date_of_birth"))
        if values["date_of_birth"] is None:
            problems.append(f"{where}: date_of_birth is not a date (YYYY-MM-DD or DD/MM/YYYY)")
        values["year_group"] = _year_group(get("year_group"))
        if values["year_group"] is None:
            problems.append(
                f"{where}: year_group {get('year_group').strip()!r} is not R or 1 to 13"
            )
        if "sex" in index:
            values["sex"] = _SEX.get(get("sex").strip().lower())
            if values["sex"] is None:
                problems.append(f"{where}: sex {get('sex').strip()!r} is not M, F, U or W")
        for name in FLAGS:
            if name in index:
                values[name] = _flag(get(name))
                if values[name] is None:
                    problems.append(
                        f"{where}: {name} {get(name).strip()!r} is not Y/N or true/false"
                    )
        pupil = PupilRow(line=line, upn=upn, values=values)
        for number, columns in sorted(groups.items()):
            contact = _contact(
                lambda name, row=row, columns=columns: (
                    row[columns[name]] if name in columns else ""
                ),
                f"{where} contact{number}",
                number,
                problems,
            )
            if contact:
                pupil.contacts.append(contact)
        pupils.append(pupil)

    if contacts is not None:
        _parse_contacts(contacts, pupils, known_upns, problems)
    for pupil in pupils:
        priorities: set[int] = set()
        for contact in pupil.contacts:
            if contact.priority in priorities:
                problems.append(
                    f"{contact.line}: a second contact with priority {contact.priority} "
                    f"for UPN {pupil.upn}"
                )
            priorities.add(contact.priority)
    if problems:
        raise ImportRefused(source, problems)
    return pupils


def _parse_contacts(
    contacts: tuple[str, bytes],
    pupils: list[PupilRow],
    known_upns: set[str] | None,
    problems: list[str],
) -> None:
    """Add the contacts file's contacts to `pupils` (a pupil on roll gets a new row)."""
    name, data = contacts
    header, body = _read(data, name)
    index = {h: i for i, h in enumerate(header)}
    unknown = [h for h in header if h != "upn" and h not in CONTACT_FIELDS]
    head_problems = [f"{name} line 1: unknown column {h!r}" for h in unknown]
    if "upn" not in index:
        head_problems.append(f"{name} line 1: the header has no column 'upn'")
    if head_problems:
        problems += head_problems
        return
    by_upn = {p.upn: p for p in pupils if p.upn}
    width = len(header)
    for line, row in body:
        where = f"{name} line {line}"
        if len(row) != width:
            problems.append(f"{where}: {len(row)} fields, the header has {width}")
            continue
        try:
            upn = validate_upn(row[index["upn"]])
        except InvalidUPNError as error:
            problems.append(f"{where}: {error}")
            continue
        pupil = by_upn.get(upn)
        if pupil is None:
            if known_upns is not None and upn not in known_upns:
                problems.append(f"{where}: UPN {upn} is neither in the pupils file nor on roll")
                continue
            pupil = by_upn[upn] = PupilRow(line=0, upn=upn, values={})
            pupils.append(pupil)
        contact = _contact(
            lambda field, row=row: row[index[field]] if field in index else "",
            f"{where} (UPN {upn})",
            len(pupil.contacts) + 1,
            problems,
        )
        if contact:
            pupil.contacts.append(contact)


def import_pupils_csv(
    *,
    session: Session,
    school_id: int,
    path: "str | Path",
    contacts_path: "str | Path | None" = None,
    recorded_by: str = "pupils import",
    progress: Progress | None = None,
) -> ImportResult:
    """Add or update the school's pupils and contacts from CSV, in the caller's transaction.

    Counts are of records: each pupil and each contact is added, amended or unchanged.
    """
    path = Path(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data)
    contacts = None
    filename = path.name
    if contacts_path is not None:
        contacts_path = Path(contacts_path)
        contacts = (contacts_path.name, contacts_path.read_bytes())
        digest.update(hashlib.sha256(contacts[1]).digest())
        filename = f"{path.name} + {contacts_path.name}"
    sha256 = digest.hexdigest()

    stored = {
        p.upn: p for p in session.exec(select(Pupil).where(Pupil.school_id == school_id)).all()
    }
    rows = _parse(data, path.name, contacts, known_upns=set(stored))
    already = session.exec(
        select(ImportBatch.id).where(
            ImportBatch.school_id == school_id, ImportBatch.sha256 == sha256
        )
    ).first()
    records = len(rows) + sum(len(r.contacts) for r in rows)
    if already is not None:
        return ImportResult(rows=records, already_imported=True)

    result = ImportResult(rows=records)
    total = len(rows)
    for done, row in enumerate(rows, start=1):
        pupil = stored.get(row.upn)
        if pupil is None:
            pupil = Pupil(school_id=school_id, upn=row.upn, **row.values)
            session.add(pupil)
            stored[row.upn] = pupil
            result.added += 1
        elif _update(pupil, row.values):
            session.add(pupil)
            result.amended += 1
        elif row.values:
            result.unchanged += 1
        if progress and (done % 500 == 0 or done == total):
            progress(done, total)
    session.flush()

    ids = [stored[r.upn].id for r in rows if r.contacts]
    contacts_stored = {
        (c.pupil_id, c.priority): c
        for c in session.exec(select(Contact).where(Contact.pupil_id.in_(ids))).all()
    }
    for row in rows:
        pupil_id = stored[row.upn].id
        for contact_row in row.contacts:
            contact = contacts_stored.get((pupil_id, contact_row.priority))
            if contact is None:
                session.add(
                    Contact(pupil_id=pupil_id, priority=contact_row.priority, **contact_row.values)
                )
                result.added += 1
            elif _update(contact, contact_row.values):
                session.add(contact)
                result.amended += 1
            else:
                result.unchanged += 1

    session.add(
        ImportBatch(
            school_id=school_id,
            kind=KIND,
            filename=filename,
            sha256=sha256,
            imported_at=datetime.now(UTC),
            imported_by=recorded_by,
            rows=result.rows,
            added=result.added,
            amended=result.amended,
            unchanged=result.unchanged,
        )
    )
    session.flush()
    return result


def _update(record: Pupil | Contact, values: dict) -> bool:
    changed = False
    for name, value in values.items():
        if getattr(record, name) != value:
            setattr(record, name, value)
            changed = True
    return changed
