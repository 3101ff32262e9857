"""What each letter template is: who it goes to, how it is delivered and what data the
caller gives it.

The wording lives in the templates; this is what the engine needs to know about each
one. Every template has an entry here and every entry a template (the tests check both
ways). `needs` are data keys a letter cannot be written without; `uses` are keys it
words differently when given. Both hold an example value, used for previews and tests.

The attendance case workflow gives every letter only `ladder` and `stage` (the names of
the ladder and of the stage it is at), `reason` for a positive letter and for a referral
for prosecution, and `notices` for a penalty-notice request: so no letter a policy names
may have `needs`, and each words itself sensibly without its `uses` (the tests render
every one that way).
"""

from dataclasses import dataclass, field
from typing import Any

PARENTS = "parents"
LA = "la"  # the local authority (or the trust acting for it): not sent to parents

PREFERRED = "preferred"  # each parent's preferred channel: email, post or both
POST = "post"  # always on paper: sent by post, or (a calling card) left at the door
TEXT = "text"  # a text message (a `.txt` template): staff send it from the school's
# messaging service, which holds the parents' mobile numbers

# Example values for the data keys templates use, for previews and tests.
MEETING = {
    "meeting_at": "2026-12-01T09:15",
    "meeting_place": "the school office",
}
REVIEW = {"review_on": "2027-01-22"}
TARGET = {"target_rate": 95}
DECISION = {
    "decided_by": "the headteacher",
    "decided_on": "2026-11-24",
}


@dataclass(frozen=True)
class LetterSpec:
    name: str
    audience: str = PARENTS
    delivery: str = PREFERRED
    needs: dict[str, Any] = field(default_factory=dict)
    uses: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def sample_data(self) -> dict[str, Any]:
        return {**self.uses, **self.needs}

    def missing(self, data: dict[str, Any]) -> list[str]:
        return [key for key in self.needs if key not in data]


def _specs(*specs: LetterSpec) -> dict[str, LetterSpec]:
    return {spec.name: spec for spec in specs}


