"""Attendance cases on the real Temporal dev server (time skipping), real SQLite and a real
SMTP server on loopback: each walk follows a school's own ladder from its policy preset.

Dates are on the conftest calendar (the demo's Kent-style one); every rate below is worked
out by hand from the register the test writes.
"""

import asyncio
from datetime import date, timedelta

import pytest
from sqlmodel import Session, select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from models.letters import Letter
from models.tables import (
    CaseRecord,
    ChronologyEntry,
    Contact,
    LAReturn,
    LegalDecision,
    PenaltyNotice,
    StaffTask,
)
from tests.conftest import add_school
from tests.registers import add_pupil, both, register
from worker import build_worker
from workflows.case import (
    AttendanceCase,
    AttendanceCaseInput,
    ContractInput,
    DecisionInput,
    LAOutcomeInput,
    MeetingOutcomeInput,
    MoveToStageInput,
    PauseInput,
    ResumeInput,
    ScheduleMeetingInput,
    ThresholdsChanged,
)


def add_parents(session: Session, pupil_id: int) -> None:
    for priority, (forename, relationship) in enumerate([("Jane", "Mother"), ("John", "Father")]):
        session.add(
            Contact(
                pupil_id=pupil_id,
                priority=priority + 1,
                title="Mrs" if priority == 0 else "Mr",
                forename=forename,
                surname="Example",
                relationship=relationship,
                email=f"{forename.lower()}@example.org",
                phone=f"07700 90000{priority}",
                address="1 Quarry Road\nTunbridge Wells",
                postcode="TN1 2EY",
                preferred_channel="email",
            )
        )


async def until_stage(handle: WorkflowHandle, ladder: str, stage: str | None) -> None:
    """Wait (in real time, briefly) for the case to reach a stage after a timer fired."""
    for _ in range(200):
        status = await handle.query(AttendanceCase.status)
        if status.ladder_stages.get(ladder) == stage:
            await settled(handle)
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{ladder} is at {status.ladder_stages.get(ladder)}, not {stage}")


async def told(handle: WorkflowHandle, holding: list[str]) -> None:
    """Wait until the case has taken a sweep's signal (it holds what the signal said) and
    written what it does about it."""
    for _ in range(200):
        if (await handle.query(AttendanceCase.status)).holding == holding:
            await settled(handle)
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the case never took the signal holding {holding}")


async def settled(handle: WorkflowHandle) -> None:
    """Wait until the case has written what its last step does (no activity in flight)."""
    for _ in range(200):
        if not (await handle.describe()).raw_description.pending_activities:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the case's activities did not finish")


@pytest.fixture
def st_barnabas_pupil(engine, school):
    # O on three Monday mornings in September; then both sessions of Mon 16 Nov, Mon 11 Jan
    # and Mon 1 Feb; present every other session of the year.
    absent = {("2026-09-07", "AM"): "O", ("2026-09-14", "AM"): "O", ("2026-09-21", "AM"): "O"}
    for day in ("2026-11-16", "2027-01-11", "2027-02-01"):
        absent |= both(day, "O")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        pupil = add_pupil(session, school.id, 1)
        add_parents(session, pupil.id)
        register(session, school.id, pupil, "2026-09-03", "2027-07-21", absent)
        return pupil


async def test_st_barnabas_up_every_rung_and_back_down(
    temporal_env, engine, settings, school, st_barnabas_pupil, task_queue, keep_history
):
    pupil = st_barnabas_pupil
    case_id = f"attendance-case-{pupil.id}-2026-{task_queue}"
    ladder = "continued_absence"
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        with temporal_env.with_time_skipping_disabled():
            handle = await temporal_env.client.start_workflow(
                AttendanceCase.run,
                AttendanceCaseInput(school_id=school.id, pupil_id=pupil.id, academic_year=2026),
                id=case_id,
                task_queue=task_queue,
                start_signal="thresholds_changed",
                # Fri 13 Nov: 92 possible sessions, 89 present: 96.74%, below 97%.
                start_signal_args=[ThresholdsChanged("2026-11-13", ["below_97"], ["below_97"])],
            )
        await until_stage(handle, ladder, "concern_letter")
        status = await handle.query(AttendanceCase.status)
        # Four school weeks on: the weeks of 16, 23, 30 Nov and 7 Dec; review Fri 11 Dec.
        assert "review on 2026-12-11:continued_absence" in status.awaiting
        assert "schedule_meeting" not in status.available_actions

        # 13 Nov - 11 Dec: 40 of 42 sessions (95.24%), below the 96.67% of 12 Nov: no
        # improvement, so the Senior Attendance Champion's meeting.
        await temporal_env.fast_forward(handle, timedelta(days=28))
        await until_stage(handle, ladder, "sac_meeting")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                AttendanceCase.record_meeting_outcome,
                MeetingOutcomeInput(
                    attended=True,
                    by="Mrs Duncombe",
                    role="senior_attendance_champion",
                    targets="97%",
                ),
            )
        assert "nothing in this case is waiting" in str(refused.value.cause)
        await handle.execute_update(
            AttendanceCase.schedule_meeting,
            ScheduleMeetingInput(
                "2026-12-15T15:30", "both parents", "Mrs Duncombe", "senior_attendance_champion"
            ),
        )
        await handle.execute_update(
            AttendanceCase.record_meeting_outcome,
            MeetingOutcomeInput(
                attended=True,
                by="Mrs Duncombe",
                role="senior_attendance_champion",
                targets="Every day on time; no Monday absences",
                support_agreed="Breakfast club place",
            ),
        )

        # 11 Dec - 22 Jan: 38 of 40 (95%), below 96.15% on 10 Dec: support plan and contract.
        await temporal_env.fast_forward(handle, timedelta(days=42))
        await until_stage(handle, ladder, "support_plan")
        await handle.execute_update(
            AttendanceCase.record_contract,
            ContractInput(
                "2027-01-26", "D Prodrick", "attendance_officer", terms="Review in four weeks"
            ),
        )

        # 22 Jan - 26 Feb: 40 of 42 (95.24%), below 95.83% on 21 Jan: referral to the LA,
        # which waits for the headteacher.
        await temporal_env.fast_forward(handle, timedelta(days=35))
        await until_stage(handle, ladder, "la_referral")
        status = await handle.query(AttendanceCase.status)
        decision = next(a for a in status.awaiting if a.startswith("decision:"))
        decision_key = decision.removeprefix("decision:")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                AttendanceCase.decide,
                DecisionInput(
                    decision_key, True, "Support has not worked", "D Prodrick", "attendance_officer"
                ),
            )
        assert "only the headteacher may decide" in str(refused.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                AttendanceCase.decide,
                DecisionInput(decision_key, True, "  ", "Mrs Duncombe", "headteacher"),
            )
        assert "with its reason" in str(refused.value.cause)
        await handle.execute_update(
            AttendanceCase.decide,
            DecisionInput(
                decision_key,
                True,
                "Letters, meeting and contract have not helped",
                "Mrs Duncombe",
                "headteacher",
            ),
        )
        await handle.execute_update(
            AttendanceCase.record_la_outcome,
            LAOutcomeInput("issued", "2027-03-08", "D Prodrick", "attendance_officer"),
        )
        await handle.execute_update(
            AttendanceCase.record_la_outcome,
            LAOutcomeInput("paid_reduced", "2027-03-20", "D Prodrick", "attendance_officer"),
        )

        # Present every day from 1 March: 291 of 300 sessions on Mon 17 May is 97.0%.
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged("2027-05-17", [], cleared=["below_97"]),
        )
        await until_stage(handle, ladder, "support_plan")
        # Reviews every four school weeks step the pupil down: 21 Jun, 19 Jul, then (no
        # school weeks left) four weeks later, 16 Aug, off the ladder.
        await temporal_env.fast_forward(handle, timedelta(days=35))
        await until_stage(handle, ladder, "sac_meeting")
        await temporal_env.fast_forward(handle, timedelta(days=28))
        await until_stage(handle, ladder, "concern_letter")
        await temporal_env.fast_forward(handle, timedelta(days=28))
        await until_stage(handle, ladder, None)
        await temporal_env.fast_forward(handle, timedelta(days=16))
        result = await handle.result()
    assert result.closed_on == "2027-08-31"

    with Session(engine) as session:
        stages = [
            e.summary
            for e in session.exec(
                select(ChronologyEntry)
                .where(ChronologyEntry.kind == "stage")
                .order_by(ChronologyEntry.id)
            )
        ]
        assert stages == [
            "If absence continues: Letter home (over below_97)",
            "If absence continues: Meeting with the Senior Attendance Champion "
            "(no improvement (95.2% since 2026-11-13))",
            "If absence continues: Personalised support plan or attendance contract "
            "(no improvement (95.0% since 2026-12-11))",
            "If absence continues: Referral to the LA for legal sanctions "
            "(no improvement (95.2% since 2027-01-22))",
            "If absence continues: back to Personalised support plan or attendance contract "
            "(back above the line)",
            "If absence continues: back to Meeting with the Senior Attendance Champion "
            "(attendance recovered (100.0% since 2027-05-17))",
            "If absence continues: back to Letter home "
            "(attendance recovered (100.0% since 2027-06-21))",
            "If absence continues: off the ladder (attendance recovered (100.0% since 2027-07-19))",
        ]
        decision = session.exec(select(LegalDecision)).one()
        assert (decision.kind, decision.status, decision.decided_by) == (
            "penalty_notice_request",
            "approved",
            "Mrs Duncombe",
        )
        notices = session.exec(select(PenaltyNotice)).all()
        # One notice per parent with parental responsibility, the first for each: £160,
        # £80 if paid within 21 days.
        assert sorted((n.sequence, n.amount, n.reduced_amount, n.outcome) for n in notices) == [
            (1, 160, 80, "paid_reduced"),
            (1, 160, 80, "paid_reduced"),
        ]
        letters = [lt.template for lt in session.exec(select(Letter).order_by(Letter.id))]
        # Up: a letter at each rung, the LA's request and the parents' notice once the
        # headteacher approved; down: a positive letter at each step.
        assert (
            letters
            == [
                "st_barnabas/below_97",
                "st_barnabas/sac_meeting",
                "st_barnabas/support_plan",
                "la/penalty_notice_request",
                "st_barnabas/la_referral_notice",
            ]
            + ["st_barnabas/improvement"] * 4
        )
        record = session.get(CaseRecord, case_id)
        assert record.status == "closed"
        assert session.exec(select(StaffTask).where(StaffTask.status == "open")).all() == []
    await keep_history(handle, "case-st-barnabas-up-and-down")


