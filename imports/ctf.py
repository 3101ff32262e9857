"""The DfE Common Transfer File (CTF): read one, import it, and write one.

A CTF is XML with root `CTfile`: a `Header` (`DocumentName` "Common Transfer File",
`CTFversion` or, from one vendor, `CTFVersion`; `DateTime`; `SourceSchool` with `LEA`,
`Estab`, `URN`, `SchoolName`, `AcademicYear`; `DestSchool` with `LEA`, `Estab`) and
`CTFpupilData/Pupil` elements: `UPN`, `Surname`, `Forename`, `DOB`, `Sex` or `Gender`,
`BasicDetails/NCyearActual`, `Contacts/Contact` and `Attendance/YearData`.

Versions: like the MIS products, the current version (25) and the one before (24) are
read silently; any other version is still read, with a warning for the caller to show.

Attendance marks (`YearData/AttendSessions`: `AttendanceStartDate`, `AttendanceMarks`):
one character per session in older files, comma-separated from CTF 24 so that `C1`,
`C2`, `J1`, `Y1`-`Y7` fit; a string holding a comma is split on commas, any other is
read a character at a time (whitespace ignored). Marks run AM, PM, AM, PM ... from the
start date. The weekday convention is an assumption: the DfE specification was not to
hand, so marks are taken to cover Monday to Friday only, weekends skipped (a start date
on a weekend means the following Monday); `SESSIONS_INCLUDE_WEEKENDS` says so in one
place. `-` is filler (no mark expected) and `#` (planned closure) is a session with
nothing to store; neither is a possible session. Any other mark must be a national
code (2024 regulations).

The year totals are a cross-check: for each year whose marks are given, the marks are
counted (attended = present or approved educational activity; authorised; unauthorised;
possible = every mark that is a possible session) and a file whose counts differ from
`SessionsAttended`, `SessionsAuthorised`, `SessionsUnauthorised` or `SessionsPossible` is
refused. Messages name pupils by position and UPN, never by name or date of birth.

Importing (`import_ctf`) creates or updates the destination school's pupils (matched by
UPN) and their contacts (matched by `Order`), then stores through `store_marks` only the
marks of years whose LEA and Estab are the importing school's own. Marks from another
school's year data are that school's register, not ours: they stay evidence in the file
and are not stored. Contacts absent from the file are kept (letters and the
penalty-notice ledger may refer to them).
"""

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from xml.parsers import expat

from sqlmodel import Session, select

from imports.marks import ImportRefused, ImportResult, MarkRow, Progress, store_marks
from models.codes import NATIONAL_CODES, Category
from models.tables import Contact, ImportBatch, Pupil, RegisterMark, RegisterSession, School
from models.upn import InvalidUPNError, validate_upn

__all__ = [
    "ACCEPTED_VERSIONS",
    "CURRENT_VERSION",
    "CtfContact",
    "CtfFile",
    "CtfHeader",
    "CtfImportResult",
    "CtfMark",
    "CtfPupil",
    "CtfSchool",
    "CtfYearData",
    "count_marks",
    "ctf_pupil_from_rows",
    "encode_marks",
    "import_ctf",
    "parse_ctf",
    "session_slots",
    "write_ctf",
]

CURRENT_VERSION = 25
ACCEPTED_VERSIONS = (CURRENT_VERSION, CURRENT_VERSION - 1)
DOCUMENT_NAME = "Common Transfer File"
KIND = "ctf"
FILLER = "-"  # no mark expected
CLOSED = "#"  # planned whole-school closure: nothing to store, not a possible session
SESSIONS_INCLUDE_WEEKENDS = False  # see the module docstring: an assumption

