"""Writing, storing and delivering letters, once per key.

`write` renders a letter from the pupil's figures, the policy's school block, the parents
and the caller's data, and stores it with every copy it must go out as (the outbox), in
one transaction. `deliver` sends what is still to send: email with retries and backoff,
falling back to post; postal copies wait for the day's print pack. Every copy that reaches
a final state is written to the pupil's chronology. Called again with the same key,
nothing is rendered or sent again.

Logs and exception messages carry internal IDs only, never a name or an address.
"""

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import TemplateError, UndefinedError
from sqlalchemy import insert, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from database import session_factory
from letters.catalogue import EVIDENCE_TEMPLATES, LA, POST, TEXT, LetterSpec, spec_for
from letters.context import (
    FiguresCache,
    Household,
    absence_block,
    assemble,
    code_key,
    contacts_block,
    empty_figures,
    figures_block,
    households,
    last_attended,
    parents_of,
    pupil_block,
    record_block,
)
from letters.mail import Mailer, MailError, build_message
from letters.pdf import PdfRenderer
from letters.render import (
    address_copy,
    html_to_text,
    one_line,
    render,
    render_subject,
    resolve_language,
    sha256,
    template_version,
)
from models.letters import Channel, Letter, LetterTemplateVersion, Outbox, OutboxStatus
from models.tables import ChronologyEntry, Pupil, School, StaffTask
from policies import load_policy
from settings import Settings

log = logging.getLogger(__name__)

FINAL = {
    OutboxStatus.SENT,
    OutboxStatus.FAILED,
    OutboxStatus.QUEUED_FOR_POST,
    OutboxStatus.PRINTED,
    OutboxStatus.READY_FOR_LA,
    OutboxStatus.NO_ADDRESS,
    OutboxStatus.READY_TO_TEXT,
}
# Final states whose copy gets a chronology entry when it reaches them (a printed copy
# gets its own when the print pack is built).
CHRONICLED = FINAL - {OutboxStatus.PRINTED}


class LetterError(ValueError):
    """A letter that cannot be written as asked (unknown template, missing data, unknown
    pupil). Retrying will not help."""


class DeliveryInProgress(RuntimeError):
    """Another attempt holds a copy's lease (it may have died mid-send): retry later."""


@dataclass
class Draft:
    """A rendered letter and the copies it will go out as, before it is stored."""

    school_id: int
    pupil_id: int
    key: str
    case_id: str | None
    template: str
    spec: LetterSpec
    language: str
    version: str
    sources: dict[str, str]
    subject: str
    written_on: date
    as_of: date
    context: dict[str, Any]
    html: str
    copies: list[dict[str, Any]] = field(default_factory=list)

    def copy_html(self, copy: dict[str, Any]) -> str:
        return address_copy(
            self.html,
            name=copy["recipient_name"],
            address_lines=_lines(copy["address"], copy["postcode"]),
            salutation=copy["salutation"],
        )


@dataclass
class Delivered:
    letter_id: int
    channel: str  # email | post | both | la
    status: str


@dataclass
class PrintPack:
    school_id: int
    day: date
    path: str | None
    letters: int
    pages: int
    sha256: str


def _why(error: Exception) -> str:
    """A render error without personal data: Jinja's own messages name only the template
    and the missing attribute; other errors (a date in the wrong form, say) are named by
    their kind, since their message may quote the value."""
    if isinstance(error, TemplateError):
        where = f" ({error.name}, line {error.lineno})" if getattr(error, "lineno", None) else ""
        if isinstance(error, UndefinedError):
            return f"undefined value: {error.message}{where}"
        return f"{type(error).__name__}{where}"
    return f"{type(error).__name__} in the template data"


def _lines(address: str, postcode: str) -> list[str]:
    lines = [line for line in address.splitlines() if line.strip()]
    return [*lines, postcode] if postcode else lines


def _chronology_key(letter: Letter, what: str, outbox_id: int) -> str:
    base = letter.key if len(letter.key) <= 150 else hashlib.sha256(letter.key.encode()).hexdigest()
    return f"{base}/{what}/{outbox_id}"


