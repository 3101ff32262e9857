"""The engine's scheduled work besides the register-close sweep, on the real dev server:
the day's print pack built from the real outbox at the end of each school's day, and the
September baseline of last year's persistent absence (All Saints' Appendix 1)."""

import json
import uuid
from datetime import date
from pathlib import Path

from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.worker import Worker

from activities.letters import LetterActivities
from letters.service import LetterService
from models.calendar import load_calendar
from models.letters import Letter
from models.tables import ChronologyEntry
from schedules import (
    half_termly_schedule_id,
    print_pack_schedule_id,
    school_schedules,
    september_baseline_schedule_id,
    sync_schedules,
)
from tests.conftest import add_school
from tests.registers import add_pupil, register
from tests.test_case import add_parents, settled, until_stage
from tests.test_letters import add_family, flat, pdf_text, send
from worker import build_worker
from workflows.baseline import SeptemberBaseline, SeptemberBaselineInput
from workflows.case import AttendanceCase
from workflows.half_termly import HalfTermlyLetters, HalfTermlyLettersInput
from workflows.print_pack import DailyPrintPack, DailyPrintPackInput


async def test_the_days_postal_letters_are_packed_by_the_workflow(
    temporal_env, engine, settings, task_queue, keep_history
):
    service = LetterService(settings, engine)
    # Two families whose fathers take letters by post: one pack, by postcode.
    post = dict(title="Mr", forename="Al", relationship="Father", preferred_channel="post")
    first = add_family(engine, serial=7, surname="Abbott", parents=(post | {"surname": "Abbott"},))
    second = add_family(engine, serial=3, surname="Young", parents=(post | {"surname": "Young"},))
    for n, (school_id, pupil_id) in enumerate((first, second)):
        await send(service, school_id, pupil_id, key=f"case-{n}/letter")
    today = date.today().isoformat()
    async with Worker(
        temporal_env.client,
        task_queue=task_queue,
        workflows=[DailyPrintPack],
        activities=[LetterActivities(service).build_print_pack],
    ):
        handle = await temporal_env.client.start_workflow(
            DailyPrintPack.run,
            DailyPrintPackInput(school_id=first[0], day=today),
            id=f"print-pack-test-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        pack = await handle.result()
        await keep_history(handle, "print-pack")
        assert (pack.letters, pack.day) == (2, today)
        text = flat(pdf_text(Path(pack.path).read_bytes()))
        assert text.index("ST13 3AB") < text.index("ST13 7AB")
        assert "Dear Mr Young," in text and "Dear Mr Abbott," in text
        # Run again by a retried schedule: the same pack, nothing printed twice.
        again = await temporal_env.client.execute_workflow(
            DailyPrintPack.run,
            DailyPrintPackInput(school_id=first[0], day=today),
            id=f"print-pack-test-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        assert (again.letters, again.sha256) == (2, pack.sha256)
    await service.close()


async def test_each_school_gets_its_print_pack_at_the_end_of_its_day(temporal_env, engine):
    # St Barnabas' day ends at 15:15; All Saints' policy gives no end of day, so its pack
    # is built when the afternoon register closes (13:10).
    with Session(engine, expire_on_commit=False) as session:
        barnabas = add_school(session, name="St Barnabas", urn="118100", policy="st-barnabas")
        saints = add_school(session, name="All Saints", urn="145800", policy="all-saints")
        session.commit()
    client: Client = temporal_env.client
    queue = f"test-{uuid.uuid4()}"  # no worker polls it: nothing the schedules start runs
    ids = await sync_schedules(client, engine=engine, task_queue=queue)
    try:
        assert set(ids) == {*school_schedules(barnabas, queue), *school_schedules(saints, queue)}
        for school, hour, minute in ((barnabas, 15, 15), (saints, 13, 10)):
            described = await client.get_schedule_handle(
                print_pack_schedule_id(school.id)
            ).describe()
            calendar = described.schedule.spec.calendars[0]
            assert (calendar.hour[0].start, calendar.minute[0].start) == (hour, minute)
            assert (calendar.day_of_week[0].start, calendar.day_of_week[0].end) == (1, 5)
            assert described.schedule.spec.time_zone_name == "Europe/London"
            assert described.schedule.action.workflow == "DailyPrintPack"
        # Only All Saints' policy starts last year's persistently absent pupils on a ladder.
        assert september_baseline_schedule_id(saints.id) in ids
        assert september_baseline_schedule_id(barnabas.id) not in ids
        # Only All Saints' sends every family a half-termly letter.
        assert half_termly_schedule_id(saints.id) in ids
        assert half_termly_schedule_id(barnabas.id) not in ids
        described = await client.get_schedule_handle(
            september_baseline_schedule_id(saints.id)
        ).describe()
        calendar = described.schedule.spec.calendars[0]
        assert (calendar.month[0].start, calendar.day_of_month[0].start) == (9, 1)
        assert described.schedule.action.workflow == "SeptemberBaseline"
    finally:
        for id_ in ids:
            await client.get_schedule_handle(id_).delete()


async def test_last_years_persistently_absent_pupils_start_the_year_at_stage_1(
    temporal_env, engine, settings, task_queue, keep_history
):
    # 2025/26 has 194 school days (388 sessions): Autumn 1 from Wed 3 Sep 38, Autumn 2 35,
    # Spring 1 30, Spring 2 25, Summer 1 29 (bank holiday Mon 4 May), Summer 2 to Tue 21
    # Jul 37. Amir missed all of Summer 2 (74 sessions): 314 of 388, 80.9%, persistently
    # absent. Zoe missed nothing.
    with Session(engine, expire_on_commit=False) as session, session.begin():
        school = add_school(session, name="All Saints", urn="145801", policy="all-saints")
        absent, present = add_pupil(session, school.id, 1), add_pupil(session, school.id, 2)
        summer_2 = {
            (day.isoformat(), half): "I"
            for day in school_days(session, school.id, "2026-06-01", "2026-07-21")
            for half in ("AM", "PM")
        }
        assert len(summer_2) == 74
        register(session, school.id, absent, "2025-09-03", "2026-07-21", summer_2)
        register(session, school.id, present, "2025-09-03", "2026-07-21")
        for pupil in (absent, present):
            add_parents(session, pupil.id)
    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):

        async def run_baseline():
            # Without time skipping: the case's review timer (1 Oct) must not fire meanwhile.
            with temporal_env.with_time_skipping_disabled():
                handle = await temporal_env.client.start_workflow(
                    SeptemberBaseline.run,
                    SeptemberBaselineInput(school_id=school.id, as_of="2026-09-01"),
                    id=f"september-baseline-test-{uuid.uuid4()}",
                    task_queue=task_queue,
                )
                return handle, await handle.result()

        baseline, sent = await run_baseline()
        await keep_history(baseline, "september-baseline")
        assert (sent.pupils, sent.year_ended) == (1, "2026-07-21")
        handle = temporal_env.client.get_workflow_handle(f"attendance-case-{absent.id}-2026")
        await until_stage(handle, "stages", "stage_1")
        # Sent again (a retried schedule): the case is on the rung already, nothing new.
        _, again = await run_baseline()
        assert again.pupils == 1
        await settled(handle)
        status = await handle.query(AttendanceCase.status)
        assert status.ladder_stages["stages"] == "stage_1"
        assert "review on 2026-10-01:stages" in status.awaiting
        await keep_history(handle, "case-all-saints-september-baseline")
    with Session(engine) as session:
        letters = session.exec(select(Letter)).all()
        stages = [
            e.summary
            for e in session.exec(select(ChronologyEntry).where(ChronologyEntry.kind == "stage"))
        ]
    assert [(lt.pupil_id, lt.template) for lt in letters] == [(absent.id, "all_saints/stage_1_pa")]
    assert json.loads(letters[0].data)["data"]["previous_year_rate"] == round(100 * 314 / 388, 2)
    assert stages == [
        "Attendance stages (Appendix 1): Stage 1: attendance is causing concern "
        "(persistently absent last year: 80.9% to 2026-07-21)"
    ]


def school_days(session: Session, school_id: int, first: str, last: str) -> list[date]:
    calendar = load_calendar(session=session, school_id=school_id)
    return calendar.school_days(date.fromisoformat(first), date.fromisoformat(last))


async def test_every_family_gets_the_half_termly_letter_on_the_last_day_of_the_half_term(
    temporal_env, engine, settings, task_queue, keep_history
):
    # Two All Saints families; Autumn 1 ends on Fri 23 Oct 2026.
    pupils = [add_family(engine, urn="145802", serial=n) for n in (1, 2)]

    async def run(as_of: str):
        handle = await temporal_env.client.start_workflow(
            HalfTermlyLetters.run,
            HalfTermlyLettersInput(school_id=pupils[0][0], as_of=as_of),
            id=f"half-termly-test-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        return handle, await handle.result()

    async with build_worker(
        temporal_env.client, engine=engine, task_queue=task_queue, settings=settings
    ):
        _, before = await run("2026-10-22")  # Thursday: not the last day
        assert (before.template, before.letters) == (None, 0)
        handle, sent = await run("2026-10-23")
        assert (sent.template, sent.letters) == ("all_saints/half_termly", 2)
        await keep_history(handle, "half-termly-letters")
        _, again = await run("2026-10-23")  # a repeated run sends nothing twice
        assert again.letters == 2
        history = await handle.fetch_history()
    with Session(engine) as session:
        letters = session.exec(select(Letter).order_by(Letter.pupil_id)).all()
    assert [(lt.pupil_id, lt.template) for lt in letters] == [
        (pupil_id, "all_saints/half_termly") for _, pupil_id in pupils
    ]
    # The father in each family takes letters by post: the day's pack is built again.
    built = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert built == ["send_half_termly_letters", "build_print_pack"]