_AM, _PM = RegisterSession.AM, RegisterSession.PM
_ATTENDED = {c.code for c in NATIONAL_CODES.values() if c.counts_as_present}
_AUTHORISED = {c.code for c in NATIONAL_CODES.values() if c.category == Category.AUTHORISED}
_UNAUTHORISED = {c.code for c in NATIONAL_CODES.values() if c.category == Category.UNAUTHORISED}
_POSSIBLE = {c.code for c in NATIONAL_CODES.values() if c.is_possible_session}
_YEAR_GROUPS = {"R": 0, "0": 0, **{str(n): n for n in range(1, 14)}}
# CTF relationship codes (the ones the engine shows in words); others are kept as given.
RELATIONSHIPS = {
    "PAM": "Mother",
    "PAF": "Father",
    "STM": "Step-mother",
    "STF": "Step-father",
    "FOM": "Foster mother",
    "FOF": "Foster father",
    "CAR": "Carer",
    "GRM": "Grandmother",
    "GRF": "Grandfather",
    "REL": "Other relative",
    "SWR": "Social worker",
    "CHM": "Childminder",
    "DOC": "Doctor",
    "OTH": "Other",
}
_RELATIONSHIP_CODES = {v: k for k, v in RELATIONSHIPS.items()}


@dataclass
class CtfSchool:
    lea: str = ""
    estab: str = ""
    urn: str = ""
    name: str = ""
    academic_year: str = ""


@dataclass
class CtfHeader:
    document_name: str = DOCUMENT_NAME
    version: str = f"{CURRENT_VERSION}.0"
    date_time: str = ""
    source: CtfSchool = field(default_factory=CtfSchool)
    dest: CtfSchool = field(default_factory=CtfSchool)

    @property
    def major_version(self) -> int | None:
        try:
            return int(self.version.split(".")[0])
        except ValueError:
            return None


@dataclass
class CtfContact:
    order: int
    surname: str = ""
    forename: str = ""
    title: str = ""
    relationship: str = ""
    responsibility: bool = False
    phone: str = ""
    email: str = ""
    address_lines: list[str] = field(default_factory=list)
    postcode: str = ""


@dataclass(frozen=True)
class CtfMark:
    day: date
    session: RegisterSession
    code: str


@dataclass
class CtfYearData:
    year: str
    lea: str
    estab: str
    school_name: str = ""
    sessions_possible: int | None = None
    sessions_authorised: int | None = None
    sessions_attended: int | None = None
    sessions_unauthorised: int | None = None
    start_date: date | None = None
    marks: list[CtfMark] = field(default_factory=list)
    line: int = 0  # of AttendanceMarks in the file, for messages

    @classmethod
    def from_marks(
        cls,
        *,
        year: str,
        lea: str,
        estab: str,
        school_name: str = "",
        marks: Iterable[tuple[date, str, str]] | Iterable[CtfMark],
        start_date: date | None = None,
    ) -> "CtfYearData":
        """A year of marks with the totals counted from them (for write_ctf)."""
        found = [
            m if isinstance(m, CtfMark) else CtfMark(m[0], RegisterSession(m[1]), m[2])
            for m in marks
        ]
        found.sort(key=lambda m: (m.day, m.session != _AM))
        totals = count_marks(m.code for m in found)
        return cls(
            year=year,
            lea=lea,
            estab=estab,
            school_name=school_name,
            sessions_possible=totals["possible"],
            sessions_authorised=totals["authorised"],
            sessions_attended=totals["attended"],
            sessions_unauthorised=totals["unauthorised"],
            start_date=start_date or (found[0].day if found else None),
            marks=found,
        )


@dataclass
class CtfPupil:
    upn: str
    surname: str
    forename: str
    dob: date | None
    sex: str = ""
    year_group: int | None = None  # NC year: 0 Reception ... 13; None if not given
    contacts: list[CtfContact] = field(default_factory=list)
    years: list[CtfYearData] = field(default_factory=list)
    address_lines: list[str] = field(default_factory=list)
    postcode: str = ""
    position: int = 0  # 1 for the first Pupil in the file
    line: int = 0


@dataclass
class CtfFile:
    header: CtfHeader
    pupils: list[CtfPupil]
    warnings: list[str] = field(default_factory=list)


@dataclass
class CtfImportResult(ImportResult):
    """Marks counts (from store_marks), plus what happened to pupils and contacts."""

    pupils_added: int = 0
    pupils_amended: int = 0
    pupils_unchanged: int = 0
    contacts_added: int = 0
    contacts_amended: int = 0
    contacts_unchanged: int = 0
    warnings: list[str] = field(default_factory=list)


