"""`attend case list / show / act` against a real attendance case on the session's
time-skipping dev server, with the worker running and the case's rows in real SQLite.

The commands run as staff run them (the Typer app, settings from ATTEND_* variables), in a
thread of their own since each runs its own event loop.
"""

import asyncio
import json

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from cli.main import app
from models.tables import ChronologyEntry, LegalDecision
from settings import get_settings
from tests.registers import add_pupil, both, register
from tests.test_case import add_parents, start_case, until_stage
from worker import build_worker
from workflows.case import AttendanceCase, ThresholdsChanged


@pytest.fixture
def pupil(engine, school):
    # O both sessions of Mon-Fri 5-9 October: 10 unauthorised sessions in 10 school weeks.
    absent = {}
    for day in ("05", "06", "07", "08", "09"):
        absent |= both(f"2026-10-{day}", "O")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        pupil = add_pupil(session, school.id, 1)
        add_parents(session, pupil.id)
        register(session, school.id, pupil, "2026-09-03", "2026-12-18", absent)
        return pupil


@pytest.fixture
def commands(monkeypatch, engine, temporal_env):
    """The `attend` app pointed at the test's database and the session's server."""
    client = temporal_env.client
    monkeypatch.setenv("ATTEND_DATABASE_URL", str(engine.url))
    monkeypatch.setenv("ATTEND_TEMPORAL_ADDRESS", client.service_client.config.target_host)
    monkeypatch.setenv("ATTEND_TEMPORAL_NAMESPACE", client.namespace)
    get_settings.cache_clear()

    async def attend(*args: str):
        return await asyncio.to_thread(CliRunner().invoke, app, list(args))

    yield attend
    get_settings.cache_clear()


