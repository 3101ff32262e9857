"""Absence episodes on the real Temporal dev server (time skipping) and real SQLite, each
following a seed school's own policy (policies/presets). The expected times, days and roles
are read by hand from the presets and the seeds they encode."""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from sqlmodel import Session, select
from temporalio import activity
from temporalio.client import WorkflowUpdateFailedError
from temporalio.worker import Replayer, Worker

from activities.cases import CaseActivities, CaseUpdate
from activities.episodes import EpisodeActivities, episode_procedure
from database import session_factory
from models.tables import (
    CaseRecord,
    ChronologyEntry,
    LAReturn,
    MarkAmendment,
    Pupil,
    RegisterMark,
    StaffTask,
)
from policies import load_policy
from tests.registers import add_pupil, both, register
from worker import build_worker
from workflows.episode import (
    AbsenceEpisode,
    AbsenceEpisodeInput,
    RecordContactInput,
    RecordVisitInput,
    RegisterToday,
)

# School days of Autumn 2 2026 on the test calendar (tests/conftest.py).
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
BACK = "2026-11-30"


def new_pupil(engine, school, serial: int = 1, absent_days: int = 0, **flags) -> Pupil:
    """A pupil present every day from 2 November, then N for `absent_days` days."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        pupil = add_pupil(session, school.id, serial)
        for flag, value in flags.items():
            setattr(pupil, flag, value)
        session.add(pupil)
        absent = {k: v for day in DAYS[:absent_days] for k, v in both(day, "N").items()}
        register(session, school.id, pupil, "2026-11-02", DAYS[-1], absent)
        return pupil


async def start(env, task_queue, school, pupil, first_day=DAYS[0]):
    """As the register-close sweep starts an episode: signal-with-start, the procedure read
    from the school's policy. (The ID carries the test's queue: the server is shared.)"""
    return await env.client.start_workflow(
        AbsenceEpisode.run,
        AbsenceEpisodeInput(school_id=school.id, pupil_id=pupil.id, first_day=first_day),
        id=f"absence-{pupil.id}-{first_day}-{task_queue}",
        task_queue=task_queue,
        start_signal="register_today",
        start_signal_args=[RegisterToday(day=first_day, am="N", pm="N")],
    )


async def absent(handle, days) -> None:
    for day in days:
        await handle.signal(AbsenceEpisode.register_today, RegisterToday(day, "N", "N"))


async def back(handle, day=BACK) -> None:
    await handle.signal(AbsenceEpisode.register_today, RegisterToday(day, "/", "\\"))


async def until(check, what: str, seconds: float = 20) -> None:
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def settled(handle, days: int) -> None:
    """Wait until the episode has taken in `days` days of the register."""

    async def taken() -> bool:
        return len((await handle.query(AbsenceEpisode.status)).days_absent) == days

    await until(taken, f"day {days} of the episode")


async def refused(handle, update, step) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(update, step)
    return str(failure.value.cause)


def tasks_of(session, kind: str | None = None) -> list[StaffTask]:
    query = select(StaffTask).where(StaffTask.kind != "overdue").order_by(StaffTask.id)
    if kind:
        query = query.where(StaffTask.kind == kind)
    return list(session.exec(query))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def due(task: StaffTask) -> datetime:
    """A task's due time as stored (UTC: November is GMT, so local time too)."""
    return task.due_at.replace(tzinfo=None)


def history(session) -> list[tuple[str, str]]:
    entries = session.exec(select(ChronologyEntry).order_by(ChronologyEntry.id))
    return [(e.kind, e.summary) for e in entries if e.kind != "reminder"]


class FlakyCaseWrites:
    """The worker's case writes, except that the first write raising a referral commits
    and then fails, as if the connection dropped before the answer came back: Temporal
    retries it, and the retry must write nothing twice."""

    def __init__(self, engine) -> None:
        self.cases = CaseActivities(session_factory(engine))
        self.failed = 0

    @activity.defn(name="apply_case_update")
    def apply_case_update(self, update: CaseUpdate) -> None:
        self.cases.apply_case_update(update)
        if update.returns and not self.failed:
            self.failed += 1
            raise RuntimeError("connection lost after the commit")