def session_slots(
    start: date, weekends: bool = SESSIONS_INCLUDE_WEEKENDS
) -> Iterator[tuple[date, RegisterSession]]:
    """(day, session) pairs AM, PM, AM, PM ... from `start`, as AttendanceMarks runs."""
    day = start
    while True:
        if weekends or day.weekday() < 5:
            yield day, _AM
            yield day, _PM
        day += timedelta(days=1)


def count_marks(codes: Iterable[str]) -> dict[str, int]:
    """The four CTF year totals counted from national codes."""
    totals = {"possible": 0, "attended": 0, "authorised": 0, "unauthorised": 0}
    for code in codes:
        if code in _POSSIBLE:
            totals["possible"] += 1
            if code in _ATTENDED:
                totals["attended"] += 1
            elif code in _AUTHORISED:
                totals["authorised"] += 1
            elif code in _UNAUTHORISED:
                totals["unauthorised"] += 1
    return totals


# --- reading -----------------------------------------------------------------------


class _Tree:
    """The file's elements with the line each starts on (ElementTree keeps none)."""

    def __init__(self, data: bytes, source: str):
        builder = ET.TreeBuilder()
        self.lines: dict[int, int] = {}
        parser = expat.ParserCreate()

        def start(tag: str, attrs: dict[str, str]) -> None:
            self.lines[id(builder.start(tag, attrs))] = parser.CurrentLineNumber

        def refuse_entities(*_args) -> None:
            # A CTF never declares entities; refusing them rules out entity expansion.
            raise ImportRefused(source, ["the file declares XML entities; a CTF has none"])

        parser.StartElementHandler = start
        parser.EndElementHandler = builder.end
        parser.CharacterDataHandler = builder.data
        parser.EntityDeclHandler = refuse_entities
        try:
            parser.Parse(data, True)
        except expat.ExpatError as error:
            raise ImportRefused(
                source,
                [f"line {error.lineno}: not well-formed XML ({expat.ErrorString(error.code)})"],
            ) from None
        self.root = builder.close()

    def line(self, elem: ET.Element | None) -> int:
        return self.lines.get(id(elem), 0) if elem is not None else 0


def _text(elem: ET.Element | None, *paths: str) -> str:
    """Stripped text of the first of `paths` present under `elem`, else ''."""
    if elem is None:
        return ""
    for path in paths:
        found = elem.find(path)
        if found is not None:
            return (found.text or "").strip()
    return ""


def _school(elem: ET.Element | None) -> CtfSchool:
    return CtfSchool(
        lea=_text(elem, "LEA"),
        estab=_text(elem, "Estab"),
        urn=_text(elem, "URN"),
        name=_text(elem, "SchoolName"),
        academic_year=_text(elem, "AcademicYear"),
    )


def _address(elem: ET.Element | None) -> tuple[list[str], str]:
    """Address lines and postcode from AddressLines or a BS7666Address."""
    if elem is None:
        return [], ""
    lines = [
        (line.text or "").strip()
        for line in elem.findall("AddressLines/*")
        if line.tag.startswith("AddressLine")
    ]
    if not any(lines):
        bs = elem.find("BS7666Address")
        street = f"{_text(bs, 'PAON')} {_text(bs, 'Street')}".strip()
        lines = [_text(bs, "SAON"), street]
        lines += [_text(bs, p) for p in ("Locality", "Town", "AdministrativeArea", "PostTown")]
    seen: list[str] = []
    for line in lines:
        if line and line not in seen:
            seen.append(line)
    return seen, _text(elem, "PostCode").upper()


def parse_ctf(path: "str | Path") -> CtfFile:
    """Read a CTF whole, or raise ImportRefused listing every problem in it."""
    path = Path(path)
    return _parse(path.read_bytes(), path.name)


