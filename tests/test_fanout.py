"""The sweep's fan-out on the real Temporal dev server and real SQLite: which pupils' cases
and episodes a register close starts or tells, with what, and that running the same day's
sweep again starts and duplicates nothing.

The register is written by hand on the conftest calendar (St Barnabas' policy: a letter
below 97%). Possible sessions from Thu 3 Sep 2026: 106 to Tue 24 Nov, 108 to Wed 25 Nov.
The cases and episodes run on the real clock (time skipping off), so the test reads what
they hold and have written rather than waiting for them to end: an episode stays until
midnight after it closes.
"""

import asyncio

import pytest
from sqlmodel import Session, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from models.tables import CaseRecord, ChronologyEntry
from tests.registers import add_pupil, both, register
from worker import build_worker
from workflows.case import AttendanceCase
from workflows.episode import AbsenceEpisode
from workflows.sweep import RegisterCloseInput, RegisterCloseResult, RegisterCloseSweep

TUE, WED = "2026-11-24", "2026-11-25"
TRUANT_DAYS = ["2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]


@pytest.fixture
def pupils(engine, school):
    """steady: always present. truant: O on both sessions of five days last week (10 of
    106 sessions: 90.6%, and 10 unauthorised sessions in 10 school weeks). absent: N on
    Tuesday and Wednesday (104 of 106 on Tuesday: 98.1%; 104 of 108 on Wednesday: 96.3%,
    below 97%). back: N on Tuesday, present on Wednesday. new: present to Tuesday, N on
    Wednesday morning, the afternoon not marked yet (a sweep at morning register close).
    unmarked: present to Tuesday, no mark at all on Wednesday: no register, so no
    absence episode (the office chases the register, not the parents)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        made = {
            name: add_pupil(session, school.id, n)
            for n, name in enumerate(
                ["steady", "truant", "absent", "back", "new", "unmarked"], start=1
            )
        }
        start = "2026-09-03"
        register(session, school.id, made["steady"], start, WED)
        truant = {k: v for day in TRUANT_DAYS for k, v in both(day, "O").items()}
        register(session, school.id, made["truant"], start, WED, truant)
        register(session, school.id, made["absent"], start, WED, both(TUE, "N") | both(WED, "N"))
        register(session, school.id, made["back"], start, WED, both(TUE, "N"))
        register(session, school.id, made["new"], start, WED, {(WED, "AM"): "N", (WED, "PM"): ""})
        register(session, school.id, made["unmarked"], start, TUE)
        return {name: pupil.id for name, pupil in made.items()}


async def sweep(
    client: Client, school_id: int, day: str, run: str, tq: str, keep_history=None
) -> RegisterCloseResult:
    handle = await client.start_workflow(
        RegisterCloseSweep.run,
        RegisterCloseInput(school_id=school_id, as_of=day, list_changes=True),
        id=f"sweep-{run}-{tq}",
        task_queue=tq,
    )
    result = await handle.result()
    if keep_history:
        await keep_history(handle, f"sweep-{run}")
    return result


async def eventually(check, what: str):
    """The workflows run on their own after the sweep: wait (briefly) for them."""
    for _ in range(200):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def workflow_ids(client: Client, task_queue: str) -> dict[str, str]:
    """Every case and episode on the test's task queue: workflow ID -> run ID."""
    found = {}
    async for execution in client.list_workflows(
        f"TaskQueue = '{task_queue}' AND WorkflowType IN ('AttendanceCase', 'AbsenceEpisode')"
    ):
        found[execution.id] = execution.run_id
    return found


async def test_sweep_starts_cases_and_episodes_once(
    temporal_env, engine, settings, school, pupils, task_queue, keep_history
):
    client = temporal_env.client
    ids = pupils
    case = {name: f"attendance-case-{ids[name]}-2026" for name in ids}
    async with build_worker(client, engine=engine, task_queue=task_queue, settings=settings):
        # The cases and episodes run on the real clock: nothing skips to the year's end.
        with temporal_env.with_time_skipping_disabled():
            tuesday = await sweep(client, school.id, TUE, "tue", task_queue)
            assert tuesday.fan_out.cases_started == 1  # the truant
            assert tuesday.fan_out.episodes_started == 2  # absent and back
            assert (tuesday.fan_out.cases_signalled, tuesday.fan_out.episodes_signalled) == (0, 0)

            truant = client.get_workflow_handle(case["truant"])
            await eventually(
                lambda: _holding(truant, ["below_97", "penalty_notice_consideration"]),
                "the truant's case holds both thresholds",
            )
            await eventually(
                lambda: _stage(truant, "continued_absence", "concern_letter"),
                "the truant's case reaches the letter home",
            )

            # Both of Tuesday's episodes have written their first day before Wednesday.
            for name in ("absent", "back"):
                episode = client.get_workflow_handle(f"absence-{ids[name]}-{TUE}")
                await eventually(lambda e=episode: _case_record(engine, e.id, "open"), name)

            wednesday = await sweep(client, school.id, WED, "wed", task_queue, keep_history)
            fanned = wednesday.fan_out
            assert (fanned.cases_started, fanned.cases_signalled) == (1, 0)  # absent: below 97%
            assert fanned.episodes_started == 1  # new (unmarked has no register, no episode)
            assert fanned.episodes_signalled == 2  # absent (still away) and back (returned)

            absent_episode = client.get_workflow_handle(f"absence-{ids['absent']}-{TUE}")
            state = await eventually(
                lambda: _days_absent(absent_episode, 2), "the absent pupil's second day"
            )
            assert state.status == "open"
            back = client.get_workflow_handle(f"absence-{ids['back']}-{TUE}")
            # The pupil back in school: their episode is told, closes and says why.
            reason = f"back in school on {WED}"
            state = await eventually(lambda: _closed(back), "the returned pupil's episode")
            assert (state.closed_reason, state.days_absent) == (reason, [TUE])
            await eventually(
                lambda: _case_record(engine, back.id, "closed"), "the episode's record closed"
            )
            assert f"Episode closed: {reason}" in _entries(engine, back.id)
            new = client.get_workflow_handle(f"absence-{ids['new']}-{WED}")
            state = await eventually(lambda: _days_absent(new, 1), "the new absence")
            assert (state.first_day, state.sessions_unexplained) == (WED, [(WED, "AM")])
            absent_case = client.get_workflow_handle(case["absent"])
            status = await eventually(
                lambda: _holding(absent_case, ["below_97"]), "the absent pupil's case"
            )
            assert status.opened_on == WED
            started = await eventually(
                lambda: _all_listed(client, task_queue, 5), "five workflows listed"
            )
            assert set(started) == {
                case["truant"],
                case["absent"],
                f"absence-{ids['absent']}-{TUE}",
                f"absence-{ids['back']}-{TUE}",
                f"absence-{ids['new']}-{WED}",
            }
            await eventually(lambda: _case_record(engine, new.id, "open"), "the new record")
            before = _day_entries(engine)

            # The same day again (a retried sweep, or one started by hand): nothing new.
            again = await sweep(client, school.id, WED, "wed-again", task_queue)
            assert (again.fan_out.cases_started, again.fan_out.episodes_started) == (0, 0)
            assert again.fan_out.cases_signalled == 1  # absent's case: the same day, ignored
            assert again.fan_out.episodes_signalled == 2  # absent and new, ignored
            assert again.changes == wednesday.changes
            # Each has taken the repeated signal: whatever it would do, it has done.
            for handle, signals in ((absent_case, 2), (absent_episode, 3), (new, 2)):
                await eventually(lambda h=handle, n=signals: _signals_handled(h, n), handle.id)
            assert await workflow_ids(client, task_queue) == started
            assert (await _days_absent(absent_episode, 2)).days_absent == [TUE, WED]
            assert (await _days_absent(new, 1)).days_absent == [WED]
            assert _day_entries(engine) == before
            assert (await absent_case.query(AttendanceCase.status)).holding == ["below_97"]

    # Neither the steady pupil nor the unmarked one has a case or an episode.
    for name in ("steady", "unmarked"):
        assert not [w for w in started if w == case[name] or w.startswith(f"absence-{ids[name]}-")]


async def _stage(handle, ladder: str, stage: str) -> bool:
    status = await handle.query(AttendanceCase.status)
    return status.ladder_stages.get(ladder) == stage


async def _holding(handle, holding: list[str]):
    status = await handle.query(AttendanceCase.status)
    return status if status.holding == holding and status.opened_on else None


async def _days_absent(handle, count: int):
    state = await handle.query(AbsenceEpisode.status)
    return state if len(state.days_absent) == count else None


async def _all_listed(client: Client, task_queue: str, count: int):
    found = await workflow_ids(client, task_queue)
    return found if len(found) == count else None


async def _signals_handled(handle, count: int) -> bool:
    """The workflow has received `count` signals and finished a workflow task after the
    last: whatever a repeated signal would do, it has done."""
    events = [event async for event in handle.fetch_history_events()]
    signalled = [
        i
        for i, e in enumerate(events)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    ]
    return len(signalled) >= count and any(
        e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        for e in events[signalled[-1] :]
    )


async def _closed(handle):
    state = await handle.query(AbsenceEpisode.status)
    return state if state.status == "closed" else None


async def _case_record(engine, case_id: str, status: str) -> bool:
    with Session(engine) as session:
        record = session.get(CaseRecord, case_id)
        return record is not None and record.status == status


def _entries(engine, case_id: str) -> list[str]:
    with Session(engine) as session:
        return list(
            session.exec(select(ChronologyEntry.summary).where(ChronologyEntry.case_id == case_id))
        )


def _day_entries(engine) -> list[tuple[str, str, str]]:
    """The episodes' "day N of unexplained absence" entries: one per pupil and day."""
    with Session(engine) as session:
        entries = session.exec(
            select(ChronologyEntry).where(ChronologyEntry.kind == "absence")
        ).all()
        found = sorted((e.case_id, str(e.on_day), e.summary) for e in entries)
    assert len(found) == len(set(found))
    return found
