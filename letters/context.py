"""What a letter is rendered from: the school block of the policy, the pupil, the figures,
the parents, the national rules and the caller's data, as plain JSON values.

The context is stored with the letter and the letter is rendered from the stored form
(after a JSON round trip), so rendering it again years later gives the same text.
"""

import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from figures.compute import compute_figures
from models.calendar import academic_year_of, load_calendar, week_start
from models.figures import PupilFigures
from models.letters import Letter, Outbox
from models.policy import SchoolPolicy
from models.tables import (
    ChronologyEntry,
    Contact,
    ImportBatch,
    MarkAmendment,
    Pupil,
    RegisterMark,
)

# --------------------------------------------------------------------------- people


@dataclass(frozen=True)
class Parent:
    """A contact with parental responsibility, as a letter addresses them."""

    contact_id: int
    name: str  # Mrs Jane Smith
    salutation: str  # Mrs Smith
    relationship: str
    email: str
    address: tuple[str, ...]
    postcode: str
    preferred_channel: str
    phone: str = ""

    @property
    def household_key(self) -> str | None:
        """Parents at the same postal address share one postal copy."""
        if not self.address:
            return None
        text = " ".join(self.address) + " " + self.postcode
        normal = re.sub(r"[^a-z0-9]", "", text.lower())
        return "household:" + hashlib.sha256(normal.encode()).hexdigest()[:16]


def _person(contact: Contact) -> tuple[str, str]:
    forename, surname, title = contact.forename.strip(), contact.surname.strip(), contact.title
    name = " ".join(p for p in (title.strip(), forename, surname) if p)
    salutation = f"{title.strip()} {surname}" if title.strip() else f"{forename} {surname}"
    return name, salutation


def parent_of(contact: Contact) -> Parent:
    name, salutation = _person(contact)
    lines = tuple(line.strip() for line in contact.address.splitlines() if line.strip())
    postcode = contact.postcode.strip()
    if postcode and lines and lines[-1].replace(" ", "").upper() == postcode.replace(" ", ""):
        lines = lines[:-1]
    return Parent(
        contact_id=contact.id,
        name=name,
        salutation=salutation,
        relationship=contact.relationship,
        email=contact.email.strip(),
        address=lines,
        postcode=postcode,
        preferred_channel=contact.preferred_channel or "email",
        phone=contact.phone,
    )


@dataclass
class Household:
    key: str
    parents: list[Parent] = field(default_factory=list)

    @property
    def name(self) -> str:
        return _join([p.name for p in self.parents])

    @property
    def salutation(self) -> str:
        return _join([p.salutation for p in self.parents])

    @property
    def address_lines(self) -> list[str]:
        first = self.parents[0]
        return [*first.address, first.postcode] if first.postcode else list(first.address)


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def households(parents: Sequence[Parent]) -> dict[str, Household]:
    """Parents grouped by postal address, in priority order; a parent without an address
    is a household of their own."""
    found: dict[str, Household] = {}
    for parent in parents:
        key = parent.household_key or f"contact:{parent.contact_id}"
        found.setdefault(key, Household(key)).parents.append(parent)
    return found


def parents_of(session: Session, pupil_id: int) -> list[Parent]:
    contacts = session.exec(
        select(Contact)
        .where(Contact.pupil_id == pupil_id, Contact.parental_responsibility)
        .order_by(Contact.priority)
    ).all()
    return [parent_of(c) for c in contacts]


# --------------------------------------------------------------------------- pupil


def year_name(year_group: int) -> str:
    return "Reception" if year_group == 0 else f"Year {year_group}"


def compulsory_school_age_from(date_of_birth: date) -> date:
    """The day a child becomes of compulsory school age: the first prescribed day (31 March,
    31 August, 31 December) on or after their fifth birthday (Education Act 1996, s8)."""
    fifth = _birthday(date_of_birth, 5)
    for month, day in ((3, 31), (8, 31), (12, 31)):
        prescribed = date(fifth.year, month, day)
        if prescribed >= fifth:
            return prescribed
    raise AssertionError("31 December is always on or after the fifth birthday")


def compulsory_school_age_until(date_of_birth: date) -> date:
    """The last day of compulsory school age: the last Friday in June of the school year
    (September to August) in which the child turns 16."""
    sixteenth = _birthday(date_of_birth, 16)
    year = sixteenth.year + 1 if sixteenth.month >= 9 else sixteenth.year
    last = date(year, 6, 30)
    return last - timedelta(days=(last.weekday() - 4) % 7)


