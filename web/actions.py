"""The steps staff take on a case from its page: each form becomes one workflow Update.

A form is read into the Update's own input dataclass (from workflows.episode or
workflows.case). Only what the form cannot say right is refused here (a missing date, an
unknown choice); whether the step fits the case is for the workflow's validator.
"""

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from models.codes import NATIONAL_CODES, Category
from models.policy import SchoolPolicy
from workflows.case import (
    LA_OUTCOMES,
    ContractInput,
    DecisionInput,
    LAOutcomeInput,
    MeetingOutcomeInput,
    MoveToStageInput,
    PauseInput,
    ResumeInput,
    ScheduleMeetingInput,
)
from workflows.episode import (
    CONTACT_OUTCOMES,
    VISIT_OUTCOMES,
    RecordContactInput,
    RecordVisitInput,
)

EPISODE = "absence_episode"
CASE = "attendance_case"


class FormProblem(ValueError):
    """A form that cannot become a step as filled in; the message says what to fix."""


# The absence codes a parent's reason can turn an N into, commonest first.
REASON_CODES: list[tuple[str, str]] = [
    (code, info.meaning)
    for code, info in sorted(
        NATIONAL_CODES.items(),
        key=lambda item: (item[0] not in ("I", "M", "O", "G", "C", "R"), item[0]),
    )
    if info.category in (Category.AUTHORISED, Category.UNAUTHORISED) and code != "N"
]
CONTACT_WORDS = {
    "contact_made": "Contact made",
    "no_answer": "No answer",
    "message_left": "Message left",
    "wrong_number": "Wrong number",
}
VISIT_WORDS = {
    "child_seen": "Child seen",
    "not_seen": "Child not seen",
    "card_left": "No answer: calling card left",
}
LA_OUTCOME_WORDS = {
    "issued": "Issued by the LA",
    "paid_reduced": "Paid at the reduced amount",
    "paid": "Paid",
    "unpaid": "Not paid",
    "withdrawn": "Withdrawn",
}
CHANNELS = {"phone": "Phone", "text": "Text message", "email": "E-mail", "in_person": "In person"}
ACTION_WORDS = {
    "record_contact": "Record contact with the family",
    "record_visit": "Record a home visit",
    "schedule_meeting": "Arrange the meeting",
    "record_meeting_outcome": "Record the meeting's outcome",
    "record_contract": "Record the attendance contract",
    "pause": "Pause the case",
    "resume": "Resume the case",
    "decide": "Decide the legal step",
    "move_to_stage": "Move the case to a stage",
    "record_la_outcome": "Record the LA's outcome",
}
KIND_OF = {
    "record_contact": EPISODE,
    "record_visit": EPISODE,
    "schedule_meeting": CASE,
    "record_meeting_outcome": CASE,
    "record_contract": CASE,
    "pause": CASE,
    "resume": CASE,
    "decide": CASE,
    "move_to_stage": CASE,
    "record_la_outcome": CASE,
}


@dataclass
class Actor:
    """Who takes the step, in the words the workflow records."""

    name: str
    role: str


def _text(form: Mapping[str, Any], name: str, *, required: str = "") -> str:
    value = form.get(name, "")
    value = value.strip() if isinstance(value, str) else ""
    if required and not value:
        raise FormProblem(required)
    return value


def _choice(form: Mapping[str, Any], name: str, choices, what: str) -> str:
    value = _text(form, name)
    if value not in choices:
        raise FormProblem(f"Choose {what}.")
    return value


def _day(form: Mapping[str, Any], name: str, what: str, *, required: bool = True) -> str | None:
    value = _text(form, name)
    if not value:
        if required:
            raise FormProblem(f"Give {what}.")
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise FormProblem(f"{what[0].upper()}{what[1:]} is not a date.") from None


def record_contact(form, actor: Actor, policy: SchoolPolicy) -> RecordContactInput:
    outcome = _choice(form, "outcome", CONTACT_OUTCOMES, "what happened")
    code = _text(form, "code") if outcome == "contact_made" else ""
    return RecordContactInput(
        outcome=outcome,
        by=actor.name,
        role=actor.role,
        channel=_choice(form, "channel", CHANNELS, "how you tried to reach them"),
        reason=_text(form, "reason"),
        code=code,
    )


def record_visit(form, actor: Actor, policy: SchoolPolicy) -> RecordVisitInput:
    return RecordVisitInput(
        outcome=_choice(form, "outcome", VISIT_OUTCOMES, "what the visit found"),
        by=actor.name,
        role=actor.role,
        note=_text(form, "note"),
    )


