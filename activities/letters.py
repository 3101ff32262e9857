"""Letters as Temporal activities: write a letter to a pupil's parents (or a document for
the LA), deliver it by each parent's preferred channel, send a school's half-termly
letter to every family, and build the day's print pack.

Built once in worker.py with `build_letter_activities(settings, engine)`. Idempotent by
the caller's key: a retried or repeated call returns the same letter and sends nothing
twice (see letters/service.py).
"""

import asyncio
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.engine import Engine
from sqlmodel import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from letters.service import DeliveryInProgress, LetterError, LetterService
from models.calendar import load_calendar
from models.tables import Pupil, School
from policies import load_policy
from settings import Settings


@dataclass
class LetterRequest:
    school_id: int
    pupil_id: int
    template: str  # e.g. "all_saints/stage_1a", "la/cme_referral", "springbank/warning_below_93"
    key: str  # unique per letter, chosen by the caller: "<workflow id>/stage_1/letter"
    data: dict = field(default_factory=dict)  # extra template data (see letters/catalogue.py)
    case_id: str | None = None  # the workflow ID, for the chronology
    as_of: str | None = None  # ISO date for the figures; default: the day it is written


@dataclass
class LetterResult:
    letter_id: int
    channel: str  # email | post | both | la | text
    status: str  # sent | queued_for_post | sent_and_queued | failed_to_post | no_address |
    # partly_undeliverable | failed; for the LA: sent | ready_for_la; for a text message:
    # ready_to_text (a staff task on the case says to send it) | no_address


@dataclass
class PrintPackRequest:
    school_id: int
    day: str  # ISO date


@dataclass
class PrintPackResult:
    school_id: int
    day: str
    path: str | None  # None when nothing is waiting for post
    letters: int
    pages: int
    sha256: str


@dataclass
class HalfTermlyInput:
    school_id: int
    as_of: str  # ISO date: the letters go out if it is the last school day of a half-term


@dataclass
class HalfTermlyResult:
    school_id: int
    as_of: str
    template: str | None  # None: not due today, or the policy sends no such letter
    letters: int = 0


@dataclass
class _HalfTermly:
    template: str
    half_term_starts: str
    pupils: list[int]


class LetterActivities:
    def __init__(self, service: LetterService):
        self.service = service

    @activity.defn
    async def send_letter(self, request: LetterRequest) -> LetterResult:
        """Render, store and deliver one letter. Errors name internal IDs only."""
        try:
            delivered = await self.service.send(
                school_id=request.school_id,
                pupil_id=request.pupil_id,
                template=request.template,
                key=request.key,
                data=request.data,
                case_id=request.case_id,
                as_of=request.as_of,
            )
        except LetterError as error:
            raise ApplicationError(str(error), type="LetterError", non_retryable=True) from None
        except DeliveryInProgress as error:
            raise ApplicationError(str(error), type="DeliveryInProgress") from None
        return LetterResult(delivered.letter_id, delivered.channel, delivered.status)

    @activity.defn
    async def send_half_termly_letters(self, input: HalfTermlyInput) -> HalfTermlyResult:
        """The policy's half-termly letter to every family of a pupil on roll, on the last
        school day of the half-term; otherwise nothing. One letter per pupil and
        half-term (its key), so a retried or repeated run sends nothing twice; the
        heartbeat says how far it got."""
        due = await asyncio.to_thread(self._half_termly_due, input)
        if due is None:
            return HalfTermlyResult(input.school_id, input.as_of, None)
        for n, pupil_id in enumerate(due.pupils, start=1):
            try:
                await self.service.send(
                    school_id=input.school_id,
                    pupil_id=pupil_id,
                    template=due.template,
                    key=f"half-termly/{input.school_id}/{due.half_term_starts}/{pupil_id}",
                    as_of=input.as_of,
                )
            except LetterError as error:
                raise ApplicationError(str(error), type="LetterError", non_retryable=True) from None
            except DeliveryInProgress as error:
                raise ApplicationError(str(error), type="DeliveryInProgress") from None
            activity.heartbeat(n)
        return HalfTermlyResult(input.school_id, input.as_of, due.template, len(due.pupils))

    def _half_termly_due(self, input: HalfTermlyInput) -> _HalfTermly | None:
        as_of = date.fromisoformat(input.as_of)
        with self.service.sessions() as session:
            policy = load_policy(session.get(School, input.school_id).policy)
            if policy.half_termly_letter is None:
                return None
            calendar = load_calendar(session=session, school_id=input.school_id)
            term = calendar.half_term_of(as_of)
            days = calendar.school_days(term.starts, term.ends) if term else []
            if not days or days[-1] != as_of:
                return None
            pupils = session.exec(
                select(Pupil.id)
                .where(Pupil.school_id == input.school_id, Pupil.on_roll)
                .order_by(Pupil.id)
            ).all()
            return _HalfTermly(policy.half_termly_letter, term.starts.isoformat(), list(pupils))

    @activity.defn
    async def build_print_pack(self, request: PrintPackRequest) -> PrintPackResult:
        """The school's postal letters for the day as one PDF, in envelope order."""
        pack = await self.service.print_pack(
            school_id=request.school_id, day=date.fromisoformat(request.day)
        )
        return PrintPackResult(
            pack.school_id, pack.day.isoformat(), pack.path, pack.letters, pack.pages, pack.sha256
        )

    async def close(self) -> None:
        """Close the SMTP connections and stop the PDF processes (at worker shutdown)."""
        await self.service.close()

    @property
    def all(self) -> list:
        """Every activity of the class, for the worker's list."""
        return [self.send_letter, self.send_half_termly_letters, self.build_print_pack]


def build_letter_activities(settings: Settings, engine: Engine) -> LetterActivities:
    """The letter activities with their dependencies: one SMTP connection pool and one
    pool of PDF processes for the worker's life."""
    return LetterActivities(LetterService(settings, engine))
