"""`attend simulate`: example scenarios run through the real workflows on the session's
time-skipping dev server, each in a namespace of its own; bad scenario files refused
before anything runs.

Dates are on the demo's calendar (tests/conftest.py). Each expected chronology is worked
out by hand from the school's policy preset and the scenario's register: a case's timers
(reviews, reminders) fire at 06:00, before that day's register, and a step a timer takes
on a day with no school is dated by the next school day, when staff see it.
"""

from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import ListNamespacesRequest
from typer.testing import CliRunner

from cli.main import app
from simulation.run import SimulationStopped, simulate
from simulation.scenario import ScenarioError, load_scenario, parse_scenario

EXAMPLES = Path(__file__).parent.parent / "examples" / "scenarios"


def entries(rows) -> list[tuple[str, str, str]]:
    return [(row.date, row.kind, row.summary) for row in rows]


async def test_sevenoaks_meeting_outcome_late_and_lateness(temporal_env):
    rows = await simulate(load_scenario(EXAMPLES / "sevenoaks.yaml"), env=temporal_env)
    pastoral = "Pastoral support (§3.11, §7.3)"
    assert entries(rows) == [
        # Thu 3, Fri 4 Sep present; ill Mon 7 Sep: 4 of 6 sessions this half-term, 66.7%.
        (
            "2026-09-07",
            "stage",
            f"{pastoral}: Meeting arranged by the Deputy Head Pastoral (over half_term_below_90)",
        ),
        (
            "2026-09-08",
            "meeting",
            "Meeting arranged for 14/09/2026 16:00 with parents, tutor and Divisional Head",
        ),
        # No outcome: a reminder two days after the meeting (Wed 16 Sep); five days after,
        # Sat 19 Sep, passed to the Senior Attendance Champion, seen on Mon 21 Sep.
        ("2026-09-16", "reminder", "No outcome recorded for the meeting on 14/09/2026"),
        (
            "2026-09-21",
            "escalation",
            "Meeting outcome still missing (14/09/2026): passed to the Senior Attendance Champion",
        ),
        # Late on Mon 21, Tue 22 and Wed 23 Sep: three times in a week.
        ("2026-09-23", "lateness", "Lateness: late 3 in week"),
        (
            "2026-09-24",
            "meeting",
            "Meeting on 14/09/2026: attended; support agreed: Tutor check-in each morning",
        ),
        # Late marks are present: 4 sessions missed, Tue 29 Sep 34 of 38 (89.5%), Wed 30 Sep
        # 36 of 40, 90.0%, no longer below 90%.
        ("2026-09-30", "stage", f"{pastoral}: off the ladder (back above the line)"),
    ]
    assert {row.case_id for row in rows} == {"attendance-case-1-2026"}
    assert rows[-1].stage == ""
    assert rows[0].stage == f"{pastoral}: Meeting arranged by the Deputy Head Pastoral"