def _parse(data: bytes, source: str) -> CtfFile:
    tree = _Tree(data, source)
    root = tree.root
    if root.tag != "CTfile":
        raise ImportRefused(
            source, [f"line 1: the root element is {root.tag}; a CTF's root is CTfile"]
        )
    problems: list[str] = []
    warnings: list[str] = []
    head = root.find("Header")
    if head is None:
        problems.append("line 1: no Header")
    header = CtfHeader(
        document_name=_text(head, "DocumentName"),
        version=_text(head, "CTFversion", "CTFVersion"),
        date_time=_text(head, "DateTime"),
        source=_school(head.find("SourceSchool") if head is not None else None),
        dest=_school(head.find("DestSchool") if head is not None else None),
    )
    if head is not None and header.document_name != DOCUMENT_NAME:
        problems.append(
            f"line {tree.line(head)}: DocumentName is {header.document_name!r}, "
            f"not {DOCUMENT_NAME!r}"
        )
    if head is not None:
        major = header.major_version
        if not header.version:
            warnings.append("the header gives no CTFversion; read as a current CTF")
        elif major not in ACCEPTED_VERSIONS:
            warnings.append(
                f"CTF version {header.version} is not one this importer expects "
                f"({' or '.join(map(str, ACCEPTED_VERSIONS))}): check the imported data"
            )

    pupils: list[CtfPupil] = []
    seen: dict[str, int] = {}
    for position, elem in enumerate(root.findall("CTFpupilData/Pupil"), start=1):
        pupil = _pupil(elem, position, tree, problems)
        if pupil.upn:
            if pupil.upn in seen:
                problems.append(
                    f"pupil {position} (UPN {pupil.upn}, line {pupil.line}): "
                    f"the same UPN as pupil {seen[pupil.upn]}"
                )
            seen.setdefault(pupil.upn, position)
        pupils.append(pupil)
    if not pupils and not problems:
        warnings.append("the file holds no pupils")
    if problems:
        raise ImportRefused(source, problems)
    return CtfFile(header=header, pupils=pupils, warnings=warnings)


def _pupil(elem: ET.Element, position: int, tree: _Tree, problems: list[str]) -> CtfPupil:
    line = tree.line(elem)
    raw_upn = _text(elem, "UPN")
    upn = ""
    who = f"pupil {position} (line {line})"
    if not raw_upn:
        problems.append(f"{who}: no UPN")
    else:
        try:
            upn = validate_upn(raw_upn)
            who = f"pupil {position} (UPN {upn}, line {line})"
        except InvalidUPNError as error:
            problems.append(f"{who}: {error}")
    for tag in ("Surname", "Forename"):
        if not _text(elem, tag):
            problems.append(f"{who}: no {tag}")
    dob = None
    raw_dob = _text(elem, "DOB")
    try:
        dob = date.fromisoformat(raw_dob)
    except ValueError:
        # The value is personal data: say what is wrong, not what it is.
        problems.append(f"{who}: DOB is missing or not a date (YYYY-MM-DD)")
    year_group = None
    raw_year = _text(elem, "BasicDetails/NCyearActual", "NCyearActual")
    if raw_year:
        year_group = _YEAR_GROUPS.get(raw_year.upper().removeprefix("Y"))
        if year_group is None:
            problems.append(
                f"{who}: NCyearActual {raw_year!r} is not a year group the engine keeps "
                "(R, 1 to 13)"
            )
    address_lines, postcode = _address(elem.find("Address"))

    contacts: list[CtfContact] = []
    orders: set[int] = set()
    for i, c in enumerate(elem.findall("Contacts/Contact"), start=1):
        raw_order = _text(c, "Order")
        try:
            order = int(raw_order) if raw_order else i
        except ValueError:
            problems.append(
                f"{who}: contact line {tree.line(c)}: Order {raw_order!r} is not a number"
            )
            continue
        if order in orders:
            problems.append(
                f"{who}: contact line {tree.line(c)}: a second contact with Order {order}"
            )
        orders.add(order)
        if _text(c, "AddressAsPupil").lower() in ("true", "1"):
            lines, code = address_lines, postcode
        else:
            lines, code = _address(c.find("Address"))
        relationship = _text(c, "Relationship")
        contacts.append(
            CtfContact(
                order=order,
                title=_text(c, "Title"),
                surname=_text(c, "Surname"),
                forename=_text(c, "Forename"),
                relationship=RELATIONSHIPS.get(relationship.upper(), relationship),
                responsibility=_text(c, "Responsibility").lower() in ("true", "1"),
                phone=_text(c, "Phones/Phone/PhoneNo"),
                email=_text(c, "Email"),
                address_lines=list(lines),
                postcode=code,
            )
        )

    years = [_year(y, who, tree, problems) for y in elem.findall("Attendance/YearData")]
    return CtfPupil(
        upn=upn,
        surname=_text(elem, "Surname"),
        forename=_text(elem, "Forename"),
        dob=dob,
        sex=_text(elem, "Sex", "Gender").upper(),
        year_group=year_group,
        contacts=contacts,
        years=years,
        address_lines=address_lines,
        postcode=postcode,
        position=position,
        line=line,
    )