def _birthday(date_of_birth: date, age: int) -> date:
    try:
        return date_of_birth.replace(year=date_of_birth.year + age)
    except ValueError:  # born 29 February
        return date(date_of_birth.year + age, 3, 1)


def pupil_block(pupil: Pupil, as_of: date) -> dict[str, Any]:
    csa = compulsory_school_age_from(pupil.date_of_birth)
    csa_until = compulsory_school_age_until(pupil.date_of_birth)
    return {
        "id": pupil.id,
        "upn": pupil.upn,
        "forename": pupil.forename,
        "surname": pupil.surname,
        "name": f"{pupil.forename} {pupil.surname}",
        "date_of_birth": pupil.date_of_birth.isoformat(),
        "year_group": pupil.year_group,
        "year_name": year_name(pupil.year_group),
        "compulsory_school_age": csa <= as_of <= csa_until,
        "compulsory_school_age_from": csa.isoformat(),
        "compulsory_school_age_until": csa_until.isoformat(),
        "send": pupil.send,
        "ehcp": pupil.ehcp,
        "social_worker": pupil.social_worker,
        "looked_after": pupil.looked_after,
        "child_protection_plan": pupil.child_protection_plan,
        "young_carer": pupil.young_carer,
        "part_time_timetable": pupil.part_time_timetable,
        "on_roll": pupil.on_roll,
    }


# --------------------------------------------------------------------------- figures


def figures_block(figures: PupilFigures, year_start: date | None) -> dict[str, Any]:
    f = figures.as_dict()
    absent = figures.possible_year - figures.present_year
    f.update(
        year_start=year_start.isoformat() if year_start else None,
        absent_year=absent,
        days_possible_year=figures.possible_year / 2,
        days_present_year=figures.present_year / 2,
        days_missed_year=absent / 2,
        days_authorised_year=figures.authorised_year / 2,
        days_unauthorised_year=figures.unauthorised_year / 2,
        days_unexplained_year=figures.unexplained_year / 2,
        absence_rate_year=round(100 - figures.rate_year, 2)
        if figures.rate_year is not None
        else None,
    )
    return f


class FiguresCache:
    """A school's figures as of a day, computed once for a burst of letters.

    compute_figures works out the whole school in one statement (the sweep's need); a
    letter needs one pupil. Entries are kept while the school's register is unchanged:
    every change of marks or pupils goes through an import batch, so the newest batch
    ID is the version of the register. `max_age` bounds what else might change (the
    calendar).
    """

    def __init__(self, max_entries: int = 64, max_age_seconds: float = 600.0):
        self.max_entries, self.max_age = max_entries, max_age_seconds
        self._entries: OrderedDict[tuple, tuple[float, dict[int, PupilFigures], date | None]] = (
            OrderedDict()
        )

    def get(
        self, session: Session, *, school_id: int, policy: SchoolPolicy, as_of: date
    ) -> tuple[dict[int, PupilFigures], date | None]:
        version = session.exec(
            select(func.max(ImportBatch.id)).where(ImportBatch.school_id == school_id)
        ).one()
        key = (school_id, as_of, version, policy.figure_rules())
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < self.max_age:
            self._entries.move_to_end(key)
            return entry[1], entry[2]
        calendar = load_calendar(session=session, school_id=school_id)
        rows = compute_figures(
            session=session,
            school_id=school_id,
            as_of=as_of,
            rules=policy.figure_rules(),
            calendar=calendar,
        )
        by_pupil = {f.pupil_id: f for f in rows}
        year_start = calendar.year_start(as_of)
        self._entries[key] = (now, by_pupil, year_start)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return by_pupil, year_start


def empty_figures(pupil_id: int, as_of: date) -> PupilFigures:
    """Figures for a pupil no longer on roll (compute_figures covers the roll only)."""
    return PupilFigures(
        pupil_id=pupil_id,
        as_of=as_of,
        possible_year=0,
        present_year=0,
        authorised_year=0,
        unauthorised_year=0,
        unexplained_year=0,
        rate_year=None,
        possible_half_term=0,
        rate_half_term=None,
        rate_short_window=None,
        rate_rolling_window=None,
        unauthorised_rolling_window=0,
        persistent_absence=False,
        severe_absence=False,
        unauthorised_run_days=0,
        illness_days_year=0,
        overdue_unexplained=0,
        late_this_week=0,
    )


# --------------------------------------------------------------------------- the context


_BLOCKS: dict[int, tuple[SchoolPolicy, dict[str, Any], dict[str, Any]]] = {}