async def test_list_show_and_act_on_a_case(
    temporal_env, engine, settings, school, pupil, task_queue, commands
):
    personal = (pupil.forename, pupil.surname, pupil.upn, "Jane", "John")
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        # Fri 9 Oct: 68 of 78 sessions (87.2%) and 10 unauthorised in 10 school weeks.
        holding = ["below_97", "persistent_absence", "penalty_notice_consideration"]
        handle = await start_case(
            temporal_env,
            school,
            pupil,
            task_queue,
            ThresholdsChanged("2026-10-09", holding, holding),
        )
        case_id = handle.id
        await until_stage(handle, "penalty_notice", "consider_penalty_notice")
        await until_stage(handle, "continued_absence", "concern_letter")

        listed = await commands("case", "list", "--school", school.urn)
        assert listed.exit_code == 0, listed.output
        assert "Consider a penalty notice" in listed.output and "1 case" in listed.output
        assert f"{pupil.forename} {pupil.surname}" in listed.output  # the list staff asked for
        as_json = await commands("case", "list", "--school", school.urn, "--json")
        assert as_json.exit_code == 0, as_json.output
        (record,) = json.loads(as_json.output)
        assert (record["case_id"], record["pupil_id"], record["status"]) == (
            case_id,
            pupil.id,
            "open",
        )
        # The first ladder's next step: four school weeks from Fri 9 Oct (the weeks of 12
        # and 19 Oct, 2 and 9 Nov; half-term not counted).
        assert record["next_action"] == "review on 2026-11-13:continued_absence"
        assert not [word for word in personal if word in as_json.output]  # internal IDs only
        closed = await commands("case", "list", "--school", school.urn, "--status", "closed")
        assert closed.exit_code == 0 and case_id not in closed.output
        wrong = await commands("case", "list", "--school", school.urn, "--status", "shut")
        assert wrong.exit_code != 0 and "one of open, paused, closed" in wrong.output

        shown = await commands("case", "show", case_id, "--json")
        assert shown.exit_code == 0, shown.output
        shown = json.loads(shown.output)
        assert shown["status"]["ladder_stages"] == {
            "continued_absence": "concern_letter",
            "penalty_notice": "consider_penalty_notice",
        }
        assert "decide" in shown["status"]["available_actions"]
        assert "schedule_meeting" not in shown["status"]["available_actions"]
        assert [(e["date"], e["kind"]) for e in shown["chronology"] if e["kind"] == "stage"] == [
            ("2026-10-09", "stage"),
            ("2026-10-09", "stage"),
        ]
        table = await commands("case", "show", case_id)
        assert table.exit_code == 0, table.output
        assert "Letter home" in table.output and "Consider a penalty notice" in table.output

        before = await handle.query(AttendanceCase.status)
        entries = chronology_size(engine, case_id)
        # A legal step is the headteacher's to decide: refused, with the workflow's reason.
        refused = await commands(
            "case", "act", case_id, "decide", "--approve", "--reason", "Ten sessions missed",
            "--by", "D Prodrick", "--role", "attendance_officer",
        )  # fmt: skip
        assert refused.exit_code == 1
        assert "refused: only the headteacher may decide a legal step" in refused.output
        # A step that does not fit the case: no meeting is waiting for an outcome.
        refused_too = await commands(
            "case", "act", case_id, "record_meeting_outcome", "--attended",
            "--targets", "97%", "--by", "Mrs Duncombe", "--role", "senior_attendance_champion",
        )  # fmt: skip
        assert refused_too.exit_code == 1
        assert "refused: nothing in this case is waiting for that step" in refused_too.output
        # An action the case does not have, and a field its action does not take.
        unknown = await commands(
            "case", "act", case_id, "expel", "--by", "Mrs Duncombe", "--role", "headteacher"
        )
        assert unknown.exit_code == 1
        assert "no action 'expel' on AttendanceCase; actions: decide," in unknown.output
        bad_field = await commands(
            "case", "act", case_id, "decide", "--colour", "red", "--reason", "x",
            "--by", "Mrs Duncombe", "--role", "headteacher",
        )  # fmt: skip
        assert bad_field.exit_code == 1
        assert "decide has no field 'colour'" in bad_field.output
        # Nothing changed.
        assert await handle.query(AttendanceCase.status) == before
        assert chronology_size(engine, case_id) == entries

        # The headteacher declines, with the reason; the decision the case waits for is
        # found from its status.
        decided = await commands(
            "case", "act", case_id, "decide", "--no-approve",
            "--reason", "First time [a warning letter instead]",
            "--by", "Mrs Duncombe", "--role", "headteacher",
        )  # fmt: skip
        assert decided.exit_code == 0, decided.output
        assert decided.output.strip() == (
            "Consider a penalty notice: declined by the headteacher: "
            "First time [a warning letter instead]"
        )
        status = await handle.query(AttendanceCase.status)
        assert "decide" not in status.available_actions
        table = await commands("case", "show", case_id)
        # Staff's words as written, brackets too (the table wraps the line).
        assert "First time [a" in table.output and "letter instead]" in table.output
        again = await commands(
            "case", "act", case_id, "decide", "--no-approve", "--reason", "again",
            "--by", "Mrs Duncombe", "--role", "headteacher",
        )  # fmt: skip
        assert again.exit_code == 1
        assert "the case is not waiting for a decision" in again.output

        for result in (refused, refused_too, unknown, bad_field, decided, again):
            assert not [word for word in personal if word in result.output]

    with Session(engine) as session:
        decision = session.exec(select(LegalDecision)).one()
        assert (decision.status, decision.decided_by, decision.reason) == (
            "declined",
            "Mrs Duncombe",
            "First time [a warning letter instead]",
        )
    missing = await commands("case", "show", "attendance-case-0-2026-none")
    assert missing.exit_code == 1
    assert "no case 'attendance-case-0-2026-none'" in missing.output


def chronology_size(engine, case_id: str) -> int:
    with Session(engine) as session:
        return len(
            session.exec(select(ChronologyEntry).where(ChronologyEntry.case_id == case_id)).all()
        )