def _year(elem: ET.Element, who: str, tree: _Tree, problems: list[str]) -> CtfYearData:
    year = CtfYearData(
        year=_text(elem, "Year"),
        lea=_text(elem, "LEA"),
        estab=_text(elem, "Estab"),
        school_name=_text(elem, "SchoolName"),
    )
    where = f"{who}, year {year.year or '?'} at {year.lea or '?'}/{year.estab or '?'}"
    for tag, attr in (
        ("SessionsPossible", "sessions_possible"),
        ("SessionsAuthorised", "sessions_authorised"),
        ("SessionsAttended", "sessions_attended"),
        ("SessionsUnauthorised", "sessions_unauthorised"),
    ):
        raw = _text(elem, tag)
        if raw:
            try:
                setattr(year, attr, int(raw))
            except ValueError:
                problems.append(f"{where}: {tag} {raw!r} is not a whole number")

    codes: list[str] = []
    unknown = False
    for sessions in elem.findall("AttendSessions"):
        marks_elem = sessions.find("AttendanceMarks")
        line = tree.line(marks_elem) or tree.line(sessions)
        year.line = year.line or line
        raw_start = _text(sessions, "AttendanceStartDate")
        try:
            start = date.fromisoformat(raw_start)
        except ValueError:
            problems.append(
                f"{where} (line {line}): AttendanceStartDate {raw_start!r} is not a date "
                "(YYYY-MM-DD)"
            )
            continue
        year.start_date = year.start_date or start
        raw = (marks_elem.text or "") if marks_elem is not None else ""
        if "," in raw:
            tokens = [token.strip() for token in raw.split(",")]
        else:
            tokens = [ch for ch in raw if not ch.isspace()]
        slots = session_slots(start)
        for n, token in enumerate(tokens, start=1):
            day, session = next(slots)
            if token in ("", FILLER, CLOSED):
                continue
            if token not in NATIONAL_CODES:
                unknown = True
                problems.append(
                    f"{where} (line {line}): mark {n} ({day.isoformat()} {session}) "
                    f"{token!r} is not a national attendance code (2024 regulations)"
                )
                continue
            year.marks.append(CtfMark(day, session, token))
            codes.append(token)

    if codes and not unknown:  # with an unknown code the totals cannot be checked
        counted = count_marks(codes)
        given = {
            "possible": year.sessions_possible,
            "attended": year.sessions_attended,
            "authorised": year.sessions_authorised,
            "unauthorised": year.sessions_unauthorised,
        }
        wrong = [
            f"{name} {counted[name]} (the file says {given[name]})"
            for name in given
            if given[name] is not None and given[name] != counted[name]
        ]
        if wrong:
            problems.append(
                f"{where} (line {year.line}): the marks do not add up to the year totals: "
                f"they give {', '.join(wrong)}"
            )
    return year


# --- importing ---------------------------------------------------------------------


