"""School policies as validated data: the presets hold the seeds' numbers, thresholds hold
on hand-made figures, and a wrong file is refused with the field path and the reason."""

import dataclasses
import os
from dataclasses import fields
from datetime import date

import pytest
import yaml
from typer.testing import CliRunner

from cli.policy import app
from models.figures import FigureRules, PupilFigures
from models.policy import NATIONAL_THRESHOLD_NAMES, Figures, National, national_thresholds
from policies import PRESETS_DIR, PolicyError, list_presets, load_policy, policy_from_yaml

PRESETS = ["all-saints", "sevenoaks", "springbank", "st-barnabas"]


def pupil(**changes) -> PupilFigures:
    """A pupil with full attendance and nothing outstanding, changed where the test says."""
    steady = PupilFigures(
        pupil_id=1,
        as_of=date(2026, 11, 25),
        possible_year=100,
        present_year=100,
        authorised_year=0,
        unauthorised_year=0,
        unexplained_year=0,
        rate_year=100.0,
        possible_half_term=30,
        rate_half_term=100.0,
        rate_short_window=100.0,
        rate_rolling_window=100.0,
        unauthorised_rolling_window=0,
        persistent_absence=False,
        severe_absence=False,
        unauthorised_run_days=0,
        illness_days_year=0,
        overdue_unexplained=0,
        late_this_week=0,
    )
    return dataclasses.replace(steady, **changes)


def preset_data(name: str) -> dict:
    return yaml.safe_load((PRESETS_DIR / f"{name}.yaml").read_text(encoding="utf-8"))


def refused(data: dict | str) -> str:
    """The message of the PolicyError a policy is refused with."""
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(PolicyError) as caught:
        policy_from_yaml(text, source="school.yaml")
    return str(caught.value)


def stage(data: dict, ladder_id: str, stage_id: str) -> dict:
    ladder = next(ladder for ladder in data["ladders"] if ladder["id"] == ladder_id)
    return next(s for s in ladder["stages"] if s["id"] == stage_id)


def threshold(data: dict, name: str) -> dict:
    return next(t for t in data["thresholds"] if t["name"] == name)


# --------------------------------------------------------------------------- presets


def test_the_four_seed_schools_are_presets():
    assert list_presets() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_with_the_national_thresholds(name):
    policy = load_policy(name)
    national = national_thresholds(National())
    names = [t.name for t in policy.thresholds]
    assert set(NATIONAL_THRESHOLD_NAMES) <= set(names)
    for each in NATIONAL_THRESHOLD_NAMES:
        figure, op, value, _ = national[each]
        found = policy.threshold(each)
        assert (found.figure, found.op, found.value) == (figure, op, value)
    assert policy.national == National()  # no preset changes a national rule
    assert policy.timezone == "Europe/London"
    assert load_policy(PRESETS_DIR / f"{name}.yaml") is policy  # cached by resolved path


def test_figures_are_exactly_the_figure_rules():
    assert list(Figures.model_fields) == [f.name for f in fields(FigureRules)]
    assert load_policy("all-saints").figure_rules() == FigureRules(
        persistent_absence_rate=10,
        severe_absence_rate=50,
        persistent_absence_min_possible=20,
        rolling_school_weeks=10,
        short_window_school_weeks=4,
        unexplained_resolution_school_days=5,
    )


def test_st_barnabas():
    policy = load_policy("st-barnabas")
    assert (policy.register.am.opens, policy.register.am.closes) == ("08:45", "09:00")
    assert policy.threshold("below_97").condition == "rate_year < 97"
    ladder = policy.ladder("continued_absence")
    assert [s.id for s in ladder.stages] == [
        "concern_letter",
        "sac_meeting",
        "support_plan",
        "la_referral",
    ]
    assert ladder.stages[0].enter_when == ["below_97"]
    assert ladder.stage("sac_meeting").meeting.led_by == "senior_attendance_champion"
    assert ladder.stage("support_plan").attendance_contract
    assert ladder.stage("la_referral").requires_approval_by == "headteacher"
    episode = policy.absence_episode
    assert episode.day_of("cme_referral") == 10
    assert episode.parents_report_by == "09:00"
    assert episode.safeguarding.day_of("cme_referral") < 10  # "or sooner"
    assert policy.school.senior_attendance_champion.name == "Mrs Duncombe"