def policy_blocks(policy: SchoolPolicy) -> tuple[dict[str, Any], dict[str, Any]]:
    """The school and national blocks of a policy, worked out once per loaded policy (the
    loader shares one instance per file until it changes)."""
    found = _BLOCKS.get(id(policy))
    if found is None or found[0] is not policy:
        if len(_BLOCKS) > 512:
            _BLOCKS.clear()
        found = (policy, school_block(policy), policy.national.model_dump(mode="json"))
        _BLOCKS[id(policy)] = found
    return found[1], found[2]


def school_block(policy: SchoolPolicy) -> dict[str, Any]:
    """The policy's school block, with the few procedure facts letters quote."""
    block = policy.school.model_dump(mode="json")
    episode = policy.absence_episode
    block.update(
        target=policy.attendance_target,
        report_absence_by=episode.parents_report_by,
        report_absence_via=list(episode.parents_report_via),
        register_opens=policy.register.am.opens,
        register_closes=policy.register.am.closes,
        cme_referral_day=episode.day_of("cme_referral"),
        own_penalty_notice_ladder=policy.enforcement.own_penalty_notice_ladder,
    )
    return block


def assemble(
    *,
    policy: SchoolPolicy,
    pupil: dict[str, Any],
    figures: dict[str, Any],
    parents: Sequence[Parent],
    written_on: date,
    as_of: date,
    template: str,
    key: str,
    case_id: str | None,
    data: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole context, as it is stored: JSON values only."""
    school, national = policy_blocks(policy)
    context = {
        "school": school,
        "national": national,
        "pupil": pupil,
        "figures": figures,
        "parents": [
            {
                "name": p.name,
                "salutation": p.salutation,
                "relationship": p.relationship,
                "phone": p.phone,
                "email": p.email,
                "address": [*p.address, p.postcode] if p.postcode else list(p.address),
            }
            for p in parents
        ],
        "letter": {
            "template": template,
            "written_on": written_on.isoformat(),
            "as_of": as_of.isoformat(),
            "reference": f"{policy.school.urn}-{hashlib.sha256(key.encode()).hexdigest()[:8]}",
            "case_id": case_id,
        },
        "data": data,
    }
    if extra:
        context.update(extra)
    return json.loads(json.dumps(context, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


# --------------------------------------------------------------------------- the record


def chronology_block(session: Session, pupil_id: int, since: date) -> list[dict[str, Any]]:
    entries = session.exec(
        select(ChronologyEntry)
        .where(ChronologyEntry.pupil_id == pupil_id, ChronologyEntry.on_day >= since)
        .order_by(ChronologyEntry.on_day, ChronologyEntry.at, ChronologyEntry.id)
    ).all()
    return [
        {
            "on_day": e.on_day.isoformat(),
            "at": e.at.isoformat(timespec="minutes"),
            "kind": e.kind,
            "summary": e.summary,
            "actor": e.actor,
            "role": e.role,
            "stage": e.stage,
        }
        for e in entries
    ]


def register_block(
    session: Session, pupil_id: int, first: date, last: date
) -> list[dict[str, Any]]:
    """The register extract: one row per week, Monday to Friday, AM and PM codes."""
    marks = session.exec(
        select(RegisterMark)
        .where(
            RegisterMark.pupil_id == pupil_id,
            RegisterMark.day >= first,
            RegisterMark.day <= last,
        )
        .order_by(RegisterMark.day)
    ).all()
    weeks: dict[date, list[list[str]]] = {}
    for mark in marks:
        week = weeks.setdefault(week_start(mark.day), [["", ""] for _ in range(5)])
        if mark.day.weekday() < 5:
            week[mark.day.weekday()][0 if mark.session == "AM" else 1] = mark.code
    return [{"week_start": week.isoformat(), "days": days} for week, days in sorted(weeks.items())]


def amendments_block(session: Session, pupil_id: int, first: date) -> list[dict[str, Any]]:
    rows = session.exec(
        select(MarkAmendment)
        .where(MarkAmendment.pupil_id == pupil_id, MarkAmendment.day >= first)
        .order_by(MarkAmendment.amended_at)
    ).all()
    return [
        {
            "day": a.day.isoformat(),
            "session": str(a.session),
            "original_code": a.original_code,
            "new_code": a.new_code,
            "reason": a.reason,
            "amended_by": a.amended_by,
            "amended_role": a.amended_role,
            "amended_at": a.amended_at.isoformat(timespec="minutes"),
        }
        for a in rows
    ]


def letters_block(session: Session, pupil_id: int, since: date) -> list[dict[str, Any]]:
    """Every letter to the pupil's parents since `since`, with how each copy went and the
    copy itself (as the first recipient received it)."""
    from letters.render import address_copy, body_of

    letters = session.exec(
        select(Letter)
        .where(
            Letter.pupil_id == pupil_id,
            Letter.audience == "parents",
            Letter.written_on >= since,
        )
        .order_by(Letter.written_on, Letter.id)
    ).all()
    found = []
    for letter in letters:
        copies = session.exec(
            select(Outbox).where(Outbox.letter_id == letter.id).order_by(Outbox.id)
        ).all()
        first = copies[0] if copies else None
        copy = address_copy(
            letter.html,
            name=first.recipient_name if first else "",
            address_lines=(first.address.splitlines() + [first.postcode]) if first else [],
            salutation=first.salutation if first else "Parent/Carer",
        )
        found.append(
            {
                "id": letter.id,
                "template": letter.template,
                "subject": letter.subject,
                "written_on": letter.written_on.isoformat(),
                "content_sha256": letter.content_sha256,
                "copies": [
                    {
                        "channel": c.channel,
                        "to": c.recipient_name,
                        "status": c.status,
                        "sent_at": c.sent_at.isoformat(timespec="minutes") if c.sent_at else None,
                        "print_day": c.print_day.isoformat() if c.print_day else None,
                    }
                    for c in copies
                ],
                "body": body_of(copy),
            }
        )
    return found


def record_block(session: Session, pupil_id: int, as_of: date) -> dict[str, Any]:
    """The evidence a court or the LA asks for, over the academic year of `as_of`."""
    first = date(academic_year_of(as_of), 8, 1)
    return {
        "period_start": first.isoformat(),
        "register": register_block(session, pupil_id, first, as_of),
        "amendments": amendments_block(session, pupil_id, first),
        "chronology": chronology_block(session, pupil_id, first),
        "letters": letters_block(session, pupil_id, first),
    }


def contacts_block(session: Session, pupil_id: int) -> list[dict[str, Any]]:
    """Every contact (emergency contacts too), for LA documents."""
    rows = session.exec(
        select(Contact).where(Contact.pupil_id == pupil_id).order_by(Contact.priority)
    ).all()
    out = []
    for contact in rows:
        parent = parent_of(contact)
        out.append(
            {
                "name": parent.name,
                "relationship": contact.relationship,
                "parental_responsibility": contact.parental_responsibility,
                "phone": contact.phone,
                "email": contact.email,
                "address": [*parent.address, parent.postcode]
                if parent.postcode
                else list(parent.address),
            }
        )
    return out


def last_attended(session: Session, pupil_id: int, as_of: date) -> str | None:
    """The last day with a present or approved-activity mark, for CME referrals."""
    from models.codes import NATIONAL_CODES

    present = [code for code, info in NATIONAL_CODES.items() if info.counts_as_present]
    day = session.exec(
        select(func.max(RegisterMark.day)).where(
            RegisterMark.pupil_id == pupil_id,
            RegisterMark.day <= as_of,
            RegisterMark.code.in_(present),
        )
    ).one()
    return day.isoformat() if day else None


def absence_block(
    session: Session, pupil_id: int, as_of: date, *, lookback_days: int = 42
) -> dict[str, Any]:
    """The pupil's recent absence, for letters about it when the caller gives no dates:
    the first day of the absence still running on `as_of` (None when the last marked
    session was attended), and the days of the last `lookback_days` with a session still
    coded `N` (no reason yet). Sessions that are not possible neither count nor break a
    run."""
    from models.codes import NATIONAL_CODES

    marks = session.exec(
        select(RegisterMark.day, RegisterMark.session, RegisterMark.code)
        .where(
            RegisterMark.pupil_id == pupil_id,
            RegisterMark.day <= as_of,
            RegisterMark.day > as_of - timedelta(days=lookback_days),
        )
        .order_by(RegisterMark.day.desc(), RegisterMark.session.desc())
    ).all()
    run_started: date | None = None
    for day, _, code in marks:
        info = NATIONAL_CODES.get(code)
        if info is None or not info.is_possible_session:
            continue
        if info.counts_as_present:
            break
        run_started = day
    unexplained = sorted({day for day, _, code in marks if code == "N"})
    return {
        "run_started_on": run_started.isoformat() if run_started else None,
        "unexplained_on": [day.isoformat() for day in unexplained],
    }


def code_key(used: set[str]) -> list[dict[str, str]]:
    """What each code in an extract means, in the regulations' words."""
    from models.codes import NATIONAL_CODES

    return [
        {"code": code, "meaning": info.meaning, "category": str(info.category)}
        for code, info in NATIONAL_CODES.items()
        if code in used
    ]