async def test_springbank_up_to_legal_action_declined(temporal_env):
    rows = await simulate(load_scenario(EXAMPLES / "springbank.yaml"), env=temporal_env)
    ladder = "Persistent Absentees and ATTEND"
    got = entries(rows)
    assert [(day, kind) for day, kind, _ in got] == [
        ("2026-09-07", "stage"),
        ("2026-09-07", "letter"),
        ("2026-09-16", "stage"),
        ("2026-09-16", "letter"),
        ("2026-09-30", "stage"),
        ("2026-09-30", "letter"),
        ("2026-09-30", "meeting"),
        ("2026-10-05", "meeting"),
        ("2026-10-05", "stage"),
        ("2026-10-05", "notify"),
        ("2026-10-06", "decision"),
    ]
    stages = [summary for _, kind, summary in got if kind == "stage"]
    assert stages == [
        # Ill Mon 7 Sep: 4 of 6 sessions, 66.7%, below 93%; too few sessions for PA.
        f"{ladder}: Warning text (over below_93)",
        # Wed 16 Sep, 20 sessions: 14 present (ill 7, 8, 14 Sep), 70%, persistently absent.
        f"{ladder}: Stage 1: Persistent Absentee letter (over persistent_absence)",
        # Two school weeks on, Wed 30 Sep before its register: 16-29 Sep 12 of 20 sessions
        # (ill 21, 22, 28, 29 Sep), 60.0%, below the 66.7% (12 of 18) before: Stage 2.
        f"{ladder}: Stage 2: ATTEND meeting (no improvement (60.0% since 2026-09-16))",
        f"{ladder}: Legal action (did not attend the meeting)",
    ]
    letters = [summary for _, kind, summary in got if kind == "letter"]
    assert letters[0].startswith("Text message to Ms Jo Example ready for staff to send")
    assert "66.7%, below 93%" in letters[0]
    assert "(springbank/stage_1) queued for post to Ms Jo Example" in letters[1]
    assert "(springbank/stage_2) queued for post to Ms Jo Example" in letters[2]
    assert got[-1][2] == (
        "Legal action: declined by the headteacher: The absence is illness; the family now "
        "works with the school nurse"
    )
    # Declined: the case stays at legal action and nothing goes to the LA.
    assert rows[-1].stage == f"{ladder}: Legal action"
    assert not [row for row in rows if row.kind in ("legal", "return")]


REFUSED = """\
policy: sevenoaks
pupil: {name: Sam Example, year_group: 10}
register:
  from: 2026-09-03
  to: 2026-09-09
  marks:
    2026-09-07: I
actions:
  2026-09-08:
    - record_contract: {signed_on: 2026-09-08, by: Mrs Hart, role: attendance_officer}
"""


async def test_a_step_the_case_refuses_stops_the_run_with_its_reason(temporal_env):
    # Mon 7 Sep: below 90% this half-term, the pastoral meeting; the rung has no contract.
    with pytest.raises(SimulationStopped) as stopped:
        await simulate(parse_scenario(REFUSED, source="contract.yaml"), env=temporal_env)
    assert stopped.value.where == "line 10, 2026-09-08 record_contract"
    assert stopped.value.reason == "refused: nothing in this case is waiting for that step"
    # The chronology up to the refused step: the stage of Mon 7 Sep, nothing after.
    assert [(row.date, row.kind) for row in stopped.value.chronology] == [("2026-09-07", "stage")]


GOOD = """\
policy: springbank
pupil: {name: Kai Example, year_group: 5}
register:
  from: 2026-09-03
  to: 2026-09-30
  marks:
    2026-09-07: I
actions:
  2026-09-30:
    - schedule_meeting: {when: "2026-10-05T15:30", with_whom: parents, by: J K,
                         role: attendance_officer}
"""