def schedule_meeting(form, actor: Actor, policy: SchoolPolicy) -> ScheduleMeetingInput:
    day = _day(form, "day", "the meeting's date")
    hour = _text(form, "time", required="Give the meeting's time.")
    try:
        when = datetime.fromisoformat(f"{day}T{hour}")
    except ValueError:
        raise FormProblem("The meeting's time is not a time (HH:MM).") from None
    return ScheduleMeetingInput(
        when=when.isoformat(timespec="minutes"),
        with_whom=_text(form, "with_whom", required="Say who the meeting is with."),
        by=actor.name,
        role=actor.role,
        ladder=_text(form, "ladder"),
    )


def record_meeting_outcome(form, actor: Actor, policy: SchoolPolicy) -> MeetingOutcomeInput:
    attended = _choice(form, "attended", ("yes", "no"), "whether the family attended")
    return MeetingOutcomeInput(
        attended=attended == "yes",
        by=actor.name,
        role=actor.role,
        targets=_text(form, "targets"),
        support_agreed=_text(form, "support_agreed"),
        next_review=_day(form, "next_review", "the next review's date", required=False),
        notes=_text(form, "notes"),
        ladder=_text(form, "ladder"),
    )


def record_contract(form, actor: Actor, policy: SchoolPolicy) -> ContractInput:
    return ContractInput(
        signed_on=_day(form, "signed_on", "the date the contract was signed") or "",
        by=actor.name,
        role=actor.role,
        terms=_text(form, "terms"),
        ladder=_text(form, "ladder"),
    )


def pause(form, actor: Actor, policy: SchoolPolicy) -> PauseInput:
    reasons = [str(p.reason) for p in policy.pauses]
    return PauseInput(
        reason=_choice(form, "reason", reasons, "the agreed reason for the pause"),
        by=actor.name,
        role=actor.role,
        note=_text(form, "note"),
    )


def resume(form, actor: Actor, policy: SchoolPolicy) -> ResumeInput:
    return ResumeInput(by=actor.name, role=actor.role, note=_text(form, "note"))


def move_to_stage(form, actor: Actor, policy: SchoolPolicy) -> MoveToStageInput:
    target = _text(form, "target", required="Choose the stage.")
    ladder, _, stage = target.partition("/")
    return MoveToStageInput(
        ladder=ladder,
        stage=stage,
        reason=_text(form, "reason", required="Say why the case moves to this stage."),
        by=actor.name,
        role=actor.role,
    )


def record_la_outcome(form, actor: Actor, policy: SchoolPolicy) -> LAOutcomeInput:
    return LAOutcomeInput(
        outcome=_choice(form, "outcome", LA_OUTCOMES, "what the LA did"),
        on_day=_day(form, "on_day", "the date") or "",
        by=actor.name,
        role=actor.role,
    )


def decide(form, actor: Actor, policy: SchoolPolicy, decision_key: str) -> DecisionInput:
    verdict = _choice(form, "verdict", ("approve", "decline"), "approve or decline")
    return DecisionInput(
        decision_key=decision_key,
        approve=verdict == "approve",
        reason=_text(form, "reason", required="Give the reason for the decision, either way."),
        by=actor.name,
        role=actor.role,
    )


BUILDERS: dict[str, Callable[..., Any]] = {
    "record_contact": record_contact,
    "record_visit": record_visit,
    "schedule_meeting": schedule_meeting,
    "record_meeting_outcome": record_meeting_outcome,
    "record_contract": record_contract,
    "pause": pause,
    "resume": resume,
    "move_to_stage": move_to_stage,
    "record_la_outcome": record_la_outcome,
}


def staff_stages(policy: SchoolPolicy) -> list[tuple[str, str]]:
    """Stages staff may move a case to ("ladder/stage", "Ladder: Stage")."""
    return [
        (f"{ladder.id}/{stage.id}", f"{ladder.name}: {stage.name}")
        for ladder in policy.ladders
        for stage in ladder.stages
        if stage.staff_decision
    ]


def describe_awaiting(item: str, ladder_names: Mapping[str, str]) -> str:
    """A line of the case's `awaiting` list, in words ("meeting to arrange:ladder")."""
    what, _, where = item.partition(":")
    if what == "decision":
        return "The headteacher's decision on a legal step"
    words = what[:1].upper() + what[1:]
    if what.startswith("review on "):
        day = what.removeprefix("review on ")
        with contextlib.suppress(ValueError):
            words = f"Review on {date.fromisoformat(day):%d/%m/%Y}"
    ladder = ladder_names.get(where, where.replace("_", " "))
    return f"{words} ({ladder})" if ladder else words


def ladders_waiting(awaiting: list[str], prefix: str) -> list[str]:
    """The ladders whose `awaiting` entry starts with `prefix` (e.g. "meeting outcome")."""
    return [item.partition(":")[2] for item in awaiting if item.partition(":")[0] == prefix]
