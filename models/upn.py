"""Unique Pupil Numbers: a check letter then 12 characters (DfE algorithm)."""

import re

CHECK_LETTERS = "ABCDEFGHJKLMNPQRTUVWXYZ"
_UPN = re.compile(r"^[A-Z]\d{11}[0-9A-Z]$")


class InvalidUPNError(ValueError):
    pass


def _value(ch: str) -> int:
    # The final character of a temporary UPN is a letter, valued by its place in CHECK_LETTERS.
    return int(ch) if ch.isdigit() else CHECK_LETTERS.index(ch)


def check_letter(body: str) -> str:
    """The check letter for the 12 characters after it (weights 2..13, sum mod 23)."""
    total = sum(_value(ch) * weight for weight, ch in zip(range(2, 14), body, strict=True))
    return CHECK_LETTERS[total % 23]


def validate_upn(upn: str) -> str:
    """Return the UPN in canonical form, or raise InvalidUPNError saying why."""
    upn = upn.strip().upper()
    if not _UPN.match(upn) or upn[-1] in "IOS":
        raise InvalidUPNError(
            f"UPN {upn!r} is not a letter followed by 11 digits and a digit or letter"
        )
    expected = check_letter(upn[1:])
    if upn[0] != expected:
        raise InvalidUPNError(f"UPN {upn!r} has check letter {upn[0]}, expected {expected}")
    return upn


def is_temporary(upn: str) -> bool:
    return upn[-1].isalpha()


def make_upn(la: int, estab: int, year: int, serial: int) -> str:
    """A permanent UPN from its parts (LA number, establishment, 2-digit year, serial)."""
    body = f"{la:03d}{estab:04d}{year % 100:02d}{serial:03d}"
    return check_letter(body) + body
