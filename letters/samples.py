"""A made-up pupil, family and register for previewing any letter for any school without
a database: the same context shape the engine stores, filled with example values."""

from datetime import date, datetime, timedelta
from typing import Any

from letters.catalogue import LA, spec_for
from letters.context import Parent, assemble, figures_block, pupil_block
from models.figures import PupilFigures
from models.policy import SchoolPolicy
from models.tables import Pupil

SAMPLE_AS_OF = date(2026, 11, 24)
SAMPLE_YEAR_START = date(2026, 9, 3)


def sample_pupil() -> Pupil:
    return Pupil(
        id=1,
        school_id=1,
        upn="A123456789012",
        forename="Maisie",
        surname="Example",
        date_of_birth=date(2018, 5, 14),
        year_group=3,
        sex="F",
    )


def sample_parents() -> list[Parent]:
    address = ("12 Church Lane", "Leek")
    return [
        Parent(
            1,
            "Mrs Jane Example",
            "Mrs Example",
            "Mother",
            "jane@example.org",
            address,
            "ST13 5AA",
            "email",
            "07700 900001",
        ),
        Parent(
            2,
            "Mr John Example",
            "Mr Example",
            "Father",
            "",
            address,
            "ST13 5AA",
            "post",
            "07700 900002",
        ),
    ]


def sample_figures(as_of: date = SAMPLE_AS_OF) -> PupilFigures:
    return PupilFigures(
        pupil_id=1,
        as_of=as_of,
        possible_year=106,
        present_year=94,
        authorised_year=6,
        unauthorised_year=5,
        unexplained_year=1,
        rate_year=round(100 * 94 / 106, 2),
        possible_half_term=30,
        rate_half_term=86.67,
        rate_short_window=87.5,
        rate_rolling_window=88.1,
        unauthorised_rolling_window=5,
        persistent_absence=True,
        severe_absence=False,
        unauthorised_run_days=0,
        illness_days_year=2.5,
        overdue_unexplained=0,
        late_this_week=1,
    )


def sample_record(as_of: date = SAMPLE_AS_OF) -> dict[str, Any]:
    """A short register extract, chronology and one letter, for the LA documents."""
    weeks = []
    monday = SAMPLE_YEAR_START - timedelta(days=SAMPLE_YEAR_START.weekday())
    codes = [["/", "\\"]] * 3 + [["I", "I"], ["O", "O"]]
    while monday <= as_of:
        weeks.append({"week_start": monday.isoformat(), "days": [list(c) for c in codes]})
        monday += timedelta(days=7)
    at = datetime(2026, 11, 2, 9, 40)
    return {
        "period_start": date(2026, 8, 1).isoformat(),
        "register": weeks,
        "codes": [
            {"code": "/", "meaning": "present (AM)", "category": "present"},
            {"code": "\\", "meaning": "present (PM)", "category": "present"},
            {"code": "I", "meaning": "illness", "category": "authorised absence"},
            {
                "code": "O",
                "meaning": "absent in other or unknown circumstances",
                "category": "unauthorised absence",
            },
        ],
        "amendments": [
            {
                "day": "2026-10-09",
                "session": "AM",
                "original_code": "N",
                "new_code": "I",
                "reason": "Mother phoned: sickness",
                "amended_by": "R Drane",
                "amended_role": "office",
                "amended_at": "2026-10-09T10:05",
            },
        ],
        "chronology": [
            {
                "on_day": "2026-11-02",
                "at": at.isoformat(timespec="minutes"),
                "kind": "call",
                "summary": "Telephoned mother: no answer; message left",
                "actor": "R Drane",
                "role": "office",
                "stage": "",
            },
            {
                "on_day": "2026-11-03",
                "at": (at + timedelta(days=1)).isoformat(timespec="minutes"),
                "kind": "letter",
                "summary": "Stage 1 letter emailed to Mrs Jane Example",
                "actor": "engine",
                "role": "",
                "stage": "stage_1",
            },
        ],
        "letters": [
            {
                "id": 1,
                "template": "all_saints/stage_1b",
                "subject": "Stage 1 letter",
                "written_on": "2026-11-03",
                "content_sha256": "0" * 64,
                "copies": [
                    {
                        "channel": "email",
                        "to": "Mrs Jane Example",
                        "status": "sent",
                        "sent_at": "2026-11-03T09:41",
                        "print_day": None,
                    }
                ],
                "body": "<h1>Stage 1</h1><p>Dear Mrs Example,</p><p>(letter text)</p>",
            },
        ],
    }


def sample_context(
    policy: SchoolPolicy,
    template: str,
    *,
    data: dict[str, Any] | None = None,
    as_of: date = SAMPLE_AS_OF,
) -> dict[str, Any]:
    spec = spec_for(template)
    pupil = sample_pupil()
    # The absence still running on the day (from Monday) and the day with no reason yet.
    monday = as_of - timedelta(days=as_of.weekday())
    extra: dict[str, Any] = {
        "absence": {"run_started_on": monday.isoformat(), "unexplained_on": [monday.isoformat()]}
    }
    if spec.audience == LA:
        record = sample_record(as_of)
        extra |= {
            "contacts": [
                {
                    "name": p.name,
                    "relationship": p.relationship,
                    "parental_responsibility": True,
                    "phone": p.phone,
                    "email": p.email,
                    "address": [*p.address, p.postcode],
                }
                for p in sample_parents()
            ],
            "last_attended": (as_of - timedelta(days=3)).isoformat(),
            "record": record,
        }
    return assemble(
        policy=policy,
        pupil=pupil_block(pupil, as_of),
        figures=figures_block(sample_figures(as_of), SAMPLE_YEAR_START),
        parents=sample_parents(),
        written_on=as_of,
        as_of=as_of,
        template=template,
        key=f"sample/{template}",
        case_id="sample-case",
        data=spec.sample_data if data is None else data,
        extra=extra,
    )