def test_all_saints():
    policy = load_policy("all-saints")
    register = policy.register
    assert (register.am.opens, register.am.closes) == ("08:55", "09:25")
    assert (register.pm.opens, register.pm.closes) == ("13:00", "13:10")
    assert policy.attendance_target == 96
    rates = {t.name: (t.op, t.value) for t in policy.thresholds if t.figure == "rate_year"}
    assert rates == {
        "at_or_below_96": ("<=", 96),
        "below_96": ("<", 96),
        "below_95": ("<", 95),
        "below_90": ("<", 90),
        "below_85": ("<", 85),
    }
    assert policy.figures.persistent_absence_min_possible == 20
    assert policy.figures.unexplained_resolution_school_days == 5  # "after a week"
    assert policy.absence_episode.first_day[0].due == "09:30"
    assert policy.absence_episode.written_explanation.consecutive_school_days_over == 3

    monitoring = policy.ladder("monitoring")
    assert monitoring.stage("monitored").enter_when == ["below_90"]
    periods = [s.monitoring_school_weeks for s in monitoring.stages if s.monitoring_school_weeks]
    # §11: monitored for two weeks, targets reviewed after two weeks, then four and four.
    assert periods == [2, 2, 4, 4]
    assert monitoring.stage("parenting_contract").attendance_contract
    assert monitoring.stage("final_warning").legal_step == "formal_warning"

    stages = policy.ladder("stages")
    assert [s.id for s in stages.stages] == [f"stage_{n}" for n in range(1, 6)]
    assert [p.name for p in stages.review_points] == [
        "October",
        "December",
        "February",
        "April",
        "May-June",
    ]
    assert stages.september_previous_year_pa
    stage_1 = stages.stage("stage_1")
    assert stage_1.enter_when == ["below_95"]
    assert {n: v.letter for n, v in stage_1.variants.items()} == {
        "1b": "all_saints/stage_1b",
        "1a": "all_saints/stage_1a",
    }
    assert stages.stage("stage_3").meeting.led_by == "headteacher"
    for legal in ("stage_4", "stage_5"):
        assert stages.stage(legal).requires_approval_by == "headteacher"
    assert "governors_anonymously" in stages.stage("stage_5").notify
    assert stages.stage("stage_2").on_improvement == "stage_1"


def test_sevenoaks():
    policy = load_policy("sevenoaks")
    register = policy.register
    assert (register.am.opens, register.pm.opens) == ("08:30", "14:25")
    assert register.am.window_minutes == register.pm.window_minutes == 30
    assert register.record_minutes_late
    assert policy.threshold("half_term_below_90").condition == "rate_half_term < 90"
    assert policy.threshold("late_3_in_week").condition == "late_this_week >= 3"
    [rule] = policy.lateness.rules
    assert (rule.when, rule.by) == ("late_3_in_week", "tutor")
    meeting = policy.ladder("pastoral").stage("pastoral_meeting")
    assert meeting.enter_when == ["half_term_below_90"]
    assert meeting.meeting.led_by == "senior_attendance_champion"
    assert policy.school.senior_attendance_champion.role.startswith("Deputy Head Pastoral")
    # Independent: no penalty-notice ladder of its own; the DSL seeks the LA's advice.
    assert policy.school.type == "independent"
    assert not policy.enforcement.own_penalty_notice_ladder
    assert policy.enforcement.seeks_la_advice == "designated_safeguarding_lead"
    assert all(s.legal_step == "none" for ladder in policy.ladders for s in ladder.stages)
    assert policy.absence_episode.first_day[0].actions == [
        "ask_tutor",
        "ask_divisional_head",
        "ask_health_centre",
    ]
    assert policy.absence_episode.boarders.applies_to == ["boarder"]