def flaky_worker(client, engine, task_queue) -> tuple[Worker, FlakyCaseWrites]:
    flaky = FlakyCaseWrites(engine)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[AbsenceEpisode],
        activities=[
            flaky.apply_case_update,
            flaky.cases.amend_register,
            EpisodeActivities(session_factory(engine)).load_episode_procedure,
        ],
        activity_executor=ThreadPoolExecutor(max_workers=4),
    )
    return worker, flaky


# The policy as the workflow carries it ---------------------------------------------------


def plan(policy: str, day: int, safeguarding: bool = False) -> list[tuple]:
    procedure = episode_procedure(load_policy(policy))
    return [
        (a.action, a.role, a.due) + (("may",) if a.optional else ())
        for a in procedure.actions_for(day, safeguarding)
    ]


def test_each_preset_becomes_a_day_by_day_procedure():
    # All Saints' §6: the office phones at 9.30; Appendix 2: a text every day with no
    # explanation, then phone checks (parents and emergency contacts) from day 2.
    assert plan("all-saints", 1) == [
        ("call_parents", "office_staff", "09:30"),
        ("text_parents", "office_staff", ""),
        ("call_emergency_contacts", "office_staff", "", "may"),
    ]
    assert plan("all-saints", 7) == [
        ("call_parents", "office_staff", ""),
        ("call_emergency_contacts", "office_staff", ""),
        ("text_parents", "office_staff", ""),
    ]
    # Springbank: a text at 10.30, a call by lunchtime; the attendance team calls or visits
    # with a calling card; day 3 missing persons; day 4 on, wider search and daily contact.
    assert plan("springbank", 1) == [
        ("text_parents", "office_staff", "10:30"),
        ("call_parents", "office_staff", "12:00"),
        ("home_visit", "attendance_team", ""),
        ("calling_card", "attendance_team", ""),
    ]
    assert plan("springbank", 3) == [
        ("home_visit", "attendance_team", ""),
        ("calling_card", "attendance_team", ""),
        ("missing_persons_referral", "attendance_team", ""),
    ]
    assert (
        plan("springbank", 4)
        == plan("springbank", 9)
        == [
            ("wider_search", "attendance_team", ""),
            ("daily_contact_attempts", "attendance_team", ""),
        ]
    )
    # Springbank's safeguarding path: the priority call at 9.30 with the DSL and social
    # worker told, the referral a day sooner (day 2), the wider search from day 3.
    assert plan("springbank", 1, safeguarding=True)[:3] == [
        ("call_parents", "office_staff", "09:30"),
        ("notify_dsl", "office_staff", "09:30"),
        ("notify_social_worker", "office_staff", "09:30"),
    ]
    assert ("missing_persons_referral", "attendance_team", "") in plan("springbank", 2, True)
    assert plan("springbank", 3, True)[0] == ("wider_search", "attendance_team", "")
    # St Barnabas': a call every day; letters home (a home visit may be made); the LA
    # referral on the 10th day by the Senior Attendance Champion, never repeated.
    assert plan("st-barnabas", 10)[0] == ("cme_referral", "senior_attendance_champion", "")
    assert "cme_referral" not in [a[0] for a in plan("st-barnabas", 11)]
    assert ("home_visit", "attendance_officer", "", "may") in plan("st-barnabas", 3)
    # ...and "sooner if deemed appropriate": day 3, by the DSL; daily calls go on.
    assert plan("st-barnabas", 3, True)[0] == ("cme_referral", "designated_safeguarding_lead", "")
    assert "cme_referral" not in [a[0] for a in plan("st-barnabas", 10, True)]
    assert ("call_parents", "office_staff", "") in plan("st-barnabas", 10, True)
    # Sevenoaks: Admin asks tutor, divisional head and health centre when the register
    # closes at 9.00, then the parents; then the missing-student protocol.
    assert [a[0] for a in plan("sevenoaks", 1)] == [
        "ask_tutor",
        "ask_divisional_head",
        "ask_health_centre",
        "call_parents",
        "email_parents",
        "notify_senior_staff",
        "notify_police",
    ]
    assert {a[2] for a in plan("sevenoaks", 1)} == {"09:00"}
    assert plan("sevenoaks", 2) == []


