"""The national attendance codes (School Attendance (Pupil Registration) Regulations 2024).

Each code has a category, and a one-character *class* used in the compact weekly
register (`RegisterWeek.marks`). Figures count classes, never raw codes, so a new
code only needs a row here. A code that is not in this table is an error.
"""

from dataclasses import dataclass
from enum import StrEnum


class Category(StrEnum):
    PRESENT = "present"
    APPROVED_ACTIVITY = "approved educational activity"
    AUTHORISED = "authorised absence"
    UNAUTHORISED = "unauthorised absence"
    NOT_POSSIBLE = "not a possible session"
    ADMINISTRATIVE = "administrative"


# Class characters of the compact weekly register. '.' is a session with no mark.
PRESENT_ON_TIME = "p"
PRESENT_LATE = "l"  # L: late before the register closed
APPROVED_ACTIVITY = "e"
AUTHORISED = "a"
ILLNESS = "i"
UNAUTHORISED = "g"  # G and O
LATE_AFTER_CLOSE = "u"  # U: unauthorised, and a late mark
UNEXPLAINED = "n"  # N: reason not yet established
NOT_POSSIBLE = "x"
NO_MARK = "."

PRESENT_CLASSES = PRESENT_ON_TIME + PRESENT_LATE + APPROVED_ACTIVITY
AUTHORISED_CLASSES = AUTHORISED + ILLNESS
# G, O, U: what the National Framework's penalty-notice threshold counts.
UNAUTHORISED_CLASSES = UNAUTHORISED + LATE_AFTER_CLOSE
# N, O, G, U: what the LA's attendance return counts as unauthorised absence.
ABSENCE_RETURN_CLASSES = UNAUTHORISED_CLASSES + UNEXPLAINED
LATE_CLASSES = PRESENT_LATE + LATE_AFTER_CLOSE


@dataclass(frozen=True)
class AttendanceCode:
    code: str
    meaning: str
    category: Category
    cls: str

    @property
    def is_possible_session(self) -> bool:
        return self.cls != NOT_POSSIBLE

    @property
    def counts_as_present(self) -> bool:
        return self.cls in PRESENT_CLASSES


def _code(code: str, meaning: str, category: Category, cls: str) -> AttendanceCode:
    return AttendanceCode(code, meaning, category, cls)


_P, _A, _AU, _U, _NP, _ADM = (
    Category.PRESENT,
    Category.APPROVED_ACTIVITY,
    Category.AUTHORISED,
    Category.UNAUTHORISED,
    Category.NOT_POSSIBLE,
    Category.ADMINISTRATIVE,
)

NATIONAL_CODES: dict[str, AttendanceCode] = {
    c.code: c
    for c in [
        _code("/", "present (AM)", _P, PRESENT_ON_TIME),
        _code("\\", "present (PM)", _P, PRESENT_ON_TIME),
        _code("L", "late, arrived before the register closed", _P, PRESENT_LATE),
        _code(
            "K",
            "attending education provision arranged by the local authority",
            _A,
            APPROVED_ACTIVITY,
        ),
        _code("V", "attending an educational visit or trip", _A, APPROVED_ACTIVITY),
        _code("P", "participating in a supervised sporting activity", _A, APPROVED_ACTIVITY),
        _code("W", "attending work experience", _A, APPROVED_ACTIVITY),
        _code("B", "attending any other approved educational activity", _A, APPROVED_ACTIVITY),
        _code("D", "dual registered, attending the other school", _NP, NOT_POSSIBLE),
        _code("C", "leave of absence for exceptional circumstances", _AU, AUTHORISED),
        _code("C1", "leave for a regulated performance or employment abroad", _AU, AUTHORISED),
        _code("C2", "leave for a part-time timetable", _AU, AUTHORISED),
        _code("E", "suspended or permanently excluded, no alternative provision", _AU, AUTHORISED),
        _code("I", "illness (not medical or dental appointment)", _AU, ILLNESS),
        _code("J1", "leave to attend an interview", _AU, AUTHORISED),
        _code("M", "medical or dental appointment", _AU, AUTHORISED),
        _code("R", "religious observance", _AU, AUTHORISED),
        _code("S", "study leave", _AU, AUTHORISED),
        _code("T", "parent travelling for occupational purposes", _AU, AUTHORISED),
        _code("Q", "unable to attend: lack of access arrangements", _NP, NOT_POSSIBLE),
        _code("Y1", "unable to attend: transport not available", _NP, NOT_POSSIBLE),
        _code("Y2", "unable to attend: widespread disruption to travel", _NP, NOT_POSSIBLE),
        _code("Y3", "unable to attend: part of the school premises closed", _NP, NOT_POSSIBLE),
        _code("Y4", "unable to attend: whole school site unexpectedly closed", _NP, NOT_POSSIBLE),
        _code("Y5", "unable to attend: criminal justice detention", _NP, NOT_POSSIBLE),
        _code("Y6", "unable to attend: public health guidance or law", _NP, NOT_POSSIBLE),
        _code("Y7", "unable to attend: any other unavoidable cause", _NP, NOT_POSSIBLE),
        _code("G", "holiday not granted by the school", _U, UNAUTHORISED),
        _code("N", "reason for absence not yet established", _U, UNEXPLAINED),
        _code("O", "absent in other or unknown circumstances", _U, UNAUTHORISED),
        _code("U", "arrived in school after the register closed", _U, LATE_AFTER_CLOSE),
        _code("X", "non-compulsory school age pupil not required to attend", _ADM, NOT_POSSIBLE),
        _code("Z", "prospective pupil not on the admission register", _ADM, NOT_POSSIBLE),
        _code("#", "planned whole-school closure", _ADM, NOT_POSSIBLE),
    ]
}


class UnknownCodeError(ValueError):
    @classmethod
    def for_code(cls, code: str) -> "UnknownCodeError":
        return cls(f"{code!r} is not a national attendance code (2024 regulations)")


def attendance_code(code: str) -> AttendanceCode:
    """The national code `code`, or UnknownCodeError: an unknown code is never counted."""
    try:
        return NATIONAL_CODES[code]
    except KeyError:
        raise UnknownCodeError.for_code(code) from None