def test_springbank():
    policy = load_policy("springbank")
    assert (policy.register.am.opens, policy.register.am.closes) == ("09:00", "09:15")
    assert policy.attendance_target == 95
    assert policy.threshold("below_93").condition == "rate_year < 93"
    ladder = policy.ladder("persistent_absentees")
    assert ladder.stage("warning_text").enter_when == ["below_93"]
    assert ladder.stage("warning_text").text_message == "springbank/warning_below_93"
    assert ladder.stage("stage_1").enter_when == ["persistent_absence"]
    assert ladder.stage("stage_1").on_no_improvement == "stage_2"
    assert ladder.stage("stage_2").meeting.purpose == "ATTEND meeting"
    assert ladder.stage("stage_2").on_no_improvement == "legal_action"
    episode = policy.absence_episode
    assert [(c.due, c.actions) for c in episode.first_day] == [
        ("10:30", ["text_parents"]),
        ("12:00", ["call_parents"]),
    ]
    by_day = {s.day: set(s.actions) for s in episode.steps}
    assert {"home_visit", "calling_card"} <= by_day[1]
    assert by_day[2] == {"home_visit", "calling_card"}
    assert episode.day_of("missing_persons_referral") == 3
    assert by_day[4] == {"wider_search", "daily_contact_attempts"}
    assert episode.safeguarding.day_of("missing_persons_referral") < 3
    assert policy.lateness.on_each_late == ["text_parents"]


# --------------------------------------------------------------------------- thresholds


def test_a_rate_of_96_5_is_below_97_but_not_below_96():
    st_barnabas, all_saints = load_policy("st-barnabas"), load_policy("all-saints")
    figures = pupil(rate_year=96.5)
    assert st_barnabas.thresholds_holding(figures) == ["below_97"]
    assert all_saints.threshold("below_96").holds(figures) is False
    assert all_saints.threshold("at_or_below_96").holds(pupil(rate_year=96.0))
    assert all_saints.thresholds_holding(pupil(rate_year=89.9)) == [
        "at_or_below_96",
        "below_96",
        "below_95",
        "below_90",
    ]


def test_a_figure_with_no_possible_sessions_never_holds():
    policy = load_policy("st-barnabas")
    assert policy.thresholds_holding(pupil(rate_year=None, rate_half_term=None)) == []
    sevenoaks = load_policy("sevenoaks")
    assert not sevenoaks.threshold("half_term_below_90").holds(pupil(rate_half_term=None))
    assert sevenoaks.threshold("half_term_below_90").holds(pupil(rate_half_term=89.0))


def test_ten_unauthorised_sessions_in_the_window_is_the_penalty_threshold():
    policy = load_policy("springbank")
    assert "penalty_notice_consideration" in policy.thresholds_holding(
        pupil(unauthorised_rolling_window=10)
    )
    assert policy.thresholds_holding(pupil(unauthorised_rolling_window=9)) == []


def test_national_thresholds_hold_on_their_figures():
    policy = load_policy("sevenoaks")
    assert policy.thresholds_holding(
        pupil(
            persistent_absence=True,
            unauthorised_run_days=10,
            illness_days_year=15,
            overdue_unexplained=1,
            late_this_week=3,
        )
    ) == [
        "late_3_in_week",
        "attendance_return",
        "sickness_return",
        "persistent_absence",
        "unexplained_overdue",
    ]
    assert policy.thresholds_holding(pupil(illness_days_year=14.5, late_this_week=2)) == []


# --------------------------------------------------------------------------- refusals


def test_unknown_figure_is_refused():
    data = preset_data("st-barnabas")
    threshold(data, "below_97")["figure"] = "rate_yr"
    message = refused(data)
    assert "thresholds[0].figure: no figure named 'rate_yr' (did you mean 'rate_year'?)" in message