# First day ----------------------------------------------------------------------------


async def test_first_day_tasks_are_due_at_the_policys_times_and_return_closes(
    temporal_env, engine, make_school, task_queue
):
    all_saints, springbank = make_school("all-saints"), make_school("springbank")
    pupils = {
        "all-saints": new_pupil(engine, all_saints, 1, absent_days=1),
        "springbank": new_pupil(engine, springbank, 1, absent_days=1),
    }
    async with build_worker(temporal_env.client, engine=engine, task_queue=task_queue):
        handles = [
            await start(temporal_env, task_queue, school, pupils[school.policy])
            for school in (all_saints, springbank)
        ]
        for handle in handles:
            await back(handle, DAYS[1])
        results = [await handle.result() for handle in handles]
    assert [(r.closed_reason, r.days_absent) for r in results] == [
        ("back in school on 2026-11-17", 1),
        ("back in school on 2026-11-17", 1),
    ]
    with Session(engine) as session:
        tasks = {
            (t.school_id, t.kind): (due(t), t.role, t.status, t.summary) for t in tasks_of(session)
        }
    assert tasks == {
        # All Saints': no end of the school day in its policy: the text is due by midnight.
        (all_saints.id, "call_parents"): (
            at("2026-11-16 09:30"),
            "office_staff",
            "done",
            "Phone parents/carers (day 1 of absence)",
        ),
        (all_saints.id, "text_parents"): (
            at("2026-11-17 00:00"),
            "office_staff",
            "done",
            "Text parents/carers (day 1 of absence)",
        ),
        # Springbank: the school day ends at 3.15.
        (springbank.id, "text_parents"): (
            at("2026-11-16 10:30"),
            "office_staff",
            "done",
            "Text parents/carers (day 1 of absence)",
        ),
        (springbank.id, "call_parents"): (
            at("2026-11-16 12:00"),
            "office_staff",
            "done",
            "Phone parents/carers (day 1 of absence)",
        ),
        (springbank.id, "home_visit"): (
            at("2026-11-16 15:15"),
            "attendance_team",
            "done",
            "Home visit (day 1 of absence)",
        ),
        (springbank.id, "calling_card"): (
            at("2026-11-16 15:15"),
            "attendance_team",
            "done",
            "Leave a calling card (day 1 of absence)",
        ),
    }


# Contact made --------------------------------------------------------------------------


