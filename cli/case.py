"""`attend case`: the open cases of a school, one case's status and chronology, and staff
actions on a case.

An action is a workflow Update, named as the Update is, with the fields of its input
(`attend case act CASE_ID schedule_meeting --when 2026-12-15T15:30 --with-whom "both
parents" --by "Mrs Duncombe" --role senior_attendance_champion`, or `when=...`). The
actions are read from the workflows themselves (simulation/actions.py): a new Update is a
new action with no change here. A step the workflow refuses prints the validator's reason
and exits with 1.
"""

import asyncio
import json
import sys
import typing
from dataclasses import asdict, is_dataclass
from datetime import timedelta
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from database import make_engine
from models.tables import CaseRecord, ChronologyEntry, Pupil
from settings import get_settings
from simulation.actions import (
    CASE_WORKFLOWS,
    FALSE_WORDS,
    TRUE_WORDS,
    Action,
    ActionError,
    all_actions,
    decision_key_from,
    find_action,
)

app = typer.Typer(no_args_is_help=True, help="List, show and act on attendance cases.")
console = Console(width=None if sys.stdout.isatty() else 200)
QUERY_TIMEOUT = timedelta(seconds=10)
STATUSES = ("open", "paused", "closed")


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


def _engine():
    return make_engine(get_settings().database_url)


async def _client() -> Client:
    settings = get_settings()
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)


@app.command("list")
def list_cases(
    school: Annotated[str, typer.Option(help="URN, name or policy name of the school")],
    status: Annotated[
        str | None, typer.Option(help="open, paused or closed; default open and paused")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help="attendance_case or absence_episode; default both")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (internal IDs only)")] = False,
) -> None:
    """A school's cases, most recently updated first."""
    from cli.main import find_school

    if status and status not in STATUSES:
        raise typer.BadParameter(f"one of {', '.join(STATUSES)}", param_hint="--status")
    if kind and kind not in CASE_WORKFLOWS:
        raise typer.BadParameter(f"one of {', '.join(CASE_WORKFLOWS)}", param_hint="--kind")
    with Session(_engine()) as session:
        found = find_school(session, school)
        query = (
            select(CaseRecord, Pupil)
            .join(Pupil, Pupil.id == CaseRecord.pupil_id)
            .where(CaseRecord.school_id == found.id)
            .order_by(CaseRecord.updated_at.desc())
        )
        if status:
            query = query.where(CaseRecord.status == status)
        else:
            query = query.where(CaseRecord.status != "closed")
        if kind:
            query = query.where(CaseRecord.kind == kind)
        rows = session.exec(query).all()
    if as_json:
        print(json.dumps([_record(record) for record, _ in rows], indent=1))
        return
    table = Table(title=f"{found.name}: {status or 'open'} cases", box=box.SIMPLE_HEAD)
    for column in ("Case ID", "UPN", "Pupil", "Kind", "Status", "Stage", "Next action", "Opened"):
        table.add_column(column, overflow="fold")
    for record, pupil in rows:
        table.add_row(
            *(
                Text(cell)  # as written: a name or stage is never read as console markup
                for cell in (
                    record.case_id,
                    pupil.upn,
                    f"{pupil.forename} {pupil.surname}",
                    record.kind.replace("_", " "),
                    record.status,
                    record.stage,
                    record.next_action,
                    f"{record.opened_on:%d/%m/%Y}",
                )
            )
        )
    console.print(table)
    console.print(f"{len(rows)} case{'s' if len(rows) != 1 else ''}")


def _record(record: CaseRecord) -> dict[str, Any]:
    return {
        "case_id": record.case_id,
        "school_id": record.school_id,
        "pupil_id": record.pupil_id,
        "kind": record.kind,
        "status": record.status,
        "stage": record.stage,
        "next_action": record.next_action,
        "next_due": record.next_due.isoformat() if record.next_due else None,
        "opened_on": record.opened_on.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "closed_reason": record.closed_reason,
    }


def _workflow_of(workflow_type: str) -> type:
    for workflow in CASE_WORKFLOWS.values():
        if workflow.__name__ == workflow_type:
            return workflow
    _fail(f"a {workflow_type} workflow is not a case")


async def _status(case_id: str) -> tuple[Any, str]:
    """The workflow's status query, or None and why not."""
    client = await _client()
    handle = client.get_workflow_handle(case_id)
    try:
        workflow = _workflow_of((await handle.describe()).workflow_type)
        return await handle.query(workflow.status, rpc_timeout=QUERY_TIMEOUT), ""
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None, "no such workflow on the Temporal server"
        return None, f"the workflow did not answer ({error.message})"