def test_unknown_threshold_in_a_stage_is_refused():
    data = preset_data("all-saints")
    stage(data, "stages", "stage_1")["enter_when"] = ["below_59"]
    assert "ladders[1].stages[0].enter_when[0]: no threshold named 'below_59'" in refused(data)


def test_unknown_next_stage_is_refused():
    data = preset_data("all-saints")
    stage(data, "stages", "stage_2")["on_no_improvement"] = "stage_9"
    assert "ladders[1].stages[1].on_no_improvement: no stage named 'stage_9'" in refused(data)


def test_escalating_backwards_is_refused():
    data = preset_data("all-saints")
    stage(data, "stages", "stage_3")["on_no_improvement"] = "stage_1"
    message = refused(data)
    assert "ladders[1].stages[2].on_no_improvement: escalation moves up the ladder" in message


def test_bad_time_is_refused():
    data = preset_data("springbank")
    data["register"]["am"]["closes"] = "9.15"
    message = refused(data)
    assert "register.am.closes: '9.15' is not a time" in message
    assert "HH:MM" in message


def test_closes_before_opens_is_refused():
    data = preset_data("all-saints")
    data["register"]["pm"]["closes"] = "12:50"
    assert "register.pm.closes: the register closes at 12:50, before it opens at 13:00" in refused(
        data
    )


def test_misspelt_key_is_refused():
    data = preset_data("all-saints")
    data["thresholds"][0]["fgure"] = data["thresholds"][0].pop("figure")
    message = refused(data)
    assert "thresholds[0].fgure: unknown key 'fgure' (did you mean 'figure'?)" in message
    assert "thresholds[0].figure: required, but missing" in message


def test_unknown_role_is_refused_with_a_suggestion():
    data = preset_data("springbank")
    data["absence_episode"]["steps"][0]["by"] = "office"
    message = refused(data)
    assert "absence_episode.steps[0].by: Input should be 'headteacher'" in message
    assert "(did you mean 'office_staff'?)" in message


def test_percentage_of_120_is_refused():
    data = preset_data("all-saints")
    threshold(data, "below_90")["value"] = 120
    data["figures"]["persistent_absence_rate"] = 120
    message = refused(data)
    assert "thresholds[3].value: a percentage is between 0 and 100, not 120" in message
    assert "figures.persistent_absence_rate: a percentage is between 0 and 100, not 120" in message


def test_negative_day_count_is_refused():
    data = preset_data("st-barnabas")
    data["absence_episode"]["written_explanation"] = {"consecutive_school_days_over": -3}
    data["absence_episode"]["steps"][0]["day"] = 0
    message = refused(data)
    assert (
        "absence_episode.written_explanation.consecutive_school_days_over: "
        "a count of days, weeks or sessions cannot be negative (-3)" in message
    )
    assert "absence_episode.steps[0].day: days of absence count from 1" in message


def test_duplicate_names_are_refused():
    data = preset_data("springbank")
    data["thresholds"].append(dict(data["thresholds"][0]))
    stages = data["ladders"][0]["stages"]
    stages[1]["id"] = "warning_text"
    message = refused(data)
    assert "thresholds[7].name: threshold 'below_93' is already at thresholds[0]" in message
    assert "ladders[0].stages[1].id: stage 'warning_text' is already at stages[0]" in message


def test_a_national_threshold_must_match_the_national_rule():
    data = preset_data("st-barnabas")
    threshold(data, "penalty_notice_consideration")["value"] = 8
    data["thresholds"] = [t for t in data["thresholds"] if t["name"] != "sickness_return"]
    message = refused(data)
    assert (
        "thresholds[1]: the national threshold 'penalty_notice_consideration' is "
        "unauthorised_rolling_window >= 10" in message
    )
    assert "thresholds: the national threshold 'sickness_return' is missing" in message


def test_a_legal_step_needs_the_headteacher_or_the_champion():
    data = preset_data("all-saints")
    stage(data, "stages", "stage_4")["requires_approval_by"] = "class_teacher"
    del stage(data, "stages", "stage_5")["requires_approval_by"]
    message = refused(data)
    assert "ladders[1].stages[3].requires_approval_by: the legal step formal_warning" in message
    assert "not class_teacher" in message
    assert "ladders[1].stages[4].requires_approval_by" in message


