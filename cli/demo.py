"""`attend demo-data`: create the demo schools and print what was made.

The figures printed here are counted from the generated marks themselves, as a check
that the demo looks like a real school; `attend figures` computes the real ones.
"""

from datetime import date
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from database import make_engine
from demo.calendar import OutsideDemoCalendarError, last_school_day_before
from demo.generate import (
    DEMO_SCHOOLS,
    DemoDataError,
    DemoSchool,
    DemoSchoolExistsError,
    DemoSummary,
    create_demo,
)
from settings import get_settings

console = Console()


def _schools(wanted: list[str] | None) -> list[DemoSchool]:
    """Demo schools by policy preset name or URN; all of them when none is named."""
    if not wanted:
        return list(DEMO_SCHOOLS.values())
    by_urn = {school.urn: school for school in DEMO_SCHOOLS.values()}
    chosen: list[DemoSchool] = []
    for name in wanted:
        school = DEMO_SCHOOLS.get(name) or by_urn.get(name)
        if school is None:
            known = ", ".join(f"{s.policy} ({s.urn})" for s in DEMO_SCHOOLS.values())
            raise typer.BadParameter(
                f"no demo school {name!r}; known: {known}", param_hint="--school"
            )
        if school not in chosen:
            chosen.append(school)
    return chosen


def demo_data(
    through: Annotated[
        str | None,
        typer.Option(
            help="last day of register history (YYYY-MM-DD); default the last "
            "school day before today"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="the same seed makes the same data")] = 42,
    school: Annotated[
        list[str] | None,
        typer.Option(help="policy preset name or URN of a demo school (repeat); default all"),
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="delete demo schools already in the database and make them again")
    ] = False,
) -> None:
    """Generate demo schools, pupils, contacts and register history."""
    schools = _schools(school)
    try:
        last = date.fromisoformat(through) if through else last_school_day_before(date.today())
    except (ValueError, OutsideDemoCalendarError) as error:
        raise typer.BadParameter(str(error), param_hint="--through") from None
    engine = make_engine(get_settings().database_url)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def report(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(f"{name}: storing marks", total=total)
            bar.update(tasks[name], completed=done, total=total)

        try:
            summary = create_demo(
                engine=engine,
                schools=schools,
                through=last,
                seed=seed,
                replace=replace,
                progress=report,
            )
        except DemoDataError as error:
            bar.stop()
            hint = " (--replace does that)" if isinstance(error, DemoSchoolExistsError) else ""
            typer.echo(f"{error}{hint}", err=True)
            raise typer.Exit(1) from None
    print_summary(summary)


def print_summary(summary: DemoSummary) -> None:
    table = Table(
        title=f"Demo data to {summary.through:%a %d/%m/%Y} (seed {summary.seed})",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("School", no_wrap=True)
    for column in ("Pupils", "Contacts", "Marks", "Absence", "PA", "SA"):
        table.add_column(column, justify="right")
    for school in summary.schools:
        figures = school.absence
        table.add_row(
            f"{school.name}\n[dim]{school.urn} · {school.policy}[/dim]",
            f"{school.pupils:,}",
            f"{school.contacts:,}",
            f"{school.marks:,}",
            f"{100 * figures.absence_rate:.1f}%",
            f"{100 * figures.persistent_share:.1f}%",
            f"{100 * figures.severe_share:.1f}%",
        )
    console.print(table)
    for school in summary.schools:
        codes = ", ".join(f"{c} {n:,}" for c, n in school.absence.top_absence_codes(6))
        console.print(f"{school.name}: commonest absence codes {codes or '-'}")
    firsts = {s.first_day for s in summary.schools if s.first_day}
    if firsts:
        console.print(
            f"Register from {min(firsts):%d/%m/%Y} to {summary.through:%d/%m/%Y}. "
            "Absence: share of possible sessions missed; PA: pupils absent 10% or more of "
            "their possible sessions; SA: 50% or more."
        )