@app.command()
def show(
    case_id: Annotated[str, typer.Argument(help="the case ID (its workflow ID)")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """One case: where the workflow stands (its status query) and its chronology."""
    with Session(_engine()) as session:
        record = session.get(CaseRecord, case_id)
        entries = session.exec(
            select(ChronologyEntry)
            .where(ChronologyEntry.case_id == case_id)
            .order_by(ChronologyEntry.on_day, ChronologyEntry.id)
        ).all()
        pupil = session.get(Pupil, record.pupil_id) if record else None
    try:
        status, why = asyncio.run(_status(case_id))
    except RuntimeError as error:  # the server is not there at all
        status, why = None, str(error)
    if record is None and status is None:
        _fail(f"no case {case_id!r} ({why})")
    status_dict = asdict(status) if is_dataclass(status) else status
    if as_json:
        print(
            json.dumps(
                {
                    "case": _record(record) if record else None,
                    "status": status_dict,
                    "status_unavailable": why or None,
                    "chronology": [
                        {
                            "date": e.on_day.isoformat(),
                            "kind": e.kind,
                            "summary": e.summary,
                            "stage": e.stage,
                            "actor": e.actor,
                            "role": e.role,
                        }
                        for e in entries
                    ],
                },
                indent=1,
            )
        )
        return
    if record and pupil:
        console.print(
            f"{case_id}: {record.kind.replace('_', ' ')} for {pupil.forename} {pupil.surname} "
            f"(UPN {pupil.upn}), opened {record.opened_on:%d/%m/%Y}, {record.status}",
            style="bold",
            markup=False,
        )
    if status_dict is None:
        console.print(f"Workflow status not available: {why}", markup=False)
    else:
        for key, value in status_dict.items():
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value) or "-"
            elif isinstance(value, dict):
                value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
            console.print(f"  {key.replace('_', ' ')}: {value}", markup=False, highlight=False)
    table = Table(title="Chronology", box=box.SIMPLE_HEAD, title_justify="left")
    for column in ("Date", "Kind", "What happened", "By", "Stage"):
        table.add_column(column, overflow="fold")
    for e in entries:
        by = e.actor + (f" ({e.role.replace('_', ' ')})" if e.role else "")
        # Summaries carry staff's own words: shown as written, never as console markup.
        table.add_row(*(Text(c) for c in (f"{e.on_day:%d/%m/%Y}", e.kind, e.summary, by, e.stage)))
    console.print(table)


def parse_fields(args: list[str], action: Action) -> dict[str, str | bool]:
    """`--field value`, `--field=value`, `field=value`; a true/false field may be given
    as `--field` or `--no-field`."""
    hints = typing.get_type_hints(action.input_type)
    values: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            field = name.replace("-", "_")
            negated = field.startswith("no_") and hints.get(field[3:]) is bool
            if eq:
                values[field] = value
            elif negated or hints.get(field) is bool:
                following = args[i + 1].lower() if i + 1 < len(args) else ""
                if following in TRUE_WORDS + FALSE_WORDS:
                    values[field] = following
                    i += 1
                else:
                    values[field[3:] if negated else field] = not negated
            elif i + 1 < len(args):
                values[field] = args[i + 1]
                i += 1
            else:
                raise ActionError(f"--{name} needs a value")
        elif "=" in arg:
            name, _, value = arg.partition("=")
            values[name.replace("-", "_")] = value
        else:
            raise ActionError(f"{arg!r}: give fields as --field value or field=value")
        i += 1
    return values


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def act(
    ctx: typer.Context,
    case_id: Annotated[str, typer.Argument(help="the case ID (its workflow ID)")],
    action: Annotated[
        str,
        typer.Argument(help="the action: " + ", ".join(sorted(all_actions()))),
    ],
    by: Annotated[str, typer.Option(help="who is acting (name as it goes in the chronology)")],
    role: Annotated[str, typer.Option(help="their role, e.g. attendance_officer, headteacher")],
) -> None:
    """Act on a case: run the workflow Update named ACTION with the fields given as
    `--field value` or `field=value`. A refused step prints the reason and exits with 1.
    `decide` finds the decision the case waits for when no decision_key is given."""
    try:
        summary = asyncio.run(_act(case_id, action, by, role, ctx.args))
    except ActionError as error:
        _fail(str(error))
    typer.echo(summary)


async def _act(case_id: str, name: str, by: str, role: str, args: list[str]) -> str:
    client = await _client()
    handle = client.get_workflow_handle(case_id)
    try:
        workflow = _workflow_of((await handle.describe()).workflow_type)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise ActionError(f"no case {case_id!r} on the Temporal server") from None
        raise
    found = find_action(name, workflow)
    values: dict[str, Any] = parse_fields(args, found)
    values |= {"by": by, "role": role}
    if found.name == "decide" and "decision_key" not in values:
        status = await handle.query(workflow.status, rpc_timeout=QUERY_TIMEOUT)
        values["decision_key"] = decision_key_from(status.awaiting)
    step = found.make_input(values)
    try:
        result = await handle.execute_update(found.name, step)
    except WorkflowUpdateFailedError as error:
        cause = getattr(error.cause, "message", None) or str(error.cause or error)
        raise ActionError(f"refused: {cause}") from None
    except RPCError as error:
        raise ActionError(f"not done: {error.message}") from None
    if isinstance(result, dict) and "summary" in result:
        return str(result["summary"])
    return json.dumps(result) if result is not None else f"{found.name}: done"
