"""Absence episodes on the real Temporal dev server (time skipping) and real SQLite."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select
from temporalio.client import WorkflowUpdateFailedError

from models.tables import (
    CaseRecord,
    ChronologyEntry,
    LAReturn,
    MarkAmendment,
    RegisterMark,
    StaffTask,
)
from tests.registers import add_pupil, both, register
from worker import build_worker
from workflows.episode import (
    AbsenceEpisode,
    AbsenceEpisodeInput,
    EpisodeAction,
    EpisodeDay,
    EpisodeProcedure,
    RecordContactInput,
    RecordVisitInput,
    RegisterToday,
)

# Springbank's day-by-day procedure (seed 004), shortened for the tests' purposes.
SPRINGBANK = EpisodeProcedure(
    days=[
        EpisodeDay(
            1,
            [
                EpisodeAction("text_parents", "office", "10:30"),
                EpisodeAction("call_parents", "office", "12:00"),
            ],
        ),
        EpisodeDay(
            2,
            [
                EpisodeAction("home_visit", "attendance_officer"),
                EpisodeAction("calling_card", "attendance_officer"),
            ],
        ),
        EpisodeDay(
            3,
            [
                EpisodeAction("home_visit", "attendance_officer"),
                EpisodeAction("missing_persons_referral", "attendance_officer"),
            ],
        ),
        EpisodeDay(4, [EpisodeAction("wider_search", "dsl")]),
    ],
)
# St Barnabas': call every day; referral as missing from education on the 10th day.
ST_BARNABAS = EpisodeProcedure(
    days=[EpisodeDay(n, [EpisodeAction("call_parents", "office", "09:30")]) for n in range(1, 10)]
    + [EpisodeDay(10, [EpisodeAction("cme_referral", "attendance_officer")])],
)
DAYS = [
    "2026-11-16",
    "2026-11-17",
    "2026-11-18",
    "2026-11-19",
    "2026-11-20",
    "2026-11-23",
    "2026-11-24",
    "2026-11-25",
    "2026-11-26",
    "2026-11-27",
]


@pytest.fixture
def pupil(engine, school):
    with Session(engine, expire_on_commit=False) as session, session.begin():
        pupil = add_pupil(session, school.id, 1)
        absent = {k: v for day in DAYS for k, v in both(day, "N").items()}
        register(session, school.id, pupil, "2026-11-02", DAYS[-1], absent)
        return pupil


async def start(env, task_queue, school, pupil, procedure, day) -> object:
    return await env.client.start_workflow(
        AbsenceEpisode.run,
        AbsenceEpisodeInput(school_id=school.id, pupil_id=pupil.id, procedure=procedure),
        id=f"absence-{pupil.id}-{task_queue}",
        task_queue=task_queue,
        start_signal="register_today",
        start_signal_args=[RegisterToday(day=day, am="N", pm="N")],
    )


async def test_episode_closes_on_contact_and_amends_the_register(
    temporal_env, engine, school, pupil, task_queue
):
    async with build_worker(temporal_env.client, engine=engine, task_queue=task_queue):
        handle = await start(temporal_env, task_queue, school, pupil, SPRINGBANK, DAYS[0])
        await handle.signal(AbsenceEpisode.register_today, RegisterToday(DAYS[1], "N", "N"))
        # Wrong steps are refused, with the reason, and change nothing.
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                AbsenceEpisode.record_contact,
                RecordContactInput(
                    "contact_made", by="A Governor", role="governor", reason="ill", code="I"
                ),
            )
        assert "may not record contact" in str(refused.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                AbsenceEpisode.record_contact,
                RecordContactInput(
                    "contact_made", by="J Smith", role="office", reason="ill", code="/"
                ),
            )
        assert "not an absence code" in str(refused.value.cause)

        await handle.execute_update(
            AbsenceEpisode.record_contact,
            RecordContactInput("no_answer", by="J Smith", role="office"),
        )
        await handle.execute_update(
            AbsenceEpisode.record_contact,
            RecordContactInput(
                "contact_made",
                by="J Smith",
                role="office",
                reason="chickenpox, doctor seen",
                code="I",
            ),
        )
        result = await handle.result()
    assert result.closed_reason == "contact made with parent/carer"
    assert result.days_absent == 2
    with Session(engine) as session:
        marks = session.exec(
            select(RegisterMark).where(
                RegisterMark.pupil_id == pupil.id, RegisterMark.day.in_(DAYS[:3])
            )
        ).all()
        # The two days of the episode became I; the third day was not part of it.
        assert sorted((str(m.day), m.session, m.code) for m in marks) == [
            ("2026-11-16", "AM", "I"),
            ("2026-11-16", "PM", "I"),
            ("2026-11-17", "AM", "I"),
            ("2026-11-17", "PM", "I"),
            ("2026-11-18", "AM", "N"),
            ("2026-11-18", "PM", "N"),
        ]
        amendments = session.exec(select(MarkAmendment)).all()
        assert {
            (a.original_code, a.new_code, a.amended_by, a.amended_role) for a in amendments
        } == {("N", "I", "J Smith", "office")}
        assert all("chickenpox" in a.reason for a in amendments)
        # Day 1: text and call; day 2: visit and card. All closed with the episode. (The
        # days are in the past for the server's clock, so "overdue" reminders are raised
        # too: that behaviour has its own test below.)
        tasks = session.exec(select(StaffTask).where(StaffTask.kind != "overdue")).all()
        assert sorted(t.kind for t in tasks) == [
            "call_parents",
            "calling_card",
            "home_visit",
            "text_parents",
        ]
        assert {t.status for t in tasks} == {"done"}
        record = session.exec(select(CaseRecord)).one()
        assert (record.status, record.closed_reason) == ("closed", "contact made with parent/carer")
        kinds = [
            e.kind
            for e in session.exec(select(ChronologyEntry).order_by(ChronologyEntry.id))
            if e.kind != "reminder"
        ]
        assert kinds == ["absence", "absence", "contact", "contact", "register", "closed"]


async def test_episode_ends_in_cme_referral_on_the_tenth_day(
    temporal_env, engine, school, pupil, task_queue
):
    async with build_worker(temporal_env.client, engine=engine, task_queue=task_queue):
        handle = await start(temporal_env, task_queue, school, pupil, ST_BARNABAS, DAYS[0])
        for day in DAYS[1:]:
            await handle.signal(AbsenceEpisode.register_today, RegisterToday(day, "N", "N"))
        # A repeated sweep for a day already seen changes nothing.
        await handle.signal(AbsenceEpisode.register_today, RegisterToday(DAYS[-1], "N", "N"))
        await handle.signal(AbsenceEpisode.register_today, RegisterToday("2026-11-30", "/", "\\"))
        result = await handle.result()
    assert result.closed_reason == "back in school"
    assert result.days_absent == 10
    assert result.referrals == ["cme_referral"]
    with Session(engine) as session:
        referral = session.exec(select(LAReturn)).one()
        assert (referral.kind, str(referral.raised_on), referral.figure) == (
            "cme_referral",
            "2026-11-27",
            10.0,
        )
        calls = session.exec(select(StaffTask).where(StaffTask.kind == "call_parents")).all()
        assert len(calls) == 9


async def test_first_day_call_not_made_by_its_time_is_flagged(
    temporal_env, engine, school, pupil, task_queue
):
    # A day a week ahead, so that its due times are ahead of the workflow's clock too.
    day = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()
    async with build_worker(temporal_env.client, engine=engine, task_queue=task_queue):
        with temporal_env.with_time_skipping_disabled():
            handle = await start(temporal_env, task_queue, school, pupil, SPRINGBANK, day)
        await temporal_env.fast_forward(handle, timedelta(days=6))
        with Session(engine) as session:
            assert session.exec(select(StaffTask).where(StaffTask.kind == "overdue")).all() == []
        await temporal_env.fast_forward(handle, timedelta(days=2))
        state = await handle.query(AbsenceEpisode.status)
        assert state.status == "open"
        await handle.execute_update(
            AbsenceEpisode.record_visit,
            RecordVisitInput(
                "child_seen",
                by="P Officer",
                role="attendance_officer",
                note="unwell, at home with parent",
            ),
        )
        result = await handle.result()
    assert result.closed_reason == "child seen on a home visit"
    with Session(engine) as session:
        overdue = session.exec(select(StaffTask).where(StaffTask.kind == "overdue")).one()
        assert overdue.role == "attendance_officer"
        assert "Text parents" in overdue.summary
