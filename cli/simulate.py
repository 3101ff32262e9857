"""`attend simulate SCENARIO.yaml`: run one pupil's register history and the staff actions in
it through the real workflows on a time-skipping Temporal server of its own, and print the
chronology the school's policy produces (see README, "Policy simulation")."""

import asyncio
import json
import sys
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from policies import PolicyError
from simulation.run import ChronologyRow, SimulationStopped, simulate
from simulation.scenario import ScenarioError, load_scenario

console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)


def simulate_command(
    scenario: Annotated[Path, typer.Argument(help="the scenario file (YAML)")],
    as_json: Annotated[
        bool, typer.Option("--json", help="print the chronology as a JSON list")
    ] = False,
) -> None:
    """Run a pupil's register history and staff actions through the real workflows (on a
    time-skipping Temporal server of its own) and print the resulting chronology."""
    try:
        loaded = load_scenario(scenario)
    except (ScenarioError, PolicyError) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    stopped: SimulationStopped | None = None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    ) as bar:
        task = bar.add_task("school days", total=None)

        def report(done: int, total: int, day: date) -> None:
            bar.update(task, completed=done, total=total, description=f"{day:%a %d/%m/%Y}")

        try:
            rows = asyncio.run(simulate(loaded, progress=report))
        except ScenarioError as error:
            bar.stop()
            typer.echo(str(error), err=True)
            raise typer.Exit(1) from None
        except SimulationStopped as error:
            stopped, rows = error, error.chronology
    if as_json:
        print(json.dumps([asdict(row) for row in rows], indent=1))
    else:
        print_chronology(loaded.source, loaded.description, rows)
    if stopped:
        typer.echo(f"{loaded.source}: stopped at {stopped.where}: {stopped.reason}", err=True)
        raise typer.Exit(1)


def print_chronology(source: str, description: str, rows: list[ChronologyRow]) -> None:
    """Date, kind, what happened and stage; text as written (no console markup)."""
    title = Text(f"{source}: {description or 'chronology'}", style="italic")
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column("Date", no_wrap=True)
    table.add_column("Kind", no_wrap=True)
    table.add_column("What happened", overflow="fold")
    table.add_column("Stage", overflow="fold")
    for row in rows:
        table.add_row(
            f"{date.fromisoformat(row.date):%a %d/%m/%Y}",
            row.kind,
            Text(row.summary),
            Text(row.stage),
        )
    console.print(table)
