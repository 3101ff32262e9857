"""Letters as Temporal activities: write a letter to a pupil's parents (or a document for
the LA), deliver it by each parent's preferred channel, and build the day's print pack.

Built once in worker.py with `build_letter_activities(settings, engine)`. Idempotent by
the caller's key: a retried or repeated call returns the same letter and sends nothing
twice (see letters/service.py).
"""

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.engine import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from letters.service import DeliveryInProgress, LetterError, LetterService
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
        return [self.send_letter, self.build_print_pack]


def build_letter_activities(settings: Settings, engine: Engine) -> LetterActivities:
    """The letter activities with their dependencies: one SMTP connection pool and one
    pool of PDF processes for the worker's life."""
    return LetterActivities(LetterService(settings, engine))
