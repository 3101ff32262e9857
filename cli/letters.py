"""`attend letters`: preview a letter without sending it, send one staff write themselves,
list the templates, show a stored letter again exactly as sent, and build a day's print
pack."""

import asyncio
import json
from datetime import date
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import Session, select

from database import make_engine
from letters.catalogue import SPECS
from letters.pdf import html_to_pdf
from letters.render import address_copy, render, render_from_sources, sha256
from letters.samples import sample_context
from letters.service import DeliveryInProgress, LetterError, LetterService
from models.letters import Letter, LetterTemplateVersion, Outbox
from models.tables import Pupil, School
from policies import PolicyError, load_policy
from settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Preview, show and print letters.")
console = Console()


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


def _school(session: Session, school: str) -> School:
    """A school by URN, database ID or policy name."""
    found = session.exec(
        select(School).where((School.urn == school) | (School.policy == school))
    ).all()
    if not found and school.isdigit():
        by_id = session.get(School, int(school))
        found = [by_id] if by_id else []
    if len(found) != 1:
        known = ", ".join(f"{s.urn} ({s.policy})" for s in session.exec(select(School)).all())
        _fail(f"no single school matches {school!r}; known: {known or 'none'}")
    return found[0]


def _pupil(session: Session, upn: str, school: str | None) -> Pupil:
    query = select(Pupil).where(Pupil.upn == upn.upper())
    if school:
        query = query.where(Pupil.school_id == _school(session, school).id)
    found = session.exec(query).all()
    if len(found) != 1:
        _fail(
            f"no pupil with UPN {upn}"
            if not found
            else f"UPN {upn} is at several schools: give --school"
        )
    return found[0]


def _data(text: str | None) -> dict:
    if not text:
        return {}
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        _fail(f"--data is not JSON: {error}")
    if not isinstance(value, dict):
        _fail('--data is a JSON object, e.g. \'{"meeting_at": "2026-12-01T09:15"}\'')
    return value


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        _fail(f"{option} is a date as YYYY-MM-DD, e.g. 2026-11-24; not {text!r}")


def _write(out: Path, html: str, as_html: bool) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if as_html:
        out.write_text(html, encoding="utf-8")
    else:
        out.write_bytes(html_to_pdf(html))
    console.print(f"written {out}")


@app.command()
def preview(
    template: Annotated[str, typer.Argument(help="e.g. all_saints/stage_1a or la/cme_referral")],
    pupil: Annotated[str | None, typer.Option(help="the pupil's UPN")] = None,
    school: Annotated[str | None, typer.Option(help="URN or policy name, if UPNs clash")] = None,
    sample: Annotated[
        str | None, typer.Option(help="a policy preset: a made-up pupil, no database")
    ] = None,
    as_of: Annotated[str | None, typer.Option(help="figures as of (YYYY-MM-DD)")] = None,
    data: Annotated[
        str | None, typer.Option(help="template data as JSON, or @file.json; see `templates`")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="where to write it")] = None,
    html: Annotated[bool, typer.Option("--html", help="write HTML instead of PDF")] = False,
) -> None:
    """Render one letter for a pupil without storing or sending it."""
    if template not in SPECS:
        _fail(f"no template {template!r}; `attend letters templates` lists them")
    given = _data(data)
    if as_of:
        as_of = _day(as_of, "--as-of").isoformat()
    if sample:
        try:
            policy = load_policy(sample)
        except PolicyError as error:
            _fail(str(error))
        spec = SPECS[template]
        context = sample_context(policy, template, data=given or spec.sample_data)
        page = render(template, context)
        name, lines, salutation = "Mrs Jane Example", ["12 Church Lane", "ST13 5AA"], "Mrs Example"
        label = "sample"
    else:
        if not pupil:
            _fail("give --pupil UPN (or --sample PRESET for a made-up pupil)")
        settings = get_settings()
        engine = make_engine(settings.database_url)
        service = LetterService(settings, engine, pdf=None)
        with Session(engine) as session:
            found = _pupil(session, pupil, school)
            try:
                draft = service.draft(
                    session,
                    school_id=found.school_id,
                    pupil_id=found.id,
                    template=template,
                    key=f"preview/{template}/{found.id}",
                    data=given,
                    as_of=as_of,
                )
            except LetterError as error:
                _fail(str(error))
        first = draft.copies[0] if draft.copies else None
        page = draft.html
        name = first["recipient_name"] if first else ""
        lines = (first["address"].splitlines() + [first["postcode"]]) if first else []
        salutation = first["salutation"] if first else "Parent/Carer"
        label = found.upn
    page = address_copy(page, name=name, address_lines=lines, salutation=salutation)
    suffix = "html" if html else "pdf"
    target = out or Path(get_settings().letters_dir) / "preview" / (
        f"{template.replace('/', '-')}-{label}.{suffix}"
    )
    _write(target, page, html)