def test_a_good_scenario_parses():
    scenario = parse_scenario(GOOD)
    assert scenario.policy == "springbank"
    assert (scenario.forename, scenario.surname, scenario.year_group) == ("Kai", "Example", 5)
    assert scenario.code(scenario.first_day, "AM") == "/"
    assert scenario.code(scenario.first_day, "PM") == "\\"
    assert [a.name for a in scenario.actions] == ["schedule_meeting"]
    assert scenario.actions[0].line == 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("    2026-09-07: I", "    2026-09-07: H"), "line 7: register: marks: 2026-09-07: 'H' "),
        (("policy: springbank", "policy: springfield"), "line 1: policy: "),
        (("    2026-09-07: I", "    2026-09-31: I"), "line 7: register: marks: '2026-09-31' "),
        (("  to: 2026-09-30", "  to: 30/09/2026"), "line 5: register: to: '30/09/2026' is not"),
        (
            ("    - schedule_meeting", "    - arrange_meeting"),
            "line 10: 2026-09-30 arrange_meeting: no action 'arrange_meeting'",
        ),
        (
            ("with_whom: parents", "with: parents"),
            "line 10: 2026-09-30 schedule_meeting: schedule_meeting has no field 'with'",
        ),
        (
            ("  2026-09-30:\n", "  2026-10-30:\n"),
            "line 9: actions: 2026-10-30 is outside the register's dates",
        ),
        (("pupil:", "pupils:"), "line 2: unknown section 'pupils'"),
    ],
)
def test_a_bad_scenario_is_refused_naming_the_line(change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(GOOD.replace(old, new), source="bad.yaml")
    assert message in str(refused.value)
    assert str(refused.value).startswith("bad.yaml: line ")


def test_every_problem_is_listed_at_once():
    bad = GOOD.replace("2026-09-07: I", "2026-09-07: H").replace("year_group: 5", "year_group: x")
    with pytest.raises(ScenarioError) as refused:
        parse_scenario(bad)
    assert len(refused.value.problems) == 2


async def test_a_day_without_school_is_refused_before_anything_runs(temporal_env):
    # Sat 5 Sep is no school day: found from the school's calendar, before any workflow.
    text = GOOD.replace("  2026-09-30:\n", "  2026-09-05:\n")
    before = await namespaces(temporal_env)
    with pytest.raises(ScenarioError) as refused:
        await simulate(parse_scenario(text, source="weekend.yaml"), env=temporal_env)
    assert "line 10: 2026-09-05 schedule_meeting: not a school day at this school" in str(
        refused.value
    )
    assert await namespaces(temporal_env) == before  # no namespace made for a run


async def namespaces(env) -> set[str]:
    found = await env.client.workflow_service.list_namespaces(ListNamespacesRequest())
    return {n.namespace_info.name for n in found.namespaces}


def test_the_command_refuses_a_bad_file_with_its_line_and_runs_nothing(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("2026-09-07: I", "2026-09-07: H"))
    result = CliRunner().invoke(app, ["simulate", str(path), "--json"])
    assert result.exit_code == 1
    assert "bad.yaml: line 7: register: marks: 2026-09-07: 'H' is not a national register code" in (
        result.output
    )
    assert "[" not in result.output  # no chronology: nothing ran


EPISODE = """\
policy: st-barnabas
pupil: {name: Eve Example, year_group: 2}
parents:
  - {name: Jane Example, relationship: Mother, phone: "07700 900001", address: 1 Quarry Road,
     postcode: TN1 2EY}
register:
  from: 2026-09-03
  to: 2026-09-10
  marks:
    2026-09-08: N
    2026-09-09: N
actions:
  2026-09-08:
    - record_contact: {outcome: no_answer, by: Office, role: office_staff}
  2026-09-09:
    - record_contact: {outcome: contact_made, reason: Chickenpox, code: I, by: Office,
                       role: office_staff}
"""


async def test_an_absence_episode_is_acted_on_and_closes_on_contact(temporal_env):
    rows = await simulate(parse_scenario(EPISODE, source="episode.yaml"), env=temporal_env)
    episode = [
        (row.date, row.kind, row.summary)
        for row in rows
        if row.case_id == "absence-1-2026-09-08" and row.kind != "reminder"
    ]
    assert episode == [
        ("2026-09-08", "absence", "Day 1 of unexplained absence"),
        ("2026-09-08", "contact", "Phone: no answer"),
        ("2026-09-09", "absence", "Day 2 of unexplained absence"),
        ("2026-09-09", "contact", "Phone: contact made (Chickenpox)"),
        (
            "2026-09-09",
            "register",
            "4 session(s) amended from N to I (illness (not medical or dental appointment))",
        ),
        (
            "2026-09-09",
            "closed",
            "Episode closed: contact made with parent/carer: Chickenpox (register I)",
        ),
    ]
    # Tue 8 Sep: N both sessions, 4 of 6 sessions present (66.7%), below 97%.
    assert ("2026-09-08", "stage", "If absence continues: Letter home (over below_97)") in [
        (row.date, row.kind, row.summary) for row in rows
    ]