def test_an_independent_school_takes_no_penalty_notice_step_of_its_own():
    data = preset_data("sevenoaks")
    stage(data, "pastoral", "la_advice").update(
        legal_step="penalty_notice_request", requires_approval_by="headteacher"
    )
    data["approvals"] = {"penalty_notice_request": "headteacher"}
    message = refused(data)
    assert "ladders[0].stages[1].legal_step: penalty_notice_request is not taken" in message


def test_yaml_syntax_error_gives_the_line():
    text = (PRESETS_DIR / "sevenoaks.yaml").read_text(encoding="utf-8")
    line = text[: text.index("timezone:")].count("\n") + 1
    message = refused(text.replace("timezone: Europe/London", "timezone: Europe: London"))
    assert f"line {line}, column 17: YAML syntax error: mapping values are not allowed" in message


def test_a_key_given_twice_is_refused():
    text = (PRESETS_DIR / "springbank.yaml").read_text(encoding="utf-8")
    message = refused(text.replace("timezone: Europe/London", "timezone: Europe/London\n" * 2))
    assert "the key 'timezone' is given twice" in message


def test_problems_name_the_line_they_are_on(tmp_path):
    data = preset_data("sevenoaks")
    threshold(data, "late_3_in_week")["op"] = "=<"
    path = tmp_path / "sevenoaks.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    line = path.read_text().splitlines().index("  op: =<") + 1
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert caught.value.problems == [
        f"thresholds[1].op: Input should be '<', '<=', '>', '>=' or '==' (line {line})"
    ]


def test_unquoted_times_stay_times():
    text = (PRESETS_DIR / "all-saints.yaml").read_text(encoding="utf-8")
    policy = policy_from_yaml(text.replace('closes: "13:10"', "closes: 13:10"))
    assert policy.register.pm.closes == "13:10"  # YAML 1.1 alone would read 790


def test_no_such_preset_or_file():
    with pytest.raises(PolicyError) as caught:
        load_policy("all-saint")
    assert "no such preset or file (did you mean 'all-saints'?)" in str(caught.value)


def test_an_edited_file_is_read_again(tmp_path):
    path = tmp_path / "school.yaml"
    text = (PRESETS_DIR / "st-barnabas.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    first = load_policy(str(path))
    assert load_policy(path) is first
    later = path.stat().st_mtime_ns + 10**9  # whatever the file system's clock resolution
    path.write_text(text.replace("value: 97 ", "value: 96 "), encoding="utf-8")
    os.utime(path, ns=(later, later))
    assert load_policy(path).threshold("below_97").value == 96


# --------------------------------------------------------------------------- command line


def test_cli_check_ok():
    result = CliRunner().invoke(app, ["check", str(PRESETS_DIR / "all-saints.yaml")])
    assert result.exit_code == 0, result.output
    assert result.stdout == "OK: All Saints' CE Primary School, 12 thresholds, 4 ladders\n"


def test_cli_check_refuses_a_bad_file(tmp_path):
    data = preset_data("springbank")
    data["register"]["am"]["opens"] = "25:00"
    path = tmp_path / "springbank.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert "register.am.opens: '25:00' is not a time" in result.stderr
    assert "OK:" not in result.stdout


def test_cli_show():
    result = CliRunner().invoke(app, ["show", "all-saints"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    for text in (
        "All Saints' CE Primary School",
        "08:55-09:25",
        "below_85",
        "stage_5",
        "approved by headteacher",
        "09:30",
    ):
        assert text in result.stdout


def test_cli_show_yaml_round_trips(tmp_path):
    result = CliRunner().invoke(app, ["show", "springbank", "--yaml"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "normalised.yaml"
    path.write_text(result.stdout, encoding="utf-8")
    assert load_policy(path) == load_policy("springbank")