@app.command()
def send(
    template: Annotated[
        str, typer.Argument(help="e.g. la/cme_referral or springbank/calling_card")
    ],
    pupil: Annotated[str, typer.Option(help="the pupil's UPN")],
    school: Annotated[str | None, typer.Option(help="URN or policy name, if UPNs clash")] = None,
    case: Annotated[str | None, typer.Option(help="the case ID, for its chronology")] = None,
    as_of: Annotated[str | None, typer.Option(help="figures as of (YYYY-MM-DD)")] = None,
    data: Annotated[
        str | None, typer.Option(help="template data as JSON, or @file.json; see `templates`")
    ] = None,
    key: Annotated[
        str | None, typer.Option(help="the letter's key; default: one per pupil, template, day")
    ] = None,
) -> None:
    """Write, store and deliver one letter, as the workflows do: for the letters staff send
    themselves (a CME referral, a return to the LA, a calling card). The same key twice
    sends nothing twice."""
    if template not in SPECS:
        _fail(f"no template {template!r}; `attend letters templates` lists them")
    given = _data(data)
    day = _day(as_of, "--as-of") if as_of else None
    settings = get_settings()
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        found = _pupil(session, pupil, school)
    key = key or f"staff/{template}/{found.id}/{(day or date.today()).isoformat()}"

    async def run():
        service = LetterService(settings, engine)
        try:
            return await service.send(
                school_id=found.school_id,
                pupil_id=found.id,
                template=template,
                key=key,
                data=given,
                case_id=case,
                as_of=day.isoformat() if day else None,
            )
        finally:
            await service.close()

    try:
        delivered = asyncio.run(run())
    except LetterError as error:
        _fail(str(error))
    except DeliveryInProgress as error:
        _fail(f"{error}; try again in a few minutes")
    console.print(
        f"letter {delivered.letter_id}: {delivered.channel}, {delivered.status} "
        f"(`attend letters show {delivered.letter_id}`)"
    )


@app.command()
def templates() -> None:
    """Every letter template: who it is for, how it goes and the data it takes."""
    table = Table(title="Letter templates")
    for column in ("Template", "For", "Delivery", "Needs", "Uses", "What it is"):
        table.add_column(column)
    for name, spec in sorted(SPECS.items()):
        table.add_row(
            name,
            spec.audience,
            spec.delivery,
            ", ".join(spec.needs),
            ", ".join(spec.uses),
            spec.description,
        )
    console.print(table)


@app.command()
def show(
    letter_id: Annotated[int, typer.Argument(help="the letter's ID")],
    out: Annotated[Path | None, typer.Option(help="write the first copy as a PDF here")] = None,
) -> None:
    """Render a stored letter again from the template sources and data stored with it, and
    check it is exactly the text that was sent."""
    engine = make_engine(get_settings().database_url)
    with Session(engine) as session:
        letter = session.get(Letter, letter_id)
        if letter is None:
            _fail(f"no letter {letter_id}")
        version = session.get(LetterTemplateVersion, letter.template_version)
        copies = session.exec(
            select(Outbox).where(Outbox.letter_id == letter_id).order_by(Outbox.id)
        ).all()
    again = render_from_sources(
        json.loads(version.sources), letter.template, json.loads(letter.data)
    )
    same = sha256(again) == letter.content_sha256
    console.print(
        f"letter {letter.id}: {letter.template} (version {letter.template_version[:12]}, "
        f"{letter.language}), written {letter.written_on:%d/%m/%Y}; rendered again: "
        + ("identical" if same else "DIFFERENT from the stored text")
    )
    for row in copies:
        when = f" at {row.sent_at:%d/%m/%Y %H:%M}" if row.sent_at else ""
        day = f", print pack {row.print_day:%d/%m/%Y}" if row.print_day else ""
        console.print(f"  copy {row.id}: {row.channel}, {row.status}{when}{day}")
    if out:
        first = copies[0] if copies else None
        page = address_copy(
            letter.html,
            name=first.recipient_name if first else "",
            address_lines=(first.address.splitlines() + [first.postcode]) if first else [],
            salutation=first.salutation if first else "Parent/Carer",
        )
        _write(out, page, False)
    if not same:
        raise typer.Exit(1)


@app.command("print-pack")
def print_pack(
    school: Annotated[str, typer.Option(help="URN, database ID or policy name")],
    day: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default today")] = None,
) -> None:
    """Build the school's print pack: one PDF of the day's postal letters, envelope order."""
    settings = get_settings()
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        found = _school(session, school)
    when = _day(day, "--day") if day else date.today()

    async def run():
        service = LetterService(settings, engine)
        try:
            return await service.print_pack(school_id=found.id, day=when)
        finally:
            await service.close()

    pack = asyncio.run(run())
    if pack.path is None:
        console.print(f"nothing waiting for post at school {found.urn} on {when:%d/%m/%Y}")
    else:
        letters = f"{pack.letters} letter" + ("" if pack.letters == 1 else "s")
        console.print(f"{letters}, {pack.pages} pages: {pack.path}")