class LetterService:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        pdf: PdfRenderer | None = None,
        mailer: Mailer | None = None,
        figures: FiguresCache | None = None,
        today: Callable[[ZoneInfo], date] | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ):
        self.settings = settings
        self.engine = engine
        self.sessions = session_factory(engine)
        self._versions: set[str] = set()  # template versions known to be stored
        self._school_policies: dict[int, tuple[float, str]] = {}
        self.pdf = pdf or PdfRenderer(settings.letters_pdf_processes)
        self.mailer = mailer or Mailer(settings)
        self.figures = figures or FiguresCache()
        self.today = today or (lambda zone: datetime.now(zone).date())
        self.sleep = sleep
        self.domain = settings.smtp_from.rpartition("@")[2] or "localhost"

    # ------------------------------------------------------------------ writing

    def draft(
        self,
        session: Session,
        *,
        school_id: int,
        pupil_id: int,
        template: str,
        key: str,
        data: dict[str, Any],
        case_id: str | None = None,
        as_of: str | None = None,
    ) -> Draft:
        """Render a letter (nothing is stored): for `write`, and for previews."""
        try:
            spec = spec_for(template)
        except KeyError:
            raise LetterError(f"no letter template named {template!r}") from None
        missing = spec.missing(data)
        if missing:
            raise LetterError(f"{template} needs data: {', '.join(missing)}")
        pupil = session.get(Pupil, pupil_id)
        policy_name = self._policy_name(session, school_id)
        if policy_name is None or pupil is None or pupil.school_id != school_id:
            raise LetterError(f"no pupil {pupil_id} at school {school_id}")
        policy = load_policy(policy_name)
        written_on = self.today(ZoneInfo(policy.timezone))
        day = date.fromisoformat(as_of) if as_of else written_on
        by_pupil, year_start = self.figures.get(
            session, school_id=school_id, policy=policy, as_of=day
        )
        figures = by_pupil.get(pupil_id) or empty_figures(pupil_id, day)
        parents = parents_of(session, pupil_id)
        extra: dict[str, Any] = {"absence": absence_block(session, pupil_id, day)}
        if spec.audience == LA:
            record = record_block(session, pupil_id, day)
            if template not in EVIDENCE_TEMPLATES:
                record["letters"] = []
            used = {code for week in record["register"] for d in week["days"] for code in d}
            record["codes"] = code_key(used)
            extra |= {
                "contacts": contacts_block(session, pupil_id),
                "last_attended": last_attended(session, pupil_id, day),
                "record": record,
            }
        language = resolve_language(template, data.get("language"))
        context = assemble(
            policy=policy,
            pupil=pupil_block(pupil, day),
            figures=figures_block(figures, year_start),
            parents=parents,
            written_on=written_on,
            as_of=day,
            template=template,
            key=key,
            case_id=case_id,
            data=data,
            extra=extra,
        )
        try:
            version = template_version(template, language)
            html = render(template, context, language)
            subject = (
                f"Text message about {pupil.forename}'s attendance"
                if spec.delivery == TEXT
                else render_subject(template, context, language)
            )
        except (TemplateError, ValueError, TypeError, KeyError, AttributeError) as error:
            # A template that cannot be filled in from what it was given (a value missing
            # or of the wrong form) fails the same way every time: not worth retrying.
            raise LetterError(f"{template} cannot be written: {_why(error)}") from None
        draft = Draft(
            school_id=school_id,
            pupil_id=pupil_id,
            key=key,
            case_id=case_id,
            template=template,
            spec=spec,
            language=language,
            version=version.version,
            sources=version.sources,
            subject=subject,
            written_on=written_on,
            as_of=day,
            context=context,
            html=html,
        )
        draft.copies = self._plan(draft, parents, policy.school)
        return draft

    def _policy_name(self, session: Session, school_id: int) -> str | None:
        """The school's policy, looked up at most once a minute."""
        now = time.monotonic()
        found = self._school_policies.get(school_id)
        if found is None or now - found[0] > 60:
            policy = session.exec(select(School.policy).where(School.id == school_id)).first()
            if policy is None:
                return None
            found = (now, policy)
            self._school_policies[school_id] = found
        return found[1]

    def _plan(self, draft: Draft, parents, school) -> list[dict[str, Any]]:
        """Who gets a copy, by which channel. Parents at one address share a postal copy;
        each parent's email gets the copy addressed to their household."""

        def copy(channel: str, key: str, house: Household | None, parent, status: str) -> dict:
            name = house.name if house else parent.name
            salutation = house.salutation if house else parent.salutation
            lines = house.address_lines if house and house.parents[0].address else []
            postcode = house.parents[0].postcode if house and lines else ""
            address = "\n".join(lines[:-1] if postcode else lines)
            row = {
                "channel": channel,
                "recipient_key": key,
                "contact_id": (parent or house.parents[0]).contact_id,
                "recipient_name": name,
                "salutation": salutation,
                "email": parent.email if channel == Channel.EMAIL and parent else "",
                "address": address,
                "postcode": postcode,
                "status": status,
            }
            row["copy_sha256"] = sha256(draft.copy_html(row))
            if channel == Channel.EMAIL:
                row["message_id"] = self._message_id(draft, key)
            return row

        if draft.spec.delivery == TEXT:
            texts = []
            for parent in parents:
                key = f"contact:{parent.contact_id}"
                status = OutboxStatus.READY_TO_TEXT if parent.phone else OutboxStatus.NO_ADDRESS
                texts.append(copy(Channel.TEXT, key, None, parent, status))
            return texts

        if draft.spec.audience == LA:
            name = school.la_attendance_service or school.local_authority
            la_email = self.settings.letters_la_email
            row = {
                "channel": Channel.LA,
                "recipient_key": "la",
                "contact_id": None,
                "recipient_name": name,
                "salutation": name,
                "email": la_email or "",
                "address": school.local_authority if name != school.local_authority else "",
                "postcode": "",
                "status": OutboxStatus.PENDING if la_email else OutboxStatus.READY_FOR_LA,
                "message_id": self._message_id(draft, "la") if la_email else None,
            }
            row["copy_sha256"] = sha256(draft.copy_html(row))
            return [row]

        homes = households(parents)
        home_of = {p.contact_id: h for h in homes.values() for p in h.parents}
        rows: dict[tuple[str, str], dict] = {}

        def post(parent) -> bool:
            house = home_of[parent.contact_id]
            if not parent.address:
                return False
            rows.setdefault(
                (Channel.POST, house.key),
                copy(Channel.POST, house.key, house, None, OutboxStatus.QUEUED_FOR_POST),
            )
            return True

        def email(parent) -> bool:
            if not parent.email or draft.spec.delivery == POST:
                return False
            house = home_of[parent.contact_id] if parent.address else None
            key = f"contact:{parent.contact_id}"
            rows[(Channel.EMAIL, key)] = copy(
                Channel.EMAIL, key, house, parent, OutboxStatus.PENDING
            )
            return True

        for parent in parents:
            wanted = parent.preferred_channel
            if draft.spec.delivery == POST:
                done = post(parent)
            elif wanted == "both":
                done = email(parent) | post(parent)
            elif wanted == "post":
                done = post(parent) or email(parent)
            else:
                done = email(parent) or post(parent)
            if not done:
                key = f"contact:{parent.contact_id}"
                rows[(Channel.POST, key)] = copy(
                    Channel.POST, key, None, parent, OutboxStatus.NO_ADDRESS
                )
        return list(rows.values())

    def _message_id(self, draft: Draft, recipient_key: str) -> str:
        digest = hashlib.sha256(f"{draft.key}\n{recipient_key}".encode()).hexdigest()
        return f"<letter.{digest[:32]}@{self.domain}>"

    def write(
        self,
        *,
        school_id: int,
        pupil_id: int,
        template: str,
        key: str,
        data: dict[str, Any] | None = None,
        case_id: str | None = None,
        as_of: str | None = None,
    ) -> int:
        """Store the letter and its outbox once per key; returns the letter's ID."""
        with self.sessions() as session:
            found = session.exec(select(Letter.id).where(Letter.key == key)).first()
            if found is not None:
                return found
            draft = self.draft(
                session,
                school_id=school_id,
                pupil_id=pupil_id,
                template=template,
                key=key,
                data=dict(data or {}),
                case_id=case_id,
                as_of=as_of,
            )
        now = datetime.now(UTC)
        self._keep_sources(draft, now)
        letters, outbox = Letter.__table__, Outbox.__table__
        try:
            with self.engine.begin() as connection:
                letter_id = connection.execute(
                    insert(letters)
                    .values(
                        key=key,
                        school_id=school_id,
                        pupil_id=pupil_id,
                        case_id=case_id,
                        template=draft.template,
                        template_version=draft.version,
                        language=draft.language,
                        audience=draft.spec.audience,
                        subject=draft.subject,
                        as_of=draft.as_of,
                        written_on=draft.written_on,
                        data=json.dumps(draft.context, sort_keys=True),
                        html=draft.html,
                        content_sha256=sha256(draft.html),
                        created_at=now,
                    )
                    .returning(letters.c.id)
                ).scalar_one()
                if draft.copies:
                    connection.execute(
                        insert(outbox),
                        [
                            _outbox_row(row, letter_id=letter_id, school_id=school_id, now=now)
                            for row in draft.copies
                        ],
                    )
                task = _text_task(draft, now)
                if task is not None:
                    connection.execute(insert(StaffTask.__table__).values(**task))
        except IntegrityError:
            # Written meanwhile by another attempt with the same key: use what is stored.
            with self.sessions() as session:
                found = session.exec(select(Letter.id).where(Letter.key == key)).first()
            if found is None:
                raise
            return found
        log.info("letter %s stored (%s, %d copies)", letter_id, draft.template, len(draft.copies))
        return letter_id

    def _keep_sources(self, draft: Draft, now: datetime) -> None:
        """Store the template's sources under their version, once."""
        if draft.version in self._versions:
            return
        with self.sessions() as session:
            if session.get(LetterTemplateVersion, draft.version) is not None:
                self._versions.add(draft.version)
                return
        try:
            with self.sessions() as session, session.begin():
                session.add(
                    LetterTemplateVersion(
                        version=draft.version,
                        template=draft.template,
                        language=draft.language,
                        sources=json.dumps(draft.sources, sort_keys=True),
                        created_at=now,
                    )
                )
        except IntegrityError:
            pass  # stored meanwhile by a letter written at the same time
        self._versions.add(draft.version)

    # ------------------------------------------------------------------ sending

    async def send(
        self,
        *,
        school_id: int,
        pupil_id: int,
        template: str,
        key: str,
        data: dict[str, Any] | None = None,
        case_id: str | None = None,
        as_of: str | None = None,
    ) -> Delivered:
        letter_id = await asyncio.to_thread(
            self.write,
            school_id=school_id,
            pupil_id=pupil_id,
            template=template,
            key=key,
            data=data,
            case_id=case_id,
            as_of=as_of,
        )
        return await self.deliver(letter_id)

    async def deliver(self, letter_id: int) -> Delivered:
        """Send every copy still to send, render every postal copy's PDF for the print
        pack, then record every finished copy in the chronology. Returns the outcome."""
        self._heartbeat(f"letter {letter_id} written")
        letter, rows = await asyncio.to_thread(self._load, letter_id)
        context = json.loads(letter.data)
        texts: dict[str, str] = {}
        fallback = asyncio.Lock()  # one postal copy per household, however many emails fail
        emails = [
            r for r in rows if r.channel in (Channel.EMAIL, Channel.LA) and r.status not in FINAL
        ]
        posts = [r for r in rows if r.status == OutboxStatus.QUEUED_FOR_POST]
        files: dict[Path, asyncio.Future] = {}

        def pdf_file(row: Outbox) -> asyncio.Future:
            # One PDF per distinct copy, rendered when first needed and kept on disk.
            path = self.pdf_path(letter, row)
            if path not in files:
                files[path] = asyncio.ensure_future(self._ensure_pdf(letter, row, path))
            return files[path]

        results = await asyncio.gather(
            *(self._email(letter, context, row, pdf_file, texts, fallback) for row in emails),
            *(pdf_file(row) for row in posts),
            return_exceptions=True,
        )
        # The rows as the sends left them; read again only if a copy fell back to post.
        # An email's chronology entry was written with its `sent`: nothing more to write
        # unless another copy reached a final state here.
        fresh = all(r.status == OutboxStatus.SENT for r in emails)
        recorded = {r.id for r in emails if getattr(r, "chronicled", False)}
        if fresh and all(r.id in recorded for r in rows if r.status in CHRONICLED):
            outcome = Delivered(letter_id, *summarise(letter.audience, rows))
        else:
            outcome = await asyncio.to_thread(
                self._record, letter_id, (letter, rows) if fresh else None
            )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return outcome

    def pdf_path(self, letter: Letter, row: Outbox) -> Path:
        """Where a copy's PDF is kept: derived from the letter's ID and hash and the copy's
        hash, so a copy shared by several recipients is rendered once."""
        return (
            Path(self.settings.letters_dir)
            / "pdf"
            / str(letter.school_id)
            / f"{letter.id}-{letter.content_sha256[:12]}"
            / f"{row.copy_sha256[:16]}.pdf"
        )

    async def _ensure_pdf(self, letter: Letter, row: Outbox, path: Path) -> Path:
        """The copy's PDF on disk, rendered from the stored HTML if it is not there."""
        if not await asyncio.to_thread(path.is_file):
            await self.pdf.write(self._copy(letter, row), path)
        return path

    def _load(self, letter_id: int) -> tuple[Letter, list[Outbox]]:
        with self.engine.connect() as connection:
            found = connection.execute(
                select(Letter.__table__).where(Letter.__table__.c.id == letter_id)
            ).first()
            if found is None:
                raise LetterError(f"no letter {letter_id}")
            rows = connection.execute(
                select(Outbox.__table__)
                .where(Outbox.__table__.c.letter_id == letter_id)
                .order_by(Outbox.__table__.c.id)
            ).all()
        # Plain records, not ORM instances: read once, updated in memory as copies go.
        return SimpleNamespace(**found._mapping), [SimpleNamespace(**row._mapping) for row in rows]

    def _copy(self, letter: Letter, row: Outbox) -> str:
        html = address_copy(
            letter.html,
            name=row.recipient_name,
            address_lines=_lines(row.address, row.postcode),
            salutation=row.salutation,
        )
        if row.copy_sha256 and sha256(html) != row.copy_sha256:
            raise RuntimeError(f"outbox {row.id}: the copy no longer matches its hash")
        return html

    async def _email(
        self,
        letter: Letter,
        context: dict,
        row: Outbox,
        pdf_file,
        texts: dict[str, str],
        fallback: asyncio.Lock,
    ) -> None:
        html = self._copy(letter, row)
        if row.copy_sha256 not in texts:
            texts[row.copy_sha256] = html_to_text(html)
        school = context["school"]
        attempts = max(1, self.settings.smtp_attempts)
        lease = timedelta(seconds=self.settings.smtp_timeout_seconds * 3 + 30)
        path = self.pdf_path(letter, row)
        while True:
            claimed, pdf = await asyncio.to_thread(self._claim_and_read, row.id, lease, path)
            if claimed is None:
                state = await asyncio.to_thread(self._status, row.id)
                if state in FINAL:
                    return
                raise DeliveryInProgress(f"outbox {row.id} is being sent by another attempt")
            message = build_message(
                sender=self.settings.smtp_from,
                sender_name=school["name"],
                reply_to=school.get("email"),
                to_name=row.recipient_name,
                to_address=row.email,
                subject=letter.subject,
                text=texts[row.copy_sha256],
                html=html,
                pdf=pdf or await asyncio.to_thread((await pdf_file(row)).read_bytes),
                pdf_name=f"letter-{context['letter']['reference']}.pdf",
                message_id=row.message_id,
                sent_at=datetime.now(UTC),
            )
            try:
                await self.mailer.send(message)
            except MailError as error:
                log.warning("outbox %s: attempt %d failed: %s", row.id, claimed, error)
                if error.permanent or claimed >= attempts:
                    async with fallback:
                        await asyncio.to_thread(self._give_up, row.id, str(error))
                    return
                await asyncio.to_thread(self._release, row.id, str(error))
                self._heartbeat(f"outbox {row.id} attempt {claimed} failed")
                await self.sleep(self.settings.smtp_backoff_seconds * 2 ** (claimed - 1))
                continue
            row.status, row.attempts = OutboxStatus.SENT, claimed
            try:
                row.sent_at = await asyncio.to_thread(self._sent, letter, row)
            except BaseException:
                row.status = OutboxStatus.SENDING  # as the database still has it
                raise
            row.chronicled = True
            self._heartbeat(f"outbox {row.id} sent")
            log.info("outbox %s: sent (attempt %d)", row.id, claimed)
            return

    @staticmethod
    def _heartbeat(detail: str) -> None:
        from temporalio import activity

        if activity.in_activity():
            activity.heartbeat(detail)

    def _claim_and_read(
        self, outbox_id: int, lease: timedelta, path: Path
    ) -> tuple[int | None, bytes | None]:
        """_claim, and the copy's PDF if it is on disk already: one trip off the loop."""
        claimed = self._claim(outbox_id, lease)
        if claimed is None:
            return None, None
        try:
            return claimed, path.read_bytes()
        except FileNotFoundError:
            return claimed, None

    def _claim(self, outbox_id: int, lease: timedelta) -> int | None:
        """Take the row for one attempt; returns the attempt's number, or None if the row
        is finished or another attempt holds it."""
        now = datetime.now(UTC)
        table = Outbox.__table__
        with self.engine.begin() as connection:
            return connection.execute(
                update(table)
                .where(
                    table.c.id == outbox_id,
                    or_(
                        table.c.status == OutboxStatus.PENDING,
                        (table.c.status == OutboxStatus.SENDING) & (table.c.lease_until < now),
                    ),
                )
                .values(
                    status=OutboxStatus.SENDING,
                    attempts=table.c.attempts + 1,
                    lease_until=now + lease,
                )
                .returning(table.c.attempts)
            ).scalar_one_or_none()

    def _status(self, outbox_id: int) -> str:
        table = Outbox.__table__
        with self.engine.connect() as connection:
            return connection.execute(
                select(table.c.status).where(table.c.id == outbox_id)
            ).scalar_one()

    def _update(self, outbox_id: int, **values: Any) -> None:
        table = Outbox.__table__
        with self.engine.begin() as connection:
            connection.execute(update(table).where(table.c.id == outbox_id).values(**values))

    def _sent(self, letter: Letter, row: Outbox) -> datetime:
        """Mark the copy sent and write its chronology entry, in one transaction."""
        row.sent_at = datetime.now(UTC)
        table = Outbox.__table__
        with self.engine.begin() as connection:
            connection.execute(
                update(table)
                .where(table.c.id == row.id)
                .values(status=OutboxStatus.SENT, sent_at=row.sent_at, lease_until=None)
            )
            self._chronicle(connection, letter, [row])
        return row.sent_at

    def _release(self, outbox_id: int, error: str) -> None:
        self._update(outbox_id, status=OutboxStatus.PENDING, last_error=error, lease_until=None)

    def _give_up(self, outbox_id: int, error: str) -> None:
        """Record the failure, and queue a postal copy instead where there is an address
        (an LA document is left for staff to submit)."""
        with self.sessions() as session, session.begin():
            row = session.get(Outbox, outbox_id)
            row.last_error, row.lease_until = error, None
            if row.channel == Channel.LA:
                row.status = OutboxStatus.READY_FOR_LA
                session.add(row)
                return
            row.status = OutboxStatus.FAILED
            session.add(row)
            if not row.address:
                return
            existing = session.exec(
                select(Outbox).where(
                    Outbox.letter_id == row.letter_id,
                    Outbox.channel == Channel.POST,
                    Outbox.copy_sha256 == row.copy_sha256,
                )
            ).first()
            if existing is not None:
                return  # the household already gets this copy on paper
            session.add(
                Outbox(
                    letter_id=row.letter_id,
                    school_id=row.school_id,
                    contact_id=row.contact_id,
                    channel=Channel.POST,
                    recipient_key=f"fallback:{row.id}",
                    recipient_name=row.recipient_name,
                    salutation=row.salutation,
                    address=row.address,
                    postcode=row.postcode,
                    copy_sha256=row.copy_sha256,
                    status=OutboxStatus.QUEUED_FOR_POST,
                    fallback_for=row.id,
                    created_at=datetime.now(UTC),
                )
            )

    # ------------------------------------------------------------------ the record

    def _record(
        self, letter_id: int, loaded: tuple[Letter, list[Outbox]] | None = None
    ) -> Delivered:
        """A chronology entry for every copy that has reached a final state; returns the
        letter's outcome as it now stands."""
        letter, rows = loaded or self._load(letter_id)
        if any(row.status in CHRONICLED for row in rows):
            with self.engine.begin() as connection:
                self._chronicle(connection, letter, rows)
        return Delivered(letter_id, *summarise(letter.audience, rows))

    @staticmethod
    def _chronicle(connection, letter: Letter, rows: list[Outbox]) -> None:
        """Write the chronology entry of each copy in a final state that has none yet."""
        wanted = {
            _chronology_key(letter, "copy", row.id): row for row in rows if row.status in CHRONICLED
        }
        if not wanted:
            return
        entries = ChronologyEntry.__table__
        have = set(
            connection.execute(
                select(entries.c.key).where(entries.c.key.in_(list(wanted)))
            ).scalars()
        )
        data = json.loads(letter.data).get("data", {})
        stage = data.get("stage", "")
        stage = stage if isinstance(stage, str) else ""
        new = [
            {
                "key": key,
                "school_id": letter.school_id,
                "pupil_id": letter.pupil_id,
                "case_id": letter.case_id,
                "on_day": letter.written_on,
                "at": row.sent_at or datetime.now(UTC),
                "kind": "letter",
                "summary": _summary(letter, row),
                "actor": "engine",
                "role": "",
                "stage": stage,
                "detail": json.dumps(_detail(letter, row), sort_keys=True),
            }
            for key, row in wanted.items()
            if key not in have
        ]
        if new:
            connection.execute(insert(entries), new)

    def outcome(self, letter_id: int) -> Delivered:
        letter, rows = self._load(letter_id)
        return Delivered(letter_id, *summarise(letter.audience, rows))

    # ------------------------------------------------------------------ print packs

    async def print_pack(self, *, school_id: int, day: date) -> PrintPack:
        """One PDF of the school's postal copies for `day`, in envelope order (by postcode),
        each starting on a fresh sheet when printed double-sided. Copies queued up to the
        end of `day` and not yet in a pack go into it; building it again gives the same
        pack."""
        rows, letters, urn = await asyncio.to_thread(self._pack_rows, school_id, day)
        if not rows:
            return PrintPack(school_id, day, None, 0, 0, "")
        paths = [self.pdf_path(letters[r.letter_id], r) for r in rows]
        distinct = dict(zip(paths, rows, strict=True))
        await asyncio.gather(
            *(self._ensure_pdf(letters[row.letter_id], row, path) for path, row in distinct.items())
        )
        pdf, pages = await self.pdf.merge(paths, whole_sheets=True)
        folder = Path(self.settings.letters_dir) / "print" / urn
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{day.isoformat()}.pdf"
        partial = path.with_suffix(".pdf.part")
        partial.write_bytes(pdf)
        partial.replace(path)
        await asyncio.to_thread(self._printed, [r.id for r in rows], day)
        log.info("print pack for school %s on %s: %d copies", school_id, day, len(rows))
        return PrintPack(
            school_id, day, str(path), len(rows), pages, hashlib.sha256(pdf).hexdigest()
        )

    def _pack_rows(self, school_id: int, day: date):
        until = datetime.combine(day + timedelta(days=1), clock_time(), tzinfo=UTC)
        with self.sessions() as session:
            school = session.get(School, school_id)
            rows = session.exec(
                select(Outbox).where(
                    Outbox.school_id == school_id,
                    Outbox.channel == Channel.POST,
                    or_(
                        (Outbox.status == OutboxStatus.QUEUED_FOR_POST)
                        & (Outbox.created_at < until),
                        (Outbox.status == OutboxStatus.PRINTED) & (Outbox.print_day == day),
                    ),
                )
            ).all()
            rows = sorted(
                rows,
                key=lambda r: (
                    r.postcode.replace(" ", "").upper(),
                    r.address.lower(),
                    r.recipient_name.lower(),
                    r.letter_id,
                    r.id,
                ),
            )
            ids = {r.letter_id for r in rows}
            letters = {
                letter.id: letter
                for letter in session.exec(select(Letter).where(Letter.id.in_(ids))).all()
            }
            return rows, letters, school.urn if school else str(school_id)

    def _printed(self, outbox_ids: list[int], day: date) -> None:
        with self.sessions() as session, session.begin():
            session.exec(
                update(Outbox)
                .where(Outbox.id.in_(outbox_ids), Outbox.status == OutboxStatus.QUEUED_FOR_POST)
                .values(status=OutboxStatus.PRINTED, print_day=day)
            )
            rows = session.exec(select(Outbox).where(Outbox.id.in_(outbox_ids))).all()
            letters = {
                letter.id: letter
                for letter in session.exec(
                    select(Letter).where(Letter.id.in_({r.letter_id for r in rows}))
                ).all()
            }
            keys = {_chronology_key(letters[r.letter_id], "printed", r.id): r for r in rows}
            have = set(
                session.exec(
                    select(ChronologyEntry.key).where(ChronologyEntry.key.in_(list(keys)))
                ).all()
            )
            now = datetime.now(UTC)
            for key, row in keys.items():
                if key in have:
                    continue
                letter = letters[row.letter_id]
                session.add(
                    ChronologyEntry(
                        key=key,
                        school_id=letter.school_id,
                        pupil_id=letter.pupil_id,
                        case_id=letter.case_id,
                        on_day=day,
                        at=now,
                        kind="letter",
                        summary=f"{_title(letter)} printed for posting to {row.recipient_name} "
                        f"(print pack of {day:%d/%m/%Y})",
                        actor="engine",
                        detail=json.dumps(_detail(letter, row), sort_keys=True),
                    )
                )

    async def close(self) -> None:
        await self.mailer.close()
        self.pdf.close()