def school_pupil(engine, policy: str, absent: dict, *, first="2026-09-03", flags=None):
    """A school on `policy` with one pupil and two parents, present every session of the
    year except `absent`."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        school = add_school(session, name=policy, urn="118001", policy=policy)
        pupil = add_pupil(session, school.id, 1)
        for name, value in (flags or {}).items():
            setattr(pupil, name, value)
        add_parents(session, pupil.id)
        register(session, school.id, pupil, first, "2027-07-21", absent)
        return school, pupil


async def start_case(
    env, school, pupil, task_queue, change: ThresholdsChanged, **case_input
) -> WorkflowHandle:
    with env.with_time_skipping_disabled():
        return await env.client.start_workflow(
            AttendanceCase.run,
            AttendanceCaseInput(school.id, pupil.id, 2026, **case_input),
            id=f"attendance-case-{pupil.id}-2026-{task_queue}",
            task_queue=task_queue,
            start_signal="thresholds_changed",
            start_signal_args=[change],
        )


def chronology(engine, kind: str) -> list[str]:
    with Session(engine) as session:
        return [
            e.summary
            for e in session.exec(
                select(ChronologyEntry)
                .where(ChronologyEntry.kind == kind)
                .order_by(ChronologyEntry.id)
            )
        ]


def letters_sent(engine) -> list[str]:
    with Session(engine) as session:
        return [lt.template for lt in session.exec(select(Letter).order_by(Letter.id))]


async def test_springbank_up_every_rung_declined_and_back_down(
    temporal_env, engine, settings, task_queue, keep_history
):
    # Ill (I) on Mon-Tue 7-8, Mon 14, Mon-Tue 21-22 and Mon-Tue 28-29 September; present
    # every other session of the year.
    absent = {}
    for day in ("07", "08", "14", "21", "22", "28", "29"):
        absent |= both(f"2026-09-{day}", "I")
    school, pupil = school_pupil(engine, "springbank", absent)
    ladder = "persistent_absentees"
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        # Wed 9 Sep: 6 of 10 sessions, 60%: below 93% (too few sessions yet for PA).
        handle = await start_case(
            temporal_env,
            school,
            pupil,
            task_queue,
            ThresholdsChanged("2026-09-09", ["below_93"], ["below_93"]),
        )
        await until_stage(handle, ladder, "warning_text")
        # Thu 17 Sep: 16 of 22, 72.73%: persistently absent, Stage 1; its fortnightly review
        # two school weeks on, Thu 1 Oct.
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged(
                "2026-09-17", ["below_93", "persistent_absence"], ["persistent_absence"]
            ),
        )
        await until_stage(handle, ladder, "stage_1")
        assert (
            "review on 2026-10-01:persistent_absentees"
            in (await handle.query(AttendanceCase.status)).awaiting
        )
        # 17 Sep - 1 Oct: 14 of 22 sessions (63.6%), below the 70.0% of 16 Sep: Stage 2, the
        # ATTEND meeting.
        await temporal_env.fast_forward(handle, timedelta(days=14))
        await until_stage(handle, ladder, "stage_2")
        await handle.execute_update(
            AttendanceCase.schedule_meeting,
            ScheduleMeetingInput(
                "2026-10-06T15:30", "both parents", "K Shaw", "attendance_officer"
            ),
        )
        # The parents do not come: not engaging, so the legal route, for the headteacher.
        await handle.execute_update(
            AttendanceCase.record_meeting_outcome,
            MeetingOutcomeInput(attended=False, by="K Shaw", role="attendance_officer"),
        )
        await until_stage(handle, ladder, "legal_action")
        status = await handle.query(AttendanceCase.status)
        decision_key = next(a for a in status.awaiting if a.startswith("decision:"))[9:]
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                AttendanceCase.decide,
                DecisionInput(decision_key, True, "No engagement", "K Shaw", "attendance_officer"),
            )
        assert "only the headteacher may decide" in str(refused.value.cause)
        await handle.execute_update(
            AttendanceCase.decide,
            DecisionInput(
                decision_key,
                False,
                "Absence is illness; the family now works with the school nurse",
                "Mr Ahmed",
                "headteacher",
            ),
        )
        status = await handle.query(AttendanceCase.status)
        assert "decide" not in status.available_actions
        assert status.ladder_stages[ladder] == "legal_action"

        # Present every session since 30 Sep: Fri 18 Dec is 128 of 142, 90.14%, no longer
        # persistently absent (10% missed or more; the line Stage 1 judges by), so back to
        # Stage 2 ...
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged("2026-12-18", ["below_93"], cleared=["persistent_absence"]),
        )
        await until_stage(handle, ladder, "stage_2")
        # ... reviewed two school weeks on (the Christmas holiday not counted): Fri 15 Jan
        # (91.25%), back to Stage 1; Fri 29 Jan, back to the warning text (166 of 180,
        # 92.22%, still below 93%).
        await temporal_env.fast_forward(handle, timedelta(days=28))
        await until_stage(handle, ladder, "stage_1")
        await temporal_env.fast_forward(handle, timedelta(days=14))
        await until_stage(handle, ladder, "warning_text")
        # Fri 12 Feb: 186 of 200, 93.0%: off the ladder.
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged("2027-02-12", [], cleared=["below_93"]),
        )
        await until_stage(handle, ladder, None)

    assert chronology(engine, "stage") == [
        f"Persistent Absentees and ATTEND: {step}"
        for step in (
            "Warning text (over below_93)",
            "Stage 1: Persistent Absentee letter (over persistent_absence)",
            "Stage 2: ATTEND meeting (no improvement (63.6% since 2026-09-17))",
            "Legal action (did not attend the meeting)",
            "back to Stage 2: ATTEND meeting (back above the line)",
            "back to Stage 1: Persistent Absentee letter "
            "(attendance recovered (100.0% since 2026-12-18))",
            "back to Warning text (attendance recovered (100.0% since 2027-01-15))",
            "off the ladder (back above the line)",
        )
    ]
    # Declined: recorded with its reason, and nothing goes to the LA.
    assert letters_sent(engine) == [
        "springbank/warning_below_93",
        "springbank/stage_1",
        "springbank/stage_2",
    ]
    with Session(engine) as session:
        decision = session.exec(select(LegalDecision)).one()
        assert (decision.kind, decision.status, decision.decided_by) == (
            "prosecution_referral",
            "declined",
            "Mr Ahmed",
        )
        assert "school nurse" in decision.reason
        assert session.exec(select(LAReturn)).all() == []
    await keep_history(handle, "case-springbank-declined")


async def test_sevenoaks_meeting_outcome_never_recorded_and_lateness(
    temporal_env, engine, settings, task_queue, keep_history
):
    # Ill on Mon-Tue 7-8 September; late (L) on Mon 28, Tue 29 Sep and Thu 1 Oct.
    absent = both("2026-09-07", "I") | both("2026-09-08", "I")
    absent |= {(day, "AM"): "L" for day in ("2026-09-28", "2026-09-29", "2026-10-01")}
    school, pupil = school_pupil(engine, "sevenoaks", absent)
    ladder = "pastoral"
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        # Wed 16 Sep: 16 of 20 sessions this half-term, 80%: below 90%, the pastoral meeting.
        handle = await start_case(
            temporal_env,
            school,
            pupil,
            task_queue,
            ThresholdsChanged(
                "2026-09-16",
                ["half_term_below_90", "persistent_absence"],
                ["half_term_below_90", "persistent_absence"],
            ),
        )
        await until_stage(handle, ladder, "pastoral_meeting")
        await handle.execute_update(
            AttendanceCase.schedule_meeting,
            ScheduleMeetingInput(
                "2026-09-21T16:00", "parents and tutor", "Mr Hale", "senior_attendance_champion"
            ),
        )
        # Nobody records the outcome: a reminder two days after the meeting (Wed 23 Sep),
        # then five days after (Sat 26 Sep) it is passed to the Senior Attendance Champion.
        await temporal_env.fast_forward(handle, timedelta(days=7))  # to Wed 23 Sep
        for _ in range(100):
            if chronology(engine, "reminder"):
                break
            await asyncio.sleep(0.05)
        assert chronology(engine, "reminder") == [
            "No outcome recorded for the meeting on 21/09/2026"
        ]
        assert chronology(engine, "escalation") == []
        await temporal_env.fast_forward(handle, timedelta(days=3))  # to Sat 26 Sep
        for _ in range(100):
            if chronology(engine, "escalation"):
                break
            await asyncio.sleep(0.05)
        assert chronology(engine, "escalation") == [
            "Meeting outcome still missing (21/09/2026): passed to the Senior Attendance Champion"
        ]
        with Session(engine) as session:
            open_tasks = {
                (t.kind, t.role)
                for t in session.exec(select(StaffTask).where(StaffTask.status == "open"))
            }
        assert {
            ("meeting_held", "senior_attendance_champion"),
            ("meeting_outcome", "senior_attendance_champion"),
            ("meeting_outcome_missing", "senior_attendance_champion"),
        } <= open_tasks
        # Still on the same rung: a missing record never moves a pupil.
        assert (await handle.query(AttendanceCase.status)).ladder_stages == {
            ladder: "pastoral_meeting"
        }

        # Late three times in the week of 28 Sep (Thu 1 Oct): the tutor's follow-up, and the
        # half-term rate is back to 90.48% (38 of 42).
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged(
                "2026-10-01", ["late_3_in_week"], ["late_3_in_week"], ["half_term_below_90"]
            ),
        )
        for _ in range(100):
            if chronology(engine, "lateness"):
                break
            await asyncio.sleep(0.05)
        # The meeting's outcome is still awaited, so the case stays on its rung.
        assert (await handle.query(AttendanceCase.status)).ladder_stages == {
            ladder: "pastoral_meeting"
        }
        await handle.execute_update(
            AttendanceCase.record_meeting_outcome,
            MeetingOutcomeInput(
                attended=True,
                by="Mr Hale",
                role="senior_attendance_champion",
                support_agreed="Tutor check-in each morning",
            ),
        )
        # Fri 23 Oct, 94.59% this half-term and not late three times: off the ladder.
        await handle.signal(AttendanceCase.thresholds_changed, ThresholdsChanged("2026-10-23", []))
        await until_stage(handle, ladder, None)

    with Session(engine) as session:
        tasks = session.exec(select(StaffTask).order_by(StaffTask.id)).all()
        lateness = [(t.role, t.summary) for t in tasks if t.kind == "lateness"]
        # The policy's three follow-ups, each for the tutor, once.
        assert [role for role, _ in lateness] == ["tutor"] * 3
        assert lateness[0][1].startswith("Talk with the student about the reason")
        still_open = [t.kind for t in tasks if t.status == "open"]
        assert "meeting_outcome" not in still_open
        assert "meeting_outcome_missing" not in still_open
    assert chronology(engine, "stage") == [
        "Pastoral support (§3.11, §7.3): Meeting arranged by the Deputy Head Pastoral "
        "(over half_term_below_90)",
        "Pastoral support (§3.11, §7.3): off the ladder (back above the line)",
    ]
    await keep_history(handle, "case-sevenoaks-meeting-missing")


async def test_third_penalty_notice_in_three_years_is_a_prosecution_referral(
    temporal_env, engine, settings, school, task_queue, keep_history
):
    # O (unauthorised) both sessions of Mon-Fri 5-9 October: 10 sessions in 10 school weeks.
    absent = {}
    for day in ("05", "06", "07", "08", "09"):
        absent |= both(f"2026-10-{day}", "O")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        pupil = add_pupil(session, school.id, 1)
        add_parents(session, pupil.id)
        register(session, school.id, pupil, "2026-09-03", "2027-07-21", absent)
        # The same parents' earlier notices, for an older child: Mrs Example has had two in
        # the last three years; Mr Example one in that time and one older than three years.
        sibling = add_pupil(session, school.id, 2)
        add_parents(session, sibling.id)
        session.flush()
        jane, john = session.exec(
            select(Contact).where(Contact.pupil_id == sibling.id).order_by(Contact.priority)
        ).all()
        for n, (parent, requested_on, sequence) in enumerate(
            [
                (jane, "2024-11-20", 1),
                (jane, "2025-10-10", 2),
                (john, "2023-09-01", 1),
                (john, "2025-10-10", 1),
            ]
        ):
            session.add(
                PenaltyNotice(
                    key=f"earlier/{n}",
                    contact_id=parent.id,
                    pupil_id=sibling.id,
                    school_id=school.id,
                    case_id="attendance-case-2-2024",
                    requested_on=date.fromisoformat(requested_on),
                    sequence=sequence,
                    amount=160 if sequence == 2 else 80,
                    outcome="paid",
                )
            )
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        # Fri 9 Oct: 10 unauthorised sessions in the last 10 school weeks; 68 of 78 sessions
        # this year (87.2%): below 97% and persistently absent as well.
        holding = ["below_97", "persistent_absence", "penalty_notice_consideration"]
        handle = await start_case(
            temporal_env,
            school,
            pupil,
            task_queue,
            ThresholdsChanged("2026-10-09", holding, holding),
        )
        await until_stage(handle, "penalty_notice", "consider_penalty_notice")
        status = await handle.query(AttendanceCase.status)
        decision_key = next(a for a in status.awaiting if a.startswith("decision:"))[9:]
        await handle.execute_update(
            AttendanceCase.decide,
            DecisionInput(
                decision_key,
                True,
                "A week of term-time holiday, refused",
                "Mrs Duncombe",
                "headteacher",
            ),
        )
        status = await handle.query(AttendanceCase.status)
        assert "record_la_outcome" in status.available_actions

    with Session(engine) as session:
        new = session.exec(select(PenaltyNotice).where(PenaltyNotice.pupil_id == pupil.id)).all()
        # Mr Example: his second within three years, £160 with no reduction. Mrs Example: no
        # third notice; the LA is asked to consider prosecution instead.
        assert [(n.contact_id, n.sequence, n.amount, n.reduced_amount) for n in new] == [
            (new[0].contact_id, 2, 160, None)
        ]
        assert session.get(Contact, new[0].contact_id).forename == "John"
        returns = session.exec(select(LAReturn).where(LAReturn.pupil_id == pupil.id)).all()
        assert [r.kind for r in returns] == ["prosecution_referral"]
        assert "Mrs Jane Example" in returns[0].summary
    assert letters_sent(engine) == [
        "st_barnabas/below_97",
        "la/legal_referral",
        "la/penalty_notice_request",
    ]
    await keep_history(handle, "case-third-penalty-notice")


async def test_out_of_order_and_wrong_role_steps_are_refused_and_change_nothing(
    temporal_env, engine, settings, school, st_barnabas_pupil, task_queue
):
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        handle = await start_case(
            temporal_env,
            school,
            st_barnabas_pupil,
            task_queue,
            ThresholdsChanged("2026-11-13", ["below_97"], ["below_97"]),
        )
        await until_stage(handle, "continued_absence", "concern_letter")
        before = await handle.query(AttendanceCase.status)
        with Session(engine) as session:
            entries = len(session.exec(select(ChronologyEntry)).all())

        async def refused(update, step) -> str:
            with pytest.raises(WorkflowUpdateFailedError) as error:
                await handle.execute_update(update, step)
            return str(error.value.cause)

        assert "nothing in this case is waiting" in await refused(
            AttendanceCase.record_contract,
            ContractInput("2026-11-20", "D Prodrick", "attendance_officer"),
        )
        assert "nothing in this case is waiting" in await refused(
            AttendanceCase.record_la_outcome,
            LAOutcomeInput("paid", "2026-11-20", "D Prodrick", "attendance_officer"),
        )
        assert "waiting for a decision 'made-up'" in await refused(
            AttendanceCase.decide,
            DecisionInput("made-up", True, "because", "Mrs Duncombe", "headteacher"),
        )
        assert "may not act on a case" in await refused(
            AttendanceCase.schedule_meeting,
            ScheduleMeetingInput("2026-11-20T09:00", "parents", "A Parent", "parent"),
        )
        assert "not a reason this school's policy allows" in await refused(
            AttendanceCase.pause, PauseInput("holiday", "D Prodrick", "attendance_officer")
        )
        assert "agreed by the senior attendance champion" in await refused(
            AttendanceCase.pause, PauseInput("medical", "A Clerk", "office_staff")
        )
        assert "not paused" in await refused(
            AttendanceCase.resume, ResumeInput("Mrs Duncombe", "senior_attendance_champion")
        )
        assert "reached by the figures" in await refused(
            AttendanceCase.move_to_stage,
            MoveToStageInput(
                "continued_absence", "la_referral", "wants it", "Mrs Duncombe", "headteacher"
            ),
        )
        # Nothing changed: same state, no chronology written.
        assert await handle.query(AttendanceCase.status) == before
        with Session(engine) as session:
            assert len(session.exec(select(ChronologyEntry)).all()) == entries

        # A pause the policy allows, by whom it says: no reviews while it lasts.
        await handle.execute_update(
            AttendanceCase.pause,
            PauseInput(
                "medical", "Mrs Duncombe", "senior_attendance_champion", "Surgery in December"
            ),
        )
        status = await handle.query(AttendanceCase.status)
        assert status.paused and status.available_actions == ["resume"]
        assert "already paused" in await refused(
            AttendanceCase.pause,
            PauseInput("medical", "Mrs Duncombe", "senior_attendance_champion"),
        )
        # Six weeks pass (the review of Fri 11 Dec is not held while paused).
        await temporal_env.fast_forward(handle, timedelta(days=42))
        assert (await handle.query(AttendanceCase.status)).ladder_stages == {
            "continued_absence": "concern_letter"
        }
        assert "only the senior attendance champion may resume" in await refused(
            AttendanceCase.resume, ResumeInput("A Clerk", "office_staff")
        )
        await handle.execute_update(
            AttendanceCase.resume, ResumeInput("Mrs Duncombe", "senior_attendance_champion")
        )
        status = await handle.query(AttendanceCase.status)
        assert not status.paused
        # Monitoring starts again from the day of resuming (Fri 25 Dec is in the holiday:
        # four school weeks on is Fri 29 Jan).
        assert "review on 2027-01-29:continued_absence" in status.awaiting
    pauses = chronology(engine, "pause")
    assert pauses[0] == "Case paused: medical (Surgery in December)"
    assert pauses[1].startswith("Case resumed after pause (medical)")


async def decide_all(handle: WorkflowHandle, reason: str, by: str, role: str) -> None:
    """Approve every decision the case is waiting for."""
    status = await handle.query(AttendanceCase.status)
    for key in [a[9:] for a in status.awaiting if a.startswith("decision:")]:
        await handle.execute_update(
            AttendanceCase.decide, DecisionInput(key, True, reason, by, role)
        )


async def test_all_saints_monitoring_up_every_rung_and_back_down(
    temporal_env, engine, settings, task_queue, keep_history
):
    # Ill (I) all day Mon 28 - Wed 30 Sep, Mon 19 Oct, Mon 7 and Mon 14 Dec; ill in the
    # morning of Mon 2, 9, 16 (all day), 23 and 30 Nov and Mon 11 Jan; present otherwise.
    absent = {}
    for day in ("2026-09-28", "2026-09-29", "2026-09-30", "2026-10-19", "2026-12-07"):
        absent |= both(day, "I")
    absent |= both("2026-12-14", "I") | both("2026-11-16", "I")
    for day in ("2026-11-02", "2026-11-09", "2026-11-23", "2026-11-30", "2027-01-11"):
        absent[day, "AM"] = "I"
    school, pupil = school_pupil(engine, "all-saints", absent)
    ladder = "monitoring"
    head = ("Louise de Graaff", "headteacher")
    lines = ["at_or_below_96", "below_96", "below_95"]
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        # Mon 28 Sep: 34 of 36 sessions, 94.44%: the letter below 96% (and Appendix 1's
        # Stage 1, below 95%).
        handle = await start_case(
            temporal_env, school, pupil, task_queue, ThresholdsChanged("2026-09-28", lines, lines)
        )
        await until_stage(handle, ladder, "concern_letter")
        # Tue 29 Sep: 34 of 38, 89.47%: below 90%, monitored for two school weeks.
        await temporal_env.fast_forward(handle, timedelta(days=1))
        holding = lines + ["below_90", "persistent_absence"]
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged("2026-09-29", holding, ["below_90", "persistent_absence"]),
        )
        await until_stage(handle, ladder, "monitored")
        status = await handle.query(AttendanceCase.status)
        assert "review on 2026-10-13:monitoring" in status.awaiting

        # Tue 13 Oct: 18 of 22 sessions since 29 Sep (81.8%), below the 94.44% before it:
        # the class teacher's meeting; reviewed two school weeks on (half-term not
        # counted), Tue 3 Nov.
        await temporal_env.fast_forward(handle, timedelta(days=14))
        await until_stage(handle, ladder, "targets_meeting")
        assert (
            "review on 2026-11-03:monitoring"
            in (await handle.query(AttendanceCase.status)).awaiting
        )
        # Back at 90.0% on Wed 14 Oct, below again on Mon 19 Oct: a rung under review
        # stays where it is.
        await temporal_env.fast_forward(handle, timedelta(days=1))
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged("2026-10-14", lines + ["persistent_absence"], cleared=["below_90"]),
        )
        await handle.execute_update(
            AttendanceCase.schedule_meeting,
            ScheduleMeetingInput(
                "2026-10-15T15:30", "both parents", "Miss Hart", "class_teacher", ladder=ladder
            ),
        )
        await temporal_env.fast_forward(handle, timedelta(days=1))
        await handle.execute_update(
            AttendanceCase.record_meeting_outcome,
            MeetingOutcomeInput(
                attended=True,
                by="Miss Hart",
                role="class_teacher",
                targets="95% by Christmas",
                ladder=ladder,
            ),
        )
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged("2026-10-15", lines, cleared=["persistent_absence"]),
        )
        await temporal_env.fast_forward(handle, timedelta(days=4))
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged("2026-10-19", holding, ["below_90", "persistent_absence"]),
        )
        await told(handle, holding)
        assert (await handle.query(AttendanceCase.status)).ladder_stages[ladder] == (
            "targets_meeting"
        )

        # Tue 3 Nov: 19 of 22 since 13 Oct (86.4%), below 89.29%: EWO referral and a
        # parenting contract, reviewed four school weeks on, Tue 1 Dec.
        await temporal_env.fast_forward(handle, timedelta(days=15))
        await until_stage(handle, ladder, "parenting_contract")
        await handle.execute_update(
            AttendanceCase.record_contract,
            ContractInput(
                "2026-11-05", "Mr D. Fenwick", "attendance_officer", terms="Daily", ladder=ladder
            ),
        )
        # Tue 1 Dec: 35 of 40 since 3 Nov (87.5%), below 88.16%: the final written warning,
        # once the headteacher approves it; reviewed four school weeks on, Tue 12 Jan.
        await temporal_env.fast_forward(handle, timedelta(days=28))
        await until_stage(handle, ladder, "final_warning")
        assert "all_saints/final_warning" not in letters_sent(engine)
        await decide_all(handle, "Contract broken; illness not evidenced", *head)
        await settled(handle)
        assert "all_saints/final_warning" in letters_sent(engine)
        # Tue 12 Jan: 35 of 40 since 1 Dec (87.5%), below 87.72%: a fixed penalty notice,
        # the headteacher's to approve.
        await temporal_env.fast_forward(handle, timedelta(days=42))
        await until_stage(handle, ladder, "penalty_notice")
        await decide_all(handle, "No improvement after the final warning", *head)
        await handle.execute_update(
            AttendanceCase.record_la_outcome,
            LAOutcomeInput("issued", "2027-01-20", "Mr D. Fenwick", "attendance_officer"),
        )
        await handle.execute_update(
            AttendanceCase.record_la_outcome,
            LAOutcomeInput("paid", "2027-02-02", "Mr D. Fenwick", "attendance_officer"),
        )

        # Present every session since 12 Jan: Fri 5 Feb is 171 of 190, 90.0%: no longer
        # below 90%, back to the final warning ...
        await temporal_env.fast_forward(handle, timedelta(days=24))
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged("2027-02-05", lines + ["persistent_absence"], cleared=["below_90"]),
        )
        await until_stage(handle, ladder, "final_warning")
        # ... and down a rung at each review: Fri 12 Mar (four school weeks, half-term not
        # counted), Fri 23 Apr (four, Easter not counted), Fri 7 May and Fri 21 May (two
        # each), all over 90%, to the letter below 96% where the pupil still is.
        for days, stage in (
            (35, "parenting_contract"),
            (42, "targets_meeting"),
            (14, "monitored"),
            (14, "concern_letter"),
        ):
            await temporal_env.fast_forward(handle, timedelta(days=days))
            await until_stage(handle, ladder, stage)

    name = "Attendance monitoring procedures (§11): "
    assert [s.removeprefix(name) for s in chronology(engine, "stage") if s.startswith(name)] == [
        "Below the expected standard (over below_96)",
        "Attendance monitored (over below_90)",
        "Meeting with the class teacher, targets set (no improvement (81.8% since 2026-09-29))",
        "EWO referral and parenting contract (no improvement (86.4% since 2026-10-13))",
        "Final written warning (no improvement (87.5% since 2026-11-03))",
        "Fixed penalty notice (no improvement (87.5% since 2026-12-01))",
        "back to Final written warning (back above the line)",
        "back to EWO referral and parenting contract "
        "(attendance recovered (100.0% since 2027-02-05))",
        "back to Meeting with the class teacher, targets set "
        "(attendance recovered (100.0% since 2027-03-12))",
        "back to Attendance monitored (attendance recovered (100.0% since 2027-04-23))",
        "back to Below the expected standard (attendance recovered (100.0% since 2027-05-07))",
    ]
    with Session(engine) as session:
        decisions = session.exec(select(LegalDecision).order_by(LegalDecision.id)).all()
        assert [(d.kind, d.status) for d in decisions] == [
            ("formal_warning", "approved"),
            ("penalty_notice_request", "approved"),
        ]
        notices = session.exec(select(PenaltyNotice)).all()
        assert sorted((n.sequence, n.amount, n.outcome) for n in notices) == [
            (1, 160, "paid"),
            (1, 160, "paid"),
        ]
    # Up: a letter at each rung (Appendix 1's Stage 1 and 2 letters alongside, the "a"
    # versions: all the absence is illness), the final warning once approved, the
    # LA's penalty-notice request; down: the positive letter of each rung left that has one.
    assert letters_sent(engine) == [
        "all_saints/below_96",
        "all_saints/stage_1a",
        "all_saints/monitored",
        "all_saints/stage_2a",
        "all_saints/targets_meeting",
        "all_saints/parenting_contract",
        "all_saints/final_warning",
        "la/penalty_notice_request",
        "all_saints/positive",
        "all_saints/positive",
        "all_saints/targets_met",
    ]
    await keep_history(handle, "case-all-saints-monitoring")


async def appendix_1_up_to_stage_3(env, school, pupil, task_queue) -> WorkflowHandle:
    """All Saints' Appendix 1 ladder from the first unauthorised absence (Mon 21 Sep) to
    Stage 3 (Tue 1 Dec), for a pupil with O on the mornings of 21 and 22 Sep and ill on the
    Monday mornings of 28 Sep, 5, 12 and 19 Oct, 2, 16 and 30 Nov."""
    ladder = "stages"
    # Mon 21 Sep: 25 of 26 sessions (96.15%), the first unauthorised absence.
    handle = await start_case(
        env,
        school,
        pupil,
        task_queue,
        ThresholdsChanged("2026-09-21", ["any_unauthorised_absence"], ["any_unauthorised_absence"]),
    )
    # Tue 22 Sep: 26 of 28 (92.86%): below 95%, Stage 1, reviewed at the October point.
    await env.fast_forward(handle, timedelta(days=1))
    lines = ["at_or_below_96", "below_96", "below_95"]
    await handle.signal(
        AttendanceCase.thresholds_changed,
        ThresholdsChanged("2026-09-22", lines + ["any_unauthorised_absence"], lines),
    )
    await until_stage(handle, ladder, "stage_1")
    assert "review on 2026-10-01:stages" in (await handle.query(AttendanceCase.status)).awaiting
    # Thu 1 Oct: 14 of 16 since 22 Sep (87.5%), below the 96.15% before: Stage 2 and the
    # attendance lead's meeting; next review point 1 December.
    await env.fast_forward(handle, timedelta(days=9))
    await until_stage(handle, ladder, "stage_2")
    await handle.execute_update(
        AttendanceCase.schedule_meeting,
        ScheduleMeetingInput(
            "2026-10-06T15:30", "parents", "Mr D. Fenwick", "attendance_officer", ladder=ladder
        ),
    )
    await handle.execute_update(
        AttendanceCase.record_meeting_outcome,
        MeetingOutcomeInput(
            attended=True,
            by="Mr D. Fenwick",
            role="attendance_officer",
            targets="96% by the December review",
            ladder=ladder,
        ),
    )
    # Tue 1 Dec: 70 of 76 since 1 Oct (92.1%), below 92.5% on 30 Sep: Stage 3.
    await env.fast_forward(handle, timedelta(days=61))
    await until_stage(handle, ladder, "stage_3")
    return handle


async def test_all_saints_appendix_1_stages_at_the_five_review_points(
    temporal_env, engine, settings, task_queue, keep_history
):
    # Unauthorised (O) on the mornings of Mon 21 and Tue 22 Sep, so the "b" letters; ill
    # (I) one morning now and then: three in September and October, four in November and
    # December, five in January, six from February to March; present otherwise.
    absent = {("2026-09-21", "AM"): "O", ("2026-09-22", "AM"): "O"}
    for day in [
        "2026-09-28",
        "2026-10-05",
        "2026-10-12",
        "2026-10-19",
        "2026-11-02",
        "2026-11-16",
        "2026-11-30",
        "2026-12-07",
        "2026-12-14",
        "2027-01-11",
        "2027-01-18",
        "2027-01-25",
        "2027-01-26",
        "2027-02-08",
        "2027-02-22",
        "2027-03-01",
        "2027-03-08",
        "2027-03-15",
        "2027-03-22",
    ]:
        absent[day, "AM"] = "I"
    school, pupil = school_pupil(engine, "all-saints", absent)
    ladder = "stages"
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        handle = await appendix_1_up_to_stage_3(temporal_env, school, pupil, task_queue)
        # Mon 1 Feb: 62 of 68 since 1 Dec (91.2%), below 92.11% on 30 Nov: Stage 4, the
        # formal warning, sent once the headteacher countersigns it.
        await temporal_env.fast_forward(handle, timedelta(days=62))
        await until_stage(handle, ladder, "stage_4")
        assert "all_saints/stage_4_formal_warning" not in letters_sent(engine)
        await decide_all(
            handle, "Targets missed at two review points", "Louise de Graaff", "headteacher"
        )
        await settled(handle)
        # Thu 1 Apr: 62 of 68 since 1 Feb (91.2%), below 91.67% on 29 Jan: Stage 5, the
        # referral for legal proceedings, which the officer may not sign.
        await temporal_env.fast_forward(handle, timedelta(days=59))
        await until_stage(handle, ladder, "stage_5")
        status = await handle.query(AttendanceCase.status)
        key = next(a for a in status.awaiting if a.startswith("decision:"))[9:]
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                AttendanceCase.decide,
                DecisionInput(key, True, "Refer", "Mr D. Fenwick", "attendance_officer"),
            )
        assert "only the headteacher may decide" in str(refused.value.cause)
        await decide_all(
            handle, "No improvement at four review points", "Louise de Graaff", "headteacher"
        )
        await settled(handle)

    name = "Attendance stages (Appendix 1): "
    assert [s.removeprefix(name) for s in chronology(engine, "stage") if s.startswith(name)] == [
        "Stage 1: attendance is causing concern (over below_95)",
        "Stage 2: meeting with the attendance lead, target set "
        "(no improvement (87.5% since 2026-09-22))",
        "Stage 3: EWO referral, meeting with the headteacher "
        "(no improvement (92.1% since 2026-10-01))",
        "Stage 4: formal warning (no improvement (91.2% since 2026-12-01))",
        "Stage 5: referral to the LA for legal proceedings "
        "(no improvement (91.2% since 2027-02-01))",
    ]
    with Session(engine) as session:
        decisions = session.exec(select(LegalDecision).order_by(LegalDecision.id)).all()
        assert [(d.kind, d.status, d.decided_by) for d in decisions] == [
            ("formal_warning", "approved", "Louise de Graaff"),
            ("prosecution_referral", "approved", "Louise de Graaff"),
        ]
        returns = session.exec(select(LAReturn).where(LAReturn.pupil_id == pupil.id)).all()
        assert "prosecution_referral" in [r.kind for r in returns]
    # The "b" letters at Stages 1-3, the formal warning once countersigned, and the
    # referral to the LA with its evidence pack, of which the parents are told.
    assert letters_sent(engine) == [
        "all_saints/below_96",
        "all_saints/stage_1b",
        "all_saints/stage_2b",
        "all_saints/stage_3b",
        "all_saints/stage_4_formal_warning",
        "la/legal_referral",
        "all_saints/stage_5_referral",
    ]
    await keep_history(handle, "case-all-saints-appendix-1")


async def test_all_saints_appendix_1_back_down_at_the_review_points(
    temporal_env, engine, settings, task_queue
):
    # As the walk up to Stage 3 above (O on the mornings of Mon 21 and Tue 22 Sep, ill on
    # seven Monday mornings to 30 Nov), then present every session from Tue 1 Dec.
    absent = {("2026-09-21", "AM"): "O", ("2026-09-22", "AM"): "O"}
    for day in ["09-28", "10-05", "10-12", "10-19", "11-02", "11-16", "11-30"]:
        absent[f"2026-{day}", "AM"] = "I"
    school, pupil = school_pupil(engine, "all-saints", absent)
    ladder = "stages"
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        # Tue 1 Dec: 107 of 116 sessions this year (92.24%), 70 of 76 since 1 Oct: Stage 3.
        handle = await appendix_1_up_to_stage_3(temporal_env, school, pupil, task_queue)
        # Mon 1 Feb, the next review point: 26 sessions more in December and 40 in
        # January, all present: 173 of 182 (95.05%), no longer below 95%. Down to Stage 2.
        await temporal_env.fast_forward(handle, timedelta(days=62))
        await until_stage(handle, ladder, "stage_2")
        # Thu 1 Apr and Sat 1 May, the next two points: present throughout, so down to
        # Stage 1 and then off the ladder, each step with a positive letter.
        await temporal_env.fast_forward(handle, timedelta(days=59))
        await until_stage(handle, ladder, "stage_1")
        await temporal_env.fast_forward(handle, timedelta(days=30))
        await until_stage(handle, ladder, None)

    name = "Attendance stages (Appendix 1): "
    assert [s.removeprefix(name) for s in chronology(engine, "stage") if s.startswith(name)] == [
        "Stage 1: attendance is causing concern (over below_95)",
        "Stage 2: meeting with the attendance lead, target set "
        "(no improvement (87.5% since 2026-09-22))",
        "Stage 3: EWO referral, meeting with the headteacher "
        "(no improvement (92.1% since 2026-10-01))",
        "back to Stage 2: meeting with the attendance lead, target set "
        "(attendance recovered (100.0% since 2026-12-01))",
        "back to Stage 1: attendance is causing concern "
        "(attendance recovered (100.0% since 2027-02-01))",
        "off the ladder (attendance recovered (100.0% since 2027-04-01))",
    ]
    stages_letters = [t for t in letters_sent(engine) if t != "all_saints/below_96"]
    assert stages_letters == [
        "all_saints/stage_1b",
        "all_saints/stage_2b",
        "all_saints/stage_3b",
        "all_saints/positive",
        "all_saints/positive",
        "all_saints/positive",
    ]


async def test_a_long_case_continues_as_new_and_keeps_its_state(
    temporal_env, engine, settings, school, st_barnabas_pupil, task_queue
):
    """A case's history is cut short by continue-as-new (here after 40 events, so that a
    short walk takes more than one run): the stage, its review date, the awaited meeting and the
    step keys carry over, and nothing is written twice."""
    pupil = st_barnabas_pupil
    ladder = "continued_absence"
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        handle = await start_case(
            temporal_env,
            school,
            pupil,
            task_queue,
            ThresholdsChanged("2026-11-13", ["below_97"], ["below_97"]),
            continue_after_events=40,
        )
        first_run = (await handle.describe()).run_id
        await until_stage(handle, ladder, "concern_letter")
        # As in the walk above: no improvement by Fri 11 Dec, the SAC's meeting.
        await temporal_env.fast_forward(handle, timedelta(days=28))
        await until_stage(handle, ladder, "sac_meeting")
        await handle.execute_update(
            AttendanceCase.schedule_meeting,
            ScheduleMeetingInput(
                "2026-12-15T15:30", "both parents", "Mrs Duncombe", "senior_attendance_champion"
            ),
        )
        await temporal_env.fast_forward(handle, timedelta(days=2))
        await settled(handle)
        runs = [w async for w in temporal_env.client.list_workflows(f"WorkflowId = '{handle.id}'")]
        status = await handle.query(AttendanceCase.status)
        assert len(runs) >= 2 and (await handle.describe()).run_id != first_run
        assert status.ladder_stages[ladder] == "sac_meeting"
        assert "record_meeting_outcome" in status.available_actions
        await handle.execute_update(
            AttendanceCase.record_meeting_outcome,
            MeetingOutcomeInput(
                attended=True,
                by="Mrs Duncombe",
                role="senior_attendance_champion",
                targets="Every day on time",
            ),
        )
    assert chronology(engine, "stage") == [
        "If absence continues: Letter home (over below_97)",
        "If absence continues: Meeting with the Senior Attendance Champion "
        "(no improvement (95.2% since 2026-11-13))",
    ]
    assert letters_sent(engine) == ["st_barnabas/below_97", "st_barnabas/sac_meeting"]


async def test_attendance_and_sickness_returns_are_raised_for_the_la(
    temporal_env, engine, settings, task_queue
):
    # Unauthorised (O) all day for two school weeks, Mon 14 - Fri 25 Sep; ill (I) all day on
    # 15 school days, Mon 2 - Mon 23 Nov (Fri 6 Nov is an INSET day); present otherwise.
    absent = {}
    for day in ["2026-09-14", "2026-09-15", "2026-09-16", "2026-09-17", "2026-09-18"]:
        absent |= both(day, "O") | both(f"2026-09-{int(day[-2:]) + 7}", "O")
    for first in ("2026-11-02", "2026-11-09", "2026-11-16"):
        start = date.fromisoformat(first)
        for n in range(5):
            if (day := start + timedelta(days=n)).isoformat() != "2026-11-06":
                absent |= both(day.isoformat(), "I")
    absent |= both("2026-11-23", "I")
    school, pupil = school_pupil(engine, "st-barnabas", absent)
    pa, pn = "persistent_absence", "penalty_notice_consideration"
    # What each day's sweep finds (worked out from the register: the run of unauthorised
    # days reaches 10 on Fri 25 Sep; the 15th day of illness is Mon 23 Nov).
    days = [
        ("2026-09-16", ["below_97", pa], [pa], []),
        ("2026-09-18", ["below_97", pn, pa], [pn], []),
        ("2026-09-22", ["below_97", pn, pa, "severe_absence"], ["severe_absence"], []),
        (
            "2026-09-25",
            ["below_97", pn, "attendance_return", pa, "severe_absence"],
            ["attendance_return"],
            [],
        ),
        ("2026-09-28", ["below_97", pn, pa, "severe_absence"], [], ["attendance_return"]),
        ("2026-10-01", ["below_97", pn, pa], [], ["severe_absence"]),
        ("2026-11-23", ["below_97", pn, "sickness_return", pa], ["sickness_return"], []),
    ]
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        # Mon 14 Sep: 14 of 16 sessions, 87.5%.
        handle = await start_case(
            temporal_env,
            school,
            pupil,
            task_queue,
            ThresholdsChanged("2026-09-14", ["below_97"], ["below_97"]),
        )
        today = date(2026, 9, 14)
        for day, holding, crossed, cleared in days:
            await temporal_env.fast_forward(handle, date.fromisoformat(day) - today)
            today = date.fromisoformat(day)
            await handle.signal(
                AttendanceCase.thresholds_changed,
                ThresholdsChanged(day, holding, crossed, cleared),
            )
            await told(handle, holding)
    with Session(engine) as session:
        returns = session.exec(
            select(LAReturn)
            .where(LAReturn.kind.in_(["attendance_return", "sickness_return"]))
            .order_by(LAReturn.id)
        ).all()
        assert [(r.kind, str(r.raised_on), r.status, r.pupil_id) for r in returns] == [
            ("attendance_return", "2026-09-25", "due", pupil.id),
            ("sickness_return", "2026-11-23", "due", pupil.id),
        ]
    assert chronology(engine, "return") == [
        "Attendance return to the LA: 10 continuous school days unauthorised",
        "Sickness return to the LA: 15 school days of illness",
    ]


async def test_sevenoaks_up_to_the_las_advice_and_back_down(
    temporal_env, engine, settings, task_queue
):
    # Unauthorised (O) all week, Mon 14 - Fri 18 Sep; present every other session.
    absent = {}
    for day in ("14", "15", "16", "17", "18"):
        absent |= both(f"2026-09-{day}", "O")
    school, pupil = school_pupil(engine, "sevenoaks", absent)
    ladder = "pastoral"
    pa, pn, below = "persistent_absence", "penalty_notice_consideration", "half_term_below_90"
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        # Mon 14 Sep: 14 of 16 sessions this half-term, 87.5%: the pastoral meeting.
        handle = await start_case(
            temporal_env,
            school,
            pupil,
            task_queue,
            ThresholdsChanged("2026-09-14", [below], [below]),
        )
        await until_stage(handle, ladder, "pastoral_meeting")
        await handle.execute_update(
            AttendanceCase.schedule_meeting,
            ScheduleMeetingInput(
                "2026-09-15T16:00", "parents and student", "Mr Hale", "senior_attendance_champion"
            ),
        )
        await temporal_env.fast_forward(handle, timedelta(days=2))
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged("2026-09-16", [below, pa], [pa]),
        )
        await told(handle, [below, pa])
        await handle.execute_update(
            AttendanceCase.record_meeting_outcome,
            MeetingOutcomeInput(attended=False, by="Mr Hale", role="senior_attendance_champion"),
        )
        # Fri 18 Sep: 10 unauthorised sessions in 10 school weeks: the DSL seeks the LA's
        # advice.
        await temporal_env.fast_forward(handle, timedelta(days=2))
        await handle.signal(
            AttendanceCase.thresholds_changed,
            ThresholdsChanged("2026-09-18", [below, pn, pa], [pn]),
        )
        await until_stage(handle, ladder, "la_advice")
        # Mon 2 Nov, a new half-term (86.84% for the year); Fri 20 Nov, 92 of 102 (90.2%):
        # no longer persistently absent; in both, ten unauthorised sessions still in the
        # window, so the LA's advice stays.
        today = date(2026, 9, 18)
        for day, holding, cleared in (
            ("2026-11-02", [pn, pa], [below]),
            ("2026-11-20", [pn], [pa]),
        ):
            await temporal_env.fast_forward(handle, date.fromisoformat(day) - today)
            today = date.fromisoformat(day)
            await handle.signal(
                AttendanceCase.thresholds_changed, ThresholdsChanged(day, holding, [], cleared)
            )
            await told(handle, holding)
            assert (await handle.query(AttendanceCase.status)).ladder_stages[ladder] == "la_advice"
        # Mon 30 Nov: the unauthorised week has left the 10-week window: back down, and on
        # off the ladder, the half-term's attendance being over 90% too.
        await temporal_env.fast_forward(handle, timedelta(days=10))
        await handle.signal(
            AttendanceCase.thresholds_changed, ThresholdsChanged("2026-11-30", [], [], [pn])
        )
        await until_stage(handle, ladder, None)

    name = "Pastoral support (§3.11, §7.3): "
    assert [s.removeprefix(name) for s in chronology(engine, "stage") if s.startswith(name)] == [
        "Meeting arranged by the Deputy Head Pastoral (over half_term_below_90)",
        "The DSL seeks the LA's advice (over penalty_notice_consideration)",
        "back to Meeting arranged by the Deputy Head Pastoral (back above the line)",
        "off the ladder (back above the line)",
    ]
