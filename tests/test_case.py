"""Attendance cases on the real Temporal dev server (time skipping), real SQLite and a real
SMTP server on loopback: each walk follows a school's own ladder from its policy preset.

Dates are on the conftest calendar (the demo's Kent-style one); every rate below is worked
out by hand from the register the test writes.
"""

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import Session, select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from models.letters import Letter
from models.tables import (
    CaseRecord,
    ChronologyEntry,
    Contact,
    LegalDecision,
    PenaltyNotice,
    StaffTask,
)
from tests.registers import add_pupil, both, register
from worker import build_worker
from workflows.case import (
    AttendanceCase,
    AttendanceCaseInput,
    ContractInput,
    DecisionInput,
    LAOutcomeInput,
    MeetingOutcomeInput,
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
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{ladder} is at {status.ladder_stages.get(ladder)}, not {stage}")


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
    temporal_env, engine, settings, school, st_barnabas_pupil, task_queue
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
        assert letters == [
            "st_barnabas/below_97",
            "st_barnabas/sac_meeting",
            "st_barnabas/support_plan",
            "la/penalty_notice_request",
            "st_barnabas/la_referral_notice",
        ] + ["st_barnabas/improvement"] * 4
        record = session.get(CaseRecord, case_id)
        assert record.status == "closed"
        assert session.exec(select(StaffTask).where(StaffTask.status == "open")).all() == []
