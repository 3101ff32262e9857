"""`attend web`: run the web app and manage who may sign in to it."""

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlmodel import Session, select

import web  # noqa: F401  (registers the account tables before the engine creates them)
from database import make_engine
from demo.schools import DEMO_SCHOOLS
from models.tables import School
from settings import get_settings
from web.accounts import (
    ROLE_NAMES,
    AccountError,
    add_user,
    create_demo_users,
    demo_password,
)

app = typer.Typer(help="The web app for school staff.", no_args_is_help=True)
user_app = typer.Typer(help="Accounts that may sign in.", no_args_is_help=True)
app.add_typer(user_app, name="user")
console = Console()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default ATTEND_WEB_HOST (127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="default ATTEND_WEB_PORT (8000)")] = None,
) -> None:
    """Serve the web app (the worker and Temporal run separately, e.g. `attend up`)."""
    from web.server import server

    settings = get_settings()
    console.print(
        f"Web app on http://{host or settings.web_host}:{port or settings.web_port}; "
        "Ctrl-C to stop."
    )
    asyncio.run(server(settings, host=host, port=port).serve())


def _schools(session: Session, wanted: list[str]) -> list[School]:
    found = []
    for urn in wanted:
        school = session.exec(select(School).where(School.urn == urn)).first()
        if school is None:
            raise typer.BadParameter(f"no school with URN {urn}", param_hint="--school")
        found.append(school)
    return found


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="the e-mail address they sign in with")],
    name: Annotated[str, typer.Option(help="their name as the chronology shows it")],
    role: Annotated[str, typer.Option(help="one of: " + ", ".join(ROLE_NAMES))],
    school: Annotated[
        list[str], typer.Option(help="URN of a school they may see (repeat for an LA officer)")
    ],
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, help="asked for if not given"
        ),
    ],
) -> None:
    """Add an account; it sees only the schools given."""
    engine = make_engine(get_settings().database_url)
    with Session(engine) as session:
        schools = _schools(session, school)
        try:
            user = add_user(
                session,
                email=email,
                name=name,
                role=role,
                school_ids=[s.id for s in schools],
                password=password,
            )
        except AccountError as error:
            raise typer.BadParameter(str(error)) from None
        session.commit()
        console.print(
            f"Added {user.email} ({ROLE_NAMES[role]}) for {', '.join(s.name for s in schools)}"
        )


@user_app.command("demo")
def user_demo() -> None:
    """Demo accounts, one per role for each demo school and an LA officer for them all.
    They share one password, made once and kept in ATTEND_WEB_DEMO_ACCOUNTS_FILE."""
    settings = get_settings()
    engine = make_engine(settings.database_url)
    urns = [s.urn for s in DEMO_SCHOOLS.values()]
    with Session(engine) as session:
        schools = session.exec(select(School).where(School.urn.in_(urns)).order_by(School.name))
        schools = list(schools)
        if not schools:
            raise typer.BadParameter("no demo schools in the database: run `attend demo-data`")
        password = demo_password(settings.web_demo_accounts_file)
        accounts = create_demo_users(session, schools=schools, password=password)
    print_demo_accounts(accounts, password)


def print_demo_accounts(accounts, password: str) -> None:
    table = Table(title="Demo accounts (for trying the app: never for real pupils' data)")
    table.add_column("E-mail", overflow="fold")
    table.add_column("Role")
    table.add_column("Schools")
    for account in accounts:
        table.add_row(account.email, ROLE_NAMES[account.role], ", ".join(account.schools))
    console.print(table)
    console.print(f"Password for every demo account: [bold]{password}[/bold]")
