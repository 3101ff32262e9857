"""How the pages write dates, times, percentages and the engine's words: the UK way."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from models.codes import NATIONAL_CODES, Category

UK = ZoneInfo("Europe/London")


def _as_date(value: date | datetime | str | None) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return _local(value).date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(value[:10])


def _local(value: datetime) -> datetime:
    if value.tzinfo is None:  # stored in UTC; SQLite drops the zone
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UK)


def uk_date(value: date | datetime | str | None) -> str:
    """25/11/2026."""
    day = _as_date(value)
    return day.strftime("%d/%m/%Y") if day else ""


def uk_day(value: date | datetime | str | None) -> str:
    """Wed 25/11/2026: with the weekday, for registers and due dates."""
    day = _as_date(value)
    return day.strftime("%a %d/%m/%Y") if day else ""


def uk_datetime(value: datetime | str | None) -> str:
    """25/11/2026 09:30, in UK time."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return _local(value).strftime("%d/%m/%Y %H:%M")


def uk_time(value: datetime | None) -> str:
    return _local(value).strftime("%H:%M") if value else ""


def pct(value: float | None, places: int = 1) -> str:
    return "–" if value is None else f"{value:.{places}f}%"


def words(value: str | None) -> str:
    """call_parents -> Call parents."""
    if not value:
        return ""
    text = value.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def code_meaning(code: str) -> str:
    found = NATIONAL_CODES.get(code)
    return found.meaning if found else code


_CODE_CLASS = {
    Category.PRESENT: "present",
    Category.APPROVED_ACTIVITY: "present",
    Category.AUTHORISED: "authorised",
    Category.UNAUTHORISED: "unauthorised",
    Category.NOT_POSSIBLE: "neutral",
    Category.ADMINISTRATIVE: "neutral",
}


def code_class(code: str) -> str:
    """The register cell's class: present, authorised, unauthorised, unexplained."""
    if code == "N":
        return "unexplained"
    found = NATIONAL_CODES.get(code)
    return _CODE_CLASS.get(found.category, "neutral") if found else "neutral"


FILTERS = {
    "uk_date": uk_date,
    "uk_day": uk_day,
    "uk_datetime": uk_datetime,
    "uk_time": uk_time,
    "pct": pct,
    "words": words,
    "code_meaning": code_meaning,
    "code_class": code_class,
}