def _text_task(draft: Draft, now: datetime) -> dict[str, Any] | None:
    """A text message is sent by staff from the school's messaging service (it holds the
    parents' mobile numbers): a task on the case says so, due within the day."""
    ready = [c for c in draft.copies if c["status"] == OutboxStatus.READY_TO_TEXT]
    if draft.spec.delivery != TEXT or not ready or not draft.case_id:
        return None
    key = draft.key if len(draft.key) <= 180 else hashlib.sha256(draft.key.encode()).hexdigest()
    names = ", ".join(c["recipient_name"] for c in ready)
    return {
        "key": f"{key}/send_text",
        "school_id": draft.school_id,
        "pupil_id": draft.pupil_id,
        "case_id": draft.case_id,
        "kind": "send_text",
        "summary": f"Send the text message ({draft.template}) to {names}: "
        f"\u201c{one_line(draft.html)}\u201d",
        "role": "office",
        "due_at": now + timedelta(days=1),
        "status": "open",
        "created_at": now,
        "closed_at": None,
    }


def _title(letter: Letter) -> str:
    return f"Letter \u201c{letter.subject}\u201d ({letter.template})"


def _summary(letter: Letter, row: Outbox) -> str:
    title = _title(letter)
    status = row.status
    if row.channel == Channel.TEXT:
        text = f"\u201c{one_line(letter.html)}\u201d"
        if status == OutboxStatus.READY_TO_TEXT:
            return f"Text message to {row.recipient_name} ready for staff to send: {text}"
        return f"Text message not sent to {row.recipient_name}: no telephone number on record"
    if row.channel == Channel.LA:
        if status == OutboxStatus.SENT:
            return f"{title} emailed to {row.recipient_name}"
        why = f" after email failed ({row.last_error})" if row.last_error else ""
        return f"{title} ready to submit to {row.recipient_name}{why}"
    # Parents with addresses of their own each get the household's copy: the address
    # says which of them this entry is about.
    at = f" at {row.email}" if row.email else ""
    if status == OutboxStatus.SENT:
        return f"{title} emailed to {row.recipient_name}{at}"
    if status == OutboxStatus.QUEUED_FOR_POST:
        instead = " instead of email" if row.fallback_for else ""
        return f"{title} queued for post to {row.recipient_name}{instead}"
    if status == OutboxStatus.FAILED:
        return (
            f"{title}: email to {row.recipient_name}{at} failed after {row.attempts} "
            f"attempt{'s' if row.attempts != 1 else ''} ({row.last_error})"
        )
    if status == OutboxStatus.NO_ADDRESS:
        return (
            f"{title} could not be sent to {row.recipient_name}: no email or postal address "
            "on record"
        )
    return f"{title}: {status} for {row.recipient_name}"