SPECS: dict[str, LetterSpec] = _specs(
    # ------------------------------------------------------------ St Barnabas'
    LetterSpec(
        "st_barnabas/below_97",
        uses={**REVIEW, "punctuality": True, "late_sessions": 6},
        description="Attendance below 97% (or punctuality a concern): letter home",
    ),
    LetterSpec(
        "st_barnabas/sac_meeting",
        uses=MEETING,
        description="Meeting with the Senior Attendance Champion",
    ),
    LetterSpec(
        "st_barnabas/support_plan",
        uses={
            **REVIEW,
            "actions": [
                "Alfie will be met at the gate by Mrs Drane at 8:40am each day",
                "School will refer the family to the School Nurse about Alfie's asthma",
            ],
            "signposting": ["the School Nurse", "a Child and Family Support Worker"],
        },
        description="Personalised support plan or attendance contract",
    ),
    LetterSpec(
        "st_barnabas/la_referral_notice",
        uses=DECISION,
        description="Parents told the school has referred to the LA for legal sanctions",
    ),
    LetterSpec(
        "st_barnabas/no_contact",
        uses={"first_day_absent": "2026-11-20"},
        description="Absence not explained and parents not reached: letter home",
    ),
    LetterSpec(
        "st_barnabas/improvement",
        uses={"personal_note": "Alfie told us how much he has enjoyed the science club."},
        description="Attendance has improved: a positive letter",
    ),
    # ------------------------------------------------------------ All Saints'
    LetterSpec("all_saints/half_termly", description="Universal half-termly attendance letter"),
    LetterSpec(
        "all_saints/stage_1_pa",
        uses={"previous_year_rate": 88.4},
        description="Stage 1 (Appendix 1a): September baseline for last year's PA pupils",
    ),
    LetterSpec(
        "all_saints/stage_1a",
        uses=REVIEW,
        description="Stage 1a (Appendix 1b): attendance causing concern, illness",
    ),
    LetterSpec(
        "all_saints/stage_1b",
        uses=REVIEW,
        description="Stage 1b (Appendix 1c): attendance causing concern, unauthorised absence",
    ),
    LetterSpec(
        "all_saints/stage_2a",
        uses={**MEETING, **TARGET, **REVIEW},
        description="Stage 2a (Appendix 1d): meeting with the attendance lead, illness",
    ),
    LetterSpec(
        "all_saints/stage_2b",
        uses={**MEETING, **TARGET, **REVIEW},
        description="Stage 2b (Appendix 1e): meeting with the attendance lead, unauthorised",
    ),
    LetterSpec(
        "all_saints/stage_3a",
        uses={**MEETING, **TARGET, **REVIEW},
        description="Stage 3a (Appendix 1f): EWO referral, meeting with the headteacher",
    ),
    LetterSpec(
        "all_saints/stage_3b",
        uses={**MEETING, **TARGET, **REVIEW},
        description="Stage 3b (Appendix 1g): as 3a, where absence is unauthorised",
    ),
    LetterSpec(
        "all_saints/stage_4_formal_warning",
        uses={**REVIEW, **DECISION},
        description="Stage 4 (Appendix 1h): formal warning on behalf of the LA, countersigned",
    ),
    LetterSpec(
        "all_saints/stage_5_referral",
        uses=DECISION,
        description="Stage 5: notice of referral to the LA for legal proceedings",
    ),
    LetterSpec(
        "all_saints/positive",
        uses={
            "from_stage": "Stage 2",
            "personal_note": "Mrs Fenwick has noticed how settled Maisie is in the mornings.",
        },
        description="Positive letter (Appendix 1i) when a pupil steps down the ladder",
    ),
    LetterSpec("all_saints/below_96", description="Section 11.6: attendance below 96%"),
    LetterSpec(
        "all_saints/monitored",
        uses=REVIEW,
        description="Section 11.7: below 90%, attendance now monitored",
    ),
    LetterSpec(
        "all_saints/targets_meeting",
        uses={**MEETING, **REVIEW},
        description="Section 11.8: meeting with the class teacher to set targets",
    ),
    LetterSpec(
        "all_saints/targets_met",
        uses={"personal_note": "Well done for all the early mornings."},
        description="Section 11.9: targets met, congratulations from the SLT",
    ),
    LetterSpec(
        "all_saints/parenting_contract",
        uses={
            **MEETING,
            **REVIEW,
            "commitments_school": [
                "Meet Maisie at the gate each morning for the next four weeks",
                "Arrange a referral to the school nurse",
            ],
            "commitments_parents": [
                "Make sure Maisie arrives by 8:55am every day",
                "Call the school office before 9:00am on any day Maisie is ill",
            ],
        },
        description="Section 11.10: EWO referral and parenting (attendance) contract",
    ),
    LetterSpec(
        "all_saints/final_warning",
        uses={**REVIEW, **DECISION},
        description="Section 11.10: final written warning before a fixed penalty notice",
    ),
    LetterSpec(
        "all_saints/truancy_warning",
        uses={"truancy_on": "2026-11-19", "truancy_details": "left the school site at lunchtime"},
        description="Section 11 Truancy: first warning letter",
    ),
    LetterSpec(
        "all_saints/formal_meeting",
        uses=MEETING,
        description="Section 6: below 85%, formal meeting with the headteacher",
    ),
    # ------------------------------------------------------------ Sevenoaks
    LetterSpec(
        "sevenoaks/pastoral_meeting",
        uses={**MEETING, "half_term": "Autumn 2"},
        description="Section 3.11: below 90% over a half-term, meeting with the DHP",
    ),
    LetterSpec(
        "sevenoaks/lateness",
        uses={"late_sessions": 3},
        description="Late three times in a week: what happens next",
    ),
    LetterSpec(
        "sevenoaks/unexplained_absence",
        uses={"absent_on": ["2026-11-23"]},
        description="An absence with no reason given: please explain within 5 school days",
    ),
    # ------------------------------------------------------------ Springbank
    LetterSpec(
        "springbank/stage_1",
        uses=REVIEW,
        description="Stage 1: your child has become a Persistent Absentee",
    ),
    LetterSpec(
        "springbank/stage_2",
        delivery=POST,
        uses=MEETING,
        description="Stage 2: invitation to an ATTEND meeting (by post)",
    ),
    LetterSpec(
        "springbank/warning_below_93",
        delivery=TEXT,
        description="Warning text message: attendance below 93%",
    ),
    LetterSpec(
        "springbank/calling_card",
        delivery=POST,
        uses={"visit_at": "2026-11-24T10:40", "visited_by": "Joely Keetch", "day_of_absence": 2},
        description="Calling card left at a home visit when nobody answers",
    ),
    # ------------------------------------------------------------ the local authority
    LetterSpec(
        "la/cme_referral",
        audience=LA,
        uses={
            "first_day_absent": "2026-11-09",
            "enquiries": [
                "Telephoned both parents each day from 9 November",
                "Telephoned the emergency contact on 10 November",
                "Home visit on 12 November: no answer, card left",
            ],
        },
        description="Child missing education: referral to the LA",
    ),
    LetterSpec(
        "la/penalty_notice_request",
        audience=LA,
        uses={
            **DECISION,
            "notice_to_improve_on": "2026-10-05",
            "reason": "term-time holiday taken after a request was refused",
            "notices": [{"parent": "Mrs Jane Example", "sequence": 1, "amount": 160}],
        },
        description="Request to the LA to issue penalty notices",
    ),
    LetterSpec(
        "la/attendance_return",
        audience=LA,
        uses={"first_day_absent": "2026-11-09"},
        description="Attendance return: 10 continuous school days of unauthorised absence",
    ),
    LetterSpec(
        "la/sickness_return",
        audience=LA,
        uses={"expected_return_on": "2027-01-05", "medical_evidence": "GP letter seen"},
        description="Sickness return: 15 school days of illness",
    ),
    LetterSpec(
        "la/legal_referral",
        audience=LA,
        uses={
            **DECISION,
            "stage_name": "Stage 5: referral to the LA for legal proceedings",
            "reason": "No further penalty notice within 3 years for Mr John Example: referred"
            " to the LA to consider prosecution instead",
        },
        description="Referral to the LA for legal proceedings (with the evidence pack)",
    ),
    LetterSpec(
        "la/evidence_pack",
        audience=LA,
        description="Evidence pack: figures, register extract, chronology and letters",
    ),
)

EVIDENCE_TEMPLATES = frozenset({"la/evidence_pack", "la/legal_referral"})


def spec_for(name: str) -> LetterSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"no letter template named {name!r}") from None