def import_ctf(
    *,
    session: Session,
    school_id: int,
    path: "str | Path",
    recorded_by: str,
    role: str,
    default_reason: str | None = None,
    progress: Progress | None = None,
) -> CtfImportResult:
    """Import a CTF into `school_id` in the caller's transaction.

    Refusals raise ImportRefused; pupils may have been written to the session by then,
    so the caller rolls back (database.transaction does when the exception leaves it).
    The same file twice changes nothing.
    """
    path = Path(path)
    data = path.read_bytes()
    ctf = _parse(data, path.name)
    sha256 = hashlib.sha256(data).hexdigest()
    result = CtfImportResult(warnings=list(ctf.warnings))
    already = session.exec(
        select(ImportBatch.id).where(
            ImportBatch.school_id == school_id, ImportBatch.sha256 == sha256
        )
    ).first()
    if already is not None:
        result.already_imported = True
        return result

    school = session.get(School, school_id)
    if school is None:
        raise ValueError(f"no school with id {school_id}")
    dest = ctf.header.dest
    if dest.lea and dest.estab and (dest.lea, dest.estab) != (school.la_code, school.estab):
        result.warnings.append(
            f"the file is addressed to {dest.lea}/{dest.estab}, "
            f"imported into {school.la_code}/{school.estab}"
        )

    pupils = {
        p.upn: p for p in session.exec(select(Pupil).where(Pupil.school_id == school_id)).all()
    }
    problems = [
        f"pupil {p.position} (UPN {p.upn}, line {p.line}): no NCyearActual, "
        "needed for a pupil new to the school"
        for p in ctf.pupils
        if p.upn not in pupils and p.year_group is None
    ]
    if problems:
        raise ImportRefused(path.name, problems)

    for ctf_pupil in ctf.pupils:
        pupil = pupils.get(ctf_pupil.upn)
        changed = _apply_pupil(ctf_pupil, pupil, school_id)
        if pupil is None:
            pupil = changed
            session.add(pupil)
            pupils[pupil.upn] = pupil
            result.pupils_added += 1
        elif changed is not None:
            session.add(pupil)
            result.pupils_amended += 1
        else:
            result.pupils_unchanged += 1
    session.flush()

    ids = [pupils[p.upn].id for p in ctf.pupils]
    stored = {
        (c.pupil_id, c.priority): c
        for c in session.exec(select(Contact).where(Contact.pupil_id.in_(ids))).all()
    }
    for ctf_pupil in ctf.pupils:
        pupil = pupils[ctf_pupil.upn]
        for ctf_contact in ctf_pupil.contacts:
            contact = stored.get((pupil.id, ctf_contact.order))
            if contact is None:
                session.add(_new_contact(ctf_contact, pupil.id))
                result.contacts_added += 1
            elif _update_contact(ctf_contact, contact):
                session.add(contact)
                result.contacts_amended += 1
            else:
                result.contacts_unchanged += 1
    session.flush()

    rows = _own_marks(ctf, school)
    rows = _keep_minutes(session, school_id, rows)
    stored = store_marks(
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
    )
    result.rows, result.added = stored.rows, stored.added
    result.amended, result.unchanged = stored.amended, stored.unchanged
    return result


def _apply_pupil(ctf: CtfPupil, pupil: Pupil | None, school_id: int) -> Pupil | None:
    """A new Pupil, or the existing one updated (None when nothing changed)."""
    values = {
        "forename": ctf.forename,
        "surname": ctf.surname,
        "date_of_birth": ctf.dob,
    }
    if ctf.sex:
        values["sex"] = ctf.sex
    if ctf.year_group is not None:
        values["year_group"] = ctf.year_group
    if pupil is None:
        return Pupil(school_id=school_id, upn=ctf.upn, **values)
    changed = False
    for name, value in values.items():
        if getattr(pupil, name) != value:
            setattr(pupil, name, value)
            changed = True
    return pupil if changed else None


def _contact_values(c: CtfContact) -> dict:
    return {
        "title": c.title,
        "forename": c.forename,
        "surname": c.surname,
        "relationship": c.relationship,
        "parental_responsibility": c.responsibility,
        "phone": c.phone,
        "email": c.email,
        "address": "\n".join(c.address_lines),
        "postcode": c.postcode,
    }


def _new_contact(c: CtfContact, pupil_id: int) -> Contact:
    channel = "email" if c.email else "post"
    return Contact(
        pupil_id=pupil_id, priority=c.order, preferred_channel=channel, **_contact_values(c)
    )