async def test_contact_made_amends_the_register_and_closes_the_episode(
    temporal_env, engine, school, task_queue, keep_history
):
    pupil = new_pupil(engine, school, absent_days=3)
    async with build_worker(temporal_env.client, engine=engine, task_queue=task_queue):
        handle = await start(temporal_env, task_queue, school, pupil)
        await absent(handle, DAYS[1:2])
        await settled(handle, 2)
        await handle.execute_update(
            AbsenceEpisode.record_contact,
            RecordContactInput("no_answer", by="J Smith", role="office_staff"),
        )
        with Session(engine) as session:
            before = (history(session), [(t.kind, t.status) for t in tasks_of(session)])
        # Wrong steps are refused with the reason, and change nothing.
        assert "role 'governor' may not record contact" in await refused(
            handle,
            AbsenceEpisode.record_contact,
            RecordContactInput("contact_made", by="A Governor", role="governor", reason="ill"),
        )
        assert "'/' is not an absence code" in await refused(
            handle,
            AbsenceEpisode.record_contact,
            RecordContactInput(
                "contact_made", by="J Smith", role="office_staff", reason="ill", code="/"
            ),
        )
        assert "say what the parent or carer gave" in await refused(
            handle,
            AbsenceEpisode.record_contact,
            RecordContactInput("contact_made", by="J Smith", role="office_staff", code="I"),
        )
        # St Barnabas' plans no home visit before day 3 (and then only "may").
        assert "no home visit is due" in await refused(
            handle,
            AbsenceEpisode.record_visit,
            RecordVisitInput("child_seen", by="P Officer", role="attendance_officer"),
        )
        with Session(engine) as session:
            assert (history(session), [(t.kind, t.status) for t in tasks_of(session)]) == before
        assert (await handle.query(AbsenceEpisode.status)).status == "open"

        await handle.execute_update(
            AbsenceEpisode.record_contact,
            RecordContactInput(
                "contact_made",
                by="J Smith",
                role="office_staff",
                reason="chickenpox, doctor seen",
                code="I",
            ),
        )
        result = await handle.result()
        # The recorded history replays on the current code: the workflow is deterministic.
        await Replayer(workflows=[AbsenceEpisode]).replay_workflow(await handle.fetch_history())
    reason = "contact made with parent/carer: chickenpox, doctor seen (register I)"
    assert (result.closed_reason, result.days_absent, result.referrals) == (reason, 2, [])
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
        amendments = session.exec(select(MarkAmendment).order_by(MarkAmendment.id)).all()
        assert [
            (str(a.day), a.session, a.original_code, a.new_code, a.amended_by, a.amended_role)
            for a in amendments
        ] == [
            ("2026-11-16", "AM", "N", "I", "J Smith", "office_staff"),
            ("2026-11-16", "PM", "N", "I", "J Smith", "office_staff"),
            ("2026-11-17", "AM", "N", "I", "J Smith", "office_staff"),
            ("2026-11-17", "PM", "N", "I", "J Smith", "office_staff"),
        ]
        assert {a.reason for a in amendments} == {"Parent contacted: chickenpox, doctor seen"}
        # Day 1: the call (an email "may" follow); day 2: the call again. The unanswered
        # call on day 2 brought its "may" steps in: an email, the emergency contacts.
        assert [(t.kind, t.summary, t.role) for t in tasks_of(session)] == [
            ("call_parents", "Phone parents/carers (day 1 of absence)", "office_staff"),
            ("call_parents", "Phone parents/carers (day 2 of absence)", "office_staff"),
            ("email_parents", "Email parents/carers (day 2 of absence, if needed)", "office_staff"),
            (
                "call_emergency_contacts",
                "Phone the emergency contacts (day 2 of absence, if needed)",
                "office_staff",
            ),
        ]
        assert {t.status for t in tasks_of(session)} == {"done"}
        record = session.exec(select(CaseRecord)).one()
        assert (record.status, record.closed_reason) == ("closed", reason)
        assert history(session) == [
            ("absence", "Day 1 of unexplained absence"),
            ("absence", "Day 2 of unexplained absence"),
            ("contact", "Phone: no answer"),
            ("contact", "Phone: contact made (chickenpox, doctor seen)"),
            (
                "register",
                "4 session(s) amended from N to I (illness (not medical or dental appointment))",
            ),
            ("closed", f"Episode closed: {reason}"),
        ]
    await keep_history(handle, "episode-contact-made")


