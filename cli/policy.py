"""`attend policy`: check a school's policy file, or show a policy in readable form."""

from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.table import Table

from models.policy import FirstDayContact, Ladder, SchoolPolicy, Stage
from policies import PolicyError, list_presets, load_policy

app = typer.Typer(
    help="Check and show school attendance policies (presets: " + ", ".join(list_presets()) + ").",
    no_args_is_help=True,
)

PolicyArg = Annotated[str, typer.Argument(help="a preset name (e.g. all-saints) or a YAML file")]


def _load(name: str) -> SchoolPolicy:
    try:
        return load_policy(name)
    except PolicyError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None


@app.command()
def check(file: PolicyArg) -> None:
    """Validate a policy file; print every problem (field path and reason) if it is wrong."""
    policy = _load(file)
    typer.echo(
        f"OK: {policy.school.name}, {len(policy.thresholds)} thresholds, "
        f"{len(policy.ladders)} ladders"
    )


@app.command()
def show(
    name: PolicyArg,
    as_yaml: Annotated[
        bool, typer.Option("--yaml", help="print the normalised YAML, defaults filled in")
    ] = False,
) -> None:
    """Show a policy: school, register, thresholds, ladders and the absence procedure."""
    policy = _load(name)
    if as_yaml:
        typer.echo(
            yaml.safe_dump(
                policy.model_dump(mode="json", exclude_none=True),
                sort_keys=False,
                allow_unicode=True,
                width=100,
            ),
            nl=False,
        )
        return
    # Policy text is printed as written: square brackets in it are not rich markup.
    console = Console(markup=False, highlight=False)
    school = policy.school
    console.print(
        f"{school.name} ({school.type}, URN {school.urn}, LA {school.la_code}/{school.estab}, "
        f"{school.local_authority})",
        style="bold",
    )
    for person in (
        school.headteacher,
        school.senior_attendance_champion,
        school.designated_safeguarding_lead,
        school.attendance_officer,
    ):
        console.print(f"  {person.role}: {person.name}")
    register = policy.register
    late = " (minutes late recorded)" if register.record_minutes_late else ""
    console.print(
        f"Register ({policy.timezone}): AM {register.am.opens}-{register.am.closes}, "
        f"PM {register.pm.opens}-{register.pm.closes}; {register.late_mark} within the "
        f"window{late}, {register.after_close_mark} after it"
        + (f"; the day ends at {register.day_ends}" if register.day_ends else "")
    )
    if policy.attendance_target is not None:
        console.print(f"Attendance target: {policy.attendance_target:g}%")
    console.print(_thresholds(policy))
    for ladder in policy.ladders:
        console.print(_ladder(ladder))
    console.print(_episode(policy))
    if policy.lateness.on_each_late or policy.lateness.rules:
        for rule in policy.lateness.rules:
            console.print(f"Lateness: when {rule.when}, {rule.by}: " + "; ".join(rule.tasks))
        if policy.lateness.on_each_late:
            console.print("Each late mark: " + ", ".join(policy.lateness.on_each_late))
    if policy.approvals:
        console.print(
            "Approvals: " + ", ".join(f"{step} by {who}" for step, who in policy.approvals.items())
        )
    if not policy.enforcement.own_penalty_notice_ladder:
        console.print(
            f"No penalty-notice ladder of its own: the {policy.enforcement.seeks_la_advice} "
            "seeks the LA's advice"
        )
    if policy.pauses:
        console.print("Pauses: " + ", ".join(p.reason for p in policy.pauses))
    if policy.half_termly_letter:
        console.print(
            f"Every family on the last school day of each half-term: {policy.half_termly_letter}"
        )


def _thresholds(policy: SchoolPolicy) -> Table:
    table = Table(title="Thresholds (checked at every register close)", title_justify="left")
    for column in ("Name", "Condition", "Description"):
        table.add_column(column, overflow="fold")
    for threshold in policy.thresholds:
        table.add_row(threshold.name, threshold.condition, threshold.description)
    return table


def _ladder(ladder: Ladder) -> Table:
    extras = []
    if ladder.review_points:
        extras.append("reviewed " + ", ".join(p.name for p in ladder.review_points))
    if ladder.september_previous_year_pa:
        extras.append("last year's PA pupils enter in September")
    title = f"Ladder {ladder.id}: {ladder.name}" + (f" ({'; '.join(extras)})" if extras else "")
    table = Table(title=title, title_justify="left")
    for column in ("#", "Stage", "Enter when", "Letter", "Meeting", "Review", "Next", "Legal"):
        table.add_column(column, overflow="fold")
    for number, stage in enumerate(ladder.stages, start=1):
        table.add_row(
            str(number),
            f"{stage.id}\n{stage.name}",
            ", ".join(stage.enter_when + (["staff decision"] if stage.staff_decision else [])),
            _letters(stage),
            _meeting(stage),
            stage.review_period or "",
            _moves(stage),
            _legal(stage),
        )
    return table


def _letters(stage: Stage) -> str:
    lines = [stage.letter] if stage.letter else []
    if stage.text_message:
        lines.append(f"text: {stage.text_message}")
    for name, variant in stage.variants.items():
        when = f" if {variant.when}" if variant.when else ""
        lines.append(f"{name}: {variant.letter or '-'}{when}")
    return "\n".join(lines)


def _meeting(stage: Stage) -> str:
    if stage.meeting is None:
        return ""
    text = f"led by {stage.meeting.led_by}"
    if stage.meeting.attendees:
        text += ", with " + ", ".join(stage.meeting.attendees)
    if stage.meeting.invite_la_officer:
        text += ", LA officer invited"
    return text


def _moves(stage: Stage) -> str:
    moves = []
    if stage.on_no_improvement:
        moves.append(f"no improvement: {stage.on_no_improvement}")
    if stage.on_improvement:
        positive = f" ({stage.positive_letter})" if stage.positive_letter else ""
        moves.append(f"improvement: {stage.on_improvement}{positive}")
    return "\n".join(moves)


def _legal(stage: Stage) -> str:
    parts = [] if stage.legal_step == "none" else [str(stage.legal_step)]
    if stage.requires_approval_by:
        parts.append(f"approved by {stage.requires_approval_by}")
    if stage.attendance_contract:
        parts.append("attendance contract")
    if stage.notify:
        parts.append("notify " + ", ".join(stage.notify))
    return "\n".join(parts)


def _episode(policy: SchoolPolicy) -> Table:
    episode = policy.absence_episode
    table = Table(title="Unexplained absence, day by day", title_justify="left")
    for column in ("Pupils", "When", "Actions", "By"):
        table.add_column(column, overflow="fold")
    paths = [("all", episode)]
    paths += [
        (name, v)
        for name, v in (("safeguarding", episode.safeguarding), ("boarders", episode.boarders))
        if v is not None
    ]
    for who, path in paths:
        if who != "all":
            who = f"{who}: " + ", ".join(path.applies_to)
        for contact in path.first_day:
            table.add_row(who, f"day 1, {contact.due or 'then'}", _actions(contact), contact.by)
        for step in path.steps:
            when = f"day {step.day}" + (" and daily after" if step.repeat_daily else "")
            table.add_row(who, when, _actions(step), step.by)
    return table


def _actions(item: FirstDayContact) -> str:
    text = ", ".join(item.actions)
    if item.possible_actions:
        text += " (possibly " + ", ".join(item.possible_actions) + ")"
    return text