def _update_contact(c: CtfContact, contact: Contact) -> bool:
    """Update from the file; an empty field in the file leaves the stored one."""
    changed = False
    for name, value in _contact_values(c).items():
        if value not in ("", None) and getattr(contact, name) != value:
            setattr(contact, name, value)
            changed = True
    return changed


def _own_marks(ctf: CtfFile, school: School) -> list[MarkRow]:
    """Marks of the years the importing school itself recorded."""
    own = (school.la_code, school.estab)
    return [
        MarkRow(line=year.line, upn=p.upn, day=m.day, session=m.session, code=m.code)
        for p in ctf.pupils
        for year in p.years
        if (year.lea, year.estab) == own
        for m in year.marks
    ]


def _keep_minutes(session: Session, school_id: int, rows: list[MarkRow]) -> list[MarkRow]:
    """A CTF carries no minutes late: keep the stored minutes where the code is the same,
    so that re-reading the school's own marks is not an amendment."""
    if not rows:
        return rows
    mark = RegisterMark.__table__
    found = session.connection().execute(
        select(Pupil.upn, mark.c.day, mark.c.session, mark.c.code, mark.c.minutes_late)
        .join(Pupil, Pupil.id == mark.c.pupil_id)
        .where(
            Pupil.school_id == school_id,
            mark.c.minutes_late.is_not(None),
            mark.c.day >= min(r.day for r in rows),
            mark.c.day <= max(r.day for r in rows),
        )
    )
    minutes = {(u, d, str(s)): (c, m) for u, d, s, c, m in found}
    out = []
    for row in rows:
        before = minutes.get((row.upn, row.day, str(row.session)))
        if before and before[0] == row.code:
            row = MarkRow(row.line, row.upn, row.day, row.session, row.code, before[1])
        out.append(row)
    return out


# --- writing -----------------------------------------------------------------------


def ctf_pupil_from_rows(
    pupil: Pupil, contacts: Sequence[Contact] = (), years: Sequence[CtfYearData] = ()
) -> CtfPupil:
    """A CtfPupil from the engine's rows, for write_ctf."""
    return CtfPupil(
        upn=pupil.upn,
        surname=pupil.surname,
        forename=pupil.forename,
        dob=pupil.date_of_birth,
        sex=pupil.sex,
        year_group=pupil.year_group,
        contacts=[
            CtfContact(
                order=c.priority,
                title=c.title,
                surname=c.surname,
                forename=c.forename,
                relationship=c.relationship,
                responsibility=c.parental_responsibility,
                phone=c.phone,
                email=c.email,
                address_lines=[line for line in c.address.splitlines() if line],
                postcode=c.postcode,
            )
            for c in sorted(contacts, key=lambda c: c.priority)
        ],
        years=list(years),
    )


def encode_marks(year: CtfYearData, *, comma: bool = True) -> str:
    """AttendanceMarks for a year: every session from the start date to the last mark,
    `-` where there is none."""
    if not year.marks:
        return ""
    by_slot = {(m.day, m.session): m.code for m in year.marks}
    start = year.start_date or min(m.day for m in year.marks)
    last = max(m.day for m in year.marks)
    tokens = []
    for day, session in session_slots(start):
        if day > last:
            break
        tokens.append(by_slot.get((day, session), FILLER))
    if not comma:
        long = sorted({t for t in tokens if len(t) != 1})
        if long:
            raise ValueError(f"codes {', '.join(long)} need the comma-separated format")
        return "".join(tokens)
    return ",".join(tokens)