async def test_a_closed_episode_refuses_further_steps(temporal_env, engine, school, task_queue):
    pupil = new_pupil(engine, school, absent_days=1)
    async with build_worker(temporal_env.client, engine=engine, task_queue=task_queue):
        with temporal_env.with_time_skipping_disabled():
            handle = await start(temporal_env, task_queue, school, pupil)
        await back(handle, DAYS[1])

        async def closed() -> bool:
            with Session(engine) as session:
                record = session.exec(select(CaseRecord)).first()
                return record is not None and record.status == "closed"

        await until(closed, "the episode to close")
        with Session(engine) as session:
            before = history(session)
        assert before[-1] == ("closed", "Episode closed: back in school on 2026-11-17")
        assert "closed (back in school on 2026-11-17)" in await refused(
            handle,
            AbsenceEpisode.record_contact,
            RecordContactInput(
                "contact_made", by="J Smith", role="office_staff", reason="ill", code="I"
            ),
        )
        # A sweep for a later day changes nothing either.
        await absent(handle, DAYS[2:3])
        with Session(engine) as session:
            assert history(session) == before
            assert session.exec(select(MarkAmendment)).all() == []
        await temporal_env.fast_forward(handle, timedelta(days=1))
        result = await handle.result()
    assert (result.closed_reason, result.days_absent) == ("back in school on 2026-11-17", 1)


# Referrals ----------------------------------------------------------------------------


async def test_springbank_refers_to_missing_persons_on_day_3_and_searches_from_day_4(
    temporal_env, engine, make_school, task_queue, keep_history
):
    springbank = make_school("springbank")
    pupil = new_pupil(engine, springbank, absent_days=5)
    worker, flaky = flaky_worker(temporal_env.client, engine, task_queue)
    async with worker:
        handle = await start(temporal_env, task_queue, springbank, pupil)
        await absent(handle, DAYS[1:2])
        await settled(handle, 2)
        # Day 2: the attendance team visits; nobody answers, a calling card is left.
        await handle.execute_update(
            AbsenceEpisode.record_visit,
            RecordVisitInput("card_left", by="T Team", role="attendance_team"),
        )
        # Visits are the attendance team's (and the officer's and leaders').
        await absent(handle, DAYS[2:3])
        await settled(handle, 3)
        assert "role 'office_staff' may not record a home visit" in await refused(
            handle,
            AbsenceEpisode.record_visit,
            RecordVisitInput("not_seen", by="J Smith", role="office_staff"),
        )
        await absent(handle, DAYS[3:5])
        await absent(handle, DAYS[2:3])  # a repeated sweep changes nothing
        await back(handle)
        result = await handle.result()
    assert flaky.failed == 1  # the referral's write was retried
    assert (result.closed_reason, result.days_absent) == ("back in school on 2026-11-30", 5)
    assert result.referrals == ["missing_persons_referral"]
    with Session(engine) as session:
        referral = session.exec(select(LAReturn)).one()
        assert (referral.kind, str(referral.raised_on), referral.figure, referral.summary) == (
            "missing_persons_referral",
            "2026-11-18",
            3.0,
            "Referral to missing persons on day 3 of absence",
        )
        assert [(k, s) for k, s in history(session) if k == "referral"] == [
            ("referral", "Referral to missing persons (day 3)")
        ]
        assert [(t.kind, t.role) for t in tasks_of(session, "missing_persons_referral")] == [
            ("missing_persons_referral", "attendance_team")
        ]
        # Day 4 and every later day: the wider search and daily calls and texts.
        assert [t.summary for t in tasks_of(session, "wider_search")] == [
            "Wider search: all contacts, siblings' schools, agencies (day 4 of absence)",
            "Wider search: all contacts, siblings' schools, agencies (day 5 of absence)",
        ]
        assert len(tasks_of(session, "daily_contact_attempts")) == 2
        assert len(tasks_of(session, "home_visit")) == 3  # days 1-3
        assert [s for k, s in history(session) if k == "visit"] == [
            "Home visit: no answer, calling card left"
        ]
    await keep_history(handle, "episode-springbank-missing")


