"""`attend import`: register marks (MIS CSV), Common Transfer Files and pupils.

Each command is one transaction: a refused file prints every problem to stderr, exits
with status 1 and leaves the database as it was.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlmodel import Session, select

from database import make_engine, transaction
from imports.csv_marks import MappingError, import_marks_csv, preset_names
from imports.ctf import import_ctf
from imports.marks import ImportRefused, ImportResult
from imports.pupils import import_pupils_csv
from models.tables import School
from settings import get_settings

app = typer.Typer(no_args_is_help=True, help="Import register marks, CTF and pupils.")

# Show a bar only when there is enough to wait for.
PROGRESS_FROM = 5_000


def _school_id(session: Session, urn: str) -> int:
    school = session.exec(select(School).where(School.urn == urn)).first()
    if school is None:
        known = ", ".join(s.urn for s in session.exec(select(School)).all()) or "none"
        _fail(f"no school with URN {urn} (known: {known})")
    return school.id


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback that draws a bar (on stderr) once an import is long."""
    bar: Progress | None = None
    task = None

    def report(done: int, total: int) -> None:
        nonlocal bar, task
        if bar is None:
            if total < PROGRESS_FROM:
                return
            bar = Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            bar.start()
            task = bar.add_task(label, total=total)
        bar.update(task, completed=done, total=total)

    try:
        yield report
    finally:
        if bar is not None:
            bar.stop()


def _report(name: str, result: ImportResult, what: str = "rows") -> None:
    if result.already_imported:
        typer.echo(f"{name}: already imported; nothing changed")
        return
    typer.echo(
        f"{name}: {result.rows} {what}: {result.added} added, {result.amended} amended, "
        f"{result.unchanged} unchanged"
    )


def _run(work: Callable[[Session], ImportResult]) -> ImportResult:
    """Run one import in one transaction; a refusal rolls it back and exits 1."""
    engine = make_engine(get_settings().database_url)
    try:
        with transaction(engine) as session:
            return work(session)
    except ImportRefused as refused:
        _fail(str(refused))
    except (MappingError, OSError) as error:
        _fail(str(error))
    finally:
        engine.dispose()


Urn = Annotated[str, typer.Option("--school", help="URN of the school")]
By = Annotated[str, typer.Option("--by", help="name of who is importing (recorded)")]
Role = Annotated[str, typer.Option("--role", help="their role, recorded with amendments")]
Reason = Annotated[
    str | None,
    typer.Option("--reason", help="reason for amendments whose line gives none"),
]


@app.command()
def marks(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the CSV export")],
    school: Urn,
    by: By,
    role: Role,
    mapping: Annotated[
        str,
        typer.Option(help=f"column mapping: a preset ({', '.join(preset_names())}) or a path"),
    ] = "standard",
    reason: Reason = None,
) -> None:
    """Register marks from an MIS CSV export."""

    def work(session: Session) -> ImportResult:
        with _progress("storing marks") as progress:
            return import_marks_csv(
                session=session,
                school_id=_school_id(session, school),
                path=file,
                mapping=mapping,
                recorded_by=by,
                role=role,
                default_reason=reason,
                progress=progress,
            )

    _report(file.name, _run(work), "marks")


@app.command()
def ctf(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the CTF (XML)")],
    school: Urn,
    by: By,
    role: Role,
    reason: Reason = None,
) -> None:
    """Pupils, contacts and this school's marks from a Common Transfer File."""

    def work(session: Session) -> ImportResult:
        with _progress("storing marks") as progress:
            return import_ctf(
                session=session,
                school_id=_school_id(session, school),
                path=file,
                recorded_by=by,
                role=role,
                default_reason=reason,
                progress=progress,
            )

    result = _run(work)
    for warning in getattr(result, "warnings", []):
        typer.echo(f"warning: {warning}", err=True)
    if not result.already_imported:
        typer.echo(
            f"{file.name}: pupils {result.pupils_added} added, {result.pupils_amended} amended, "
            f"{result.pupils_unchanged} unchanged; contacts {result.contacts_added} added, "
            f"{result.contacts_amended} amended, {result.contacts_unchanged} unchanged"
        )
    _report(file.name, result, "marks")


@app.command()
def pupils(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the pupils CSV")],
    school: Urn,
    contacts: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="a contacts CSV (upn, priority, ...)"),
    ] = None,
    by: Annotated[str, typer.Option(help="name of who is importing")] = "pupils import",
) -> None:
    """Pupils and contacts from CSV (columns: see imports/pupils.py)."""

    def work(session: Session) -> ImportResult:
        with _progress("pupils") as progress:
            return import_pupils_csv(
                session=session,
                school_id=_school_id(session, school),
                path=file,
                contacts_path=contacts,
                recorded_by=by,
                progress=progress,
            )

    _report(file.name, _run(work), "pupils and contacts")