def write_ctf(
    path: "str | Path",
    *,
    source: CtfSchool,
    pupils: Sequence[CtfPupil],
    dest: CtfSchool | None = None,
    version: str = f"{CURRENT_VERSION}.0",
    version_tag: str = "CTFversion",
    comma_marks: bool = True,
    date_time: datetime | None = None,
) -> Path:
    """Write a CTF (for tests, the demo and sending a pupil on). Returns the path."""
    path = Path(path)
    root = ET.Element("CTfile")
    head = ET.SubElement(root, "Header")
    ET.SubElement(head, "DocumentName").text = DOCUMENT_NAME
    ET.SubElement(head, version_tag).text = version
    stamp = (date_time or datetime.now(UTC)).replace(microsecond=0, tzinfo=None)
    ET.SubElement(head, "DateTime").text = stamp.isoformat()
    src = ET.SubElement(head, "SourceSchool")
    for tag, value in (
        ("LEA", source.lea),
        ("Estab", source.estab),
        ("URN", source.urn),
        ("SchoolName", source.name),
        ("AcademicYear", source.academic_year),
    ):
        ET.SubElement(src, tag).text = value
    dst = ET.SubElement(head, "DestSchool")
    ET.SubElement(dst, "LEA").text = dest.lea if dest else "MMM"
    ET.SubElement(dst, "Estab").text = dest.estab if dest else "MMMM"

    data = ET.SubElement(root, "CTFpupilData")
    for p in pupils:
        elem = ET.SubElement(data, "Pupil")
        ET.SubElement(elem, "UPN").text = p.upn
        ET.SubElement(elem, "Surname").text = p.surname
        ET.SubElement(elem, "Forename").text = p.forename
        ET.SubElement(elem, "DOB").text = p.dob.isoformat() if p.dob else ""
        ET.SubElement(elem, "Gender").text = p.sex
        if p.year_group is not None:
            basic = ET.SubElement(elem, "BasicDetails")
            ET.SubElement(basic, "NCyearActual").text = (
                "R" if p.year_group == 0 else str(p.year_group)
            )
        if p.address_lines or p.postcode:
            _write_address(elem, p.address_lines, p.postcode)
        if p.contacts:
            contacts = ET.SubElement(elem, "Contacts")
            for c in p.contacts:
                ce = ET.SubElement(contacts, "Contact")
                ET.SubElement(ce, "Order").text = str(c.order)
                ET.SubElement(ce, "Title").text = c.title
                ET.SubElement(ce, "Surname").text = c.surname
                ET.SubElement(ce, "Forename").text = c.forename
                ET.SubElement(ce, "Relationship").text = _RELATIONSHIP_CODES.get(
                    c.relationship, c.relationship
                )
                ET.SubElement(ce, "Responsibility").text = "true" if c.responsibility else "false"
                if c.address_lines or c.postcode:
                    _write_address(ce, c.address_lines, c.postcode)
                if c.phone:
                    phone = ET.SubElement(ET.SubElement(ce, "Phones"), "Phone")
                    ET.SubElement(phone, "TelephoneType").text = "H"
                    ET.SubElement(phone, "PhoneNo").text = c.phone
                if c.email:
                    ET.SubElement(ce, "Email").text = c.email
        if p.years:
            attendance = ET.SubElement(elem, "Attendance")
            for y in p.years:
                ye = ET.SubElement(attendance, "YearData")
                for tag, value in (
                    ("Year", y.year),
                    ("LEA", y.lea),
                    ("Estab", y.estab),
                    ("SchoolName", y.school_name),
                    ("SessionsPossible", y.sessions_possible),
                    ("SessionsAuthorised", y.sessions_authorised),
                    ("SessionsAttended", y.sessions_attended),
                    ("SessionsUnauthorised", y.sessions_unauthorised),
                ):
                    if value is not None:
                        ET.SubElement(ye, tag).text = str(value)
                if y.marks:
                    sessions = ET.SubElement(ye, "AttendSessions")
                    start = y.start_date or min(m.day for m in y.marks)
                    ET.SubElement(sessions, "AttendanceStartDate").text = start.isoformat()
                    ET.SubElement(sessions, "AttendanceMarks").text = encode_marks(
                        y, comma=comma_marks
                    )
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def _write_address(parent: ET.Element, lines: Sequence[str], postcode: str) -> None:
    address = ET.SubElement(parent, "Address")
    block = ET.SubElement(address, "AddressLines")
    for i, line in enumerate(lines[:5], start=1):
        ET.SubElement(block, f"AddressLine{i}").text = line
    if postcode:
        ET.SubElement(address, "PostCode").text = postcode