async def test_st_barnabas_refers_to_the_la_on_the_tenth_day_once(
    temporal_env, engine, school, task_queue
):
    pupil = new_pupil(engine, school, absent_days=10)
    worker, flaky = flaky_worker(temporal_env.client, engine, task_queue)
    async with worker:
        handle = await start(temporal_env, task_queue, school, pupil)
        await absent(handle, DAYS[1:])
        await absent(handle, DAYS[-1:])  # a repeated sweep changes nothing
        await back(handle)
        result = await handle.result()
    assert flaky.failed == 1
    assert (result.days_absent, result.referrals) == (10, ["cme_referral"])
    with Session(engine) as session:
        referral = session.exec(select(LAReturn)).one()
        assert (referral.kind, str(referral.raised_on), referral.figure) == (
            "cme_referral",
            "2026-11-27",
            10.0,
        )
        assert [(t.kind, t.role) for t in tasks_of(session, "cme_referral")] == [
            ("cme_referral", "senior_attendance_champion")
        ]
        assert [s for k, s in history(session) if k == "referral"] == [
            "Referral to the local authority: child missing education (day 10)"
        ]
        assert len(tasks_of(session, "call_parents")) == 10
        assert len(tasks_of(session, "letter_home")) == 1  # day 3
        assert [k for k, _ in history(session)].count("absence") == 10


# Safeguarding -------------------------------------------------------------------------


async def test_a_pupil_with_a_social_worker_takes_the_shortened_path(
    temporal_env, engine, school, task_queue, keep_history
):
    pupil = new_pupil(engine, school, absent_days=4, social_worker=True)
    async with build_worker(temporal_env.client, engine=engine, task_queue=task_queue):
        handle = await start(temporal_env, task_queue, school, pupil)
        await settled(handle, 1)
        # The office may not record the DSL's home visit.
        assert "role 'office_staff' may not record a home visit" in await refused(
            handle,
            AbsenceEpisode.record_visit,
            RecordVisitInput("not_seen", by="J Smith", role="office_staff"),
        )
        await handle.execute_update(
            AbsenceEpisode.record_visit,
            RecordVisitInput(
                "not_seen", by="D Lead", role="designated_safeguarding_lead", note="curtains drawn"
            ),
        )
        # One visit was planned and it is recorded: another is refused.
        assert "no home visit is due" in await refused(
            handle,
            AbsenceEpisode.record_visit,
            RecordVisitInput("child_seen", by="D Lead", role="designated_safeguarding_lead"),
        )
        await absent(handle, DAYS[1:4])
        await back(handle, DAYS[4])
        state = await handle.query(AbsenceEpisode.status)
        result = await handle.result()
    assert (state.safeguarding, state.safeguarding_because) == (True, ["social worker"])
    assert (result.days_absent, result.referrals) == (4, ["cme_referral"])
    with Session(engine) as session:
        day_1 = [
            (t.kind, due(t), t.role)
            for t in tasks_of(session)
            if t.summary.endswith("(day 1 of absence)")
        ]
        assert day_1 == [
            ("call_parents", at("2026-11-16 09:15"), "office_staff"),
            ("notify_dsl", at("2026-11-16 09:15"), "office_staff"),
            ("notify_social_worker", at("2026-11-16 09:15"), "office_staff"),
            ("call_emergency_contacts", at("2026-11-16 15:15"), "designated_safeguarding_lead"),
            ("home_visit", at("2026-11-16 15:15"), "designated_safeguarding_lead"),
        ]
        referral = session.exec(select(LAReturn)).one()
        assert (referral.kind, str(referral.raised_on)) == ("cme_referral", "2026-11-18")
        assert [(t.kind, t.role) for t in tasks_of(session, "cme_referral")] == [
            ("cme_referral", "designated_safeguarding_lead")
        ]
        entries = history(session)
        assert entries[:2] == [
            ("absence", "Day 1 of unexplained absence"),
            (
                "safeguarding",
                "Safeguarding path (social worker): the shortened procedure; the designated "
                "safeguarding lead is told today",
            ),
        ]
        assert ("visit", "Home visit: child not seen. curtains drawn") in entries
        assert entries[-1] == ("closed", "Episode closed: back in school on 2026-11-20")
    await keep_history(handle, "episode-social-worker")