def _detail(letter: Letter, row: Outbox) -> dict[str, Any]:
    return {
        "letter_id": letter.id,
        "outbox_id": row.id,
        "channel": row.channel,
        "status": row.status,
        "template": letter.template,
        "template_version": letter.template_version,
        "language": letter.language,
        "content_sha256": letter.content_sha256,
        "copy_sha256": row.copy_sha256,
        "message_id": row.message_id,
        "attempts": row.attempts,
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        "fallback_for": row.fallback_for,
    }


def summarise(audience: str, rows) -> tuple[str, str]:
    """The letter's channel and status, from its copies.

    channel: email | post | both | la. status: sent (every copy emailed),
    queued_for_post (every copy on paper), sent_and_queued (some of each), failed_to_post
    (an email failed for good and the same copy goes by post), failed (an email failed and
    nothing else went), no_address (nobody could be sent a copy), partly_undeliverable
    (some copies went, some could not), sending (still in progress); for the LA: sent or
    ready_for_la.
    """
    if rows and all(r.channel == Channel.TEXT for r in rows):
        ready = any(r.status == OutboxStatus.READY_TO_TEXT for r in rows)
        return "text", "ready_to_text" if ready else "no_address"
    if audience == LA:
        row = rows[0]
        if row.status in (OutboxStatus.PENDING, OutboxStatus.SENDING):
            return "la", "sending"
        return "la", str(row.status)
    emailed = [r for r in rows if r.channel == Channel.EMAIL and r.status == OutboxStatus.SENT]
    posted = [
        r
        for r in rows
        if r.channel == Channel.POST
        and r.status in (OutboxStatus.QUEUED_FOR_POST, OutboxStatus.PRINTED)
    ]
    failed = [r for r in rows if r.status == OutboxStatus.FAILED]
    nowhere = [r for r in rows if r.status == OutboxStatus.NO_ADDRESS]
    busy = [r for r in rows if r.status in (OutboxStatus.PENDING, OutboxStatus.SENDING)]
    if emailed and posted:
        channel = "both"
    elif emailed or (not posted and any(r.channel == Channel.EMAIL for r in rows)):
        channel = "email"
    else:
        channel = "post"
    if busy:
        return channel, "sending"
    if failed and all(any(p.copy_sha256 == f.copy_sha256 for p in posted) for f in failed):
        return channel, "failed_to_post"  # every failed email's copy goes by post instead
    if not emailed and not posted:
        return channel, "failed" if failed else "no_address"
    if nowhere or failed:
        return channel, "partly_undeliverable"
    if emailed and posted:
        return channel, "sent_and_queued"
    return channel, "sent" if emailed else "queued_for_post"


def _outbox_row(row: dict[str, Any], *, letter_id: int, school_id: int, now: datetime) -> dict:
    """A planned copy as an outbox row, with every column given (one multi-row INSERT)."""
    return {
        "letter_id": letter_id,
        "school_id": school_id,
        "contact_id": row["contact_id"],
        "channel": str(row["channel"]),
        "recipient_key": row["recipient_key"],
        "recipient_name": row["recipient_name"],
        "salutation": row["salutation"],
        "email": row["email"],
        "address": row["address"],
        "postcode": row["postcode"],
        "message_id": row.get("message_id"),
        "copy_sha256": row["copy_sha256"],
        "status": str(row["status"]),
        "attempts": 0,
        "last_error": "",
        "lease_until": None,
        "fallback_for": None,
        "created_at": now,
        "sent_at": None,
        "print_day": None,
    }
