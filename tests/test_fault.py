"""The worker process killed in the middle of a case: the case goes on in a new worker
process, nothing is lost and nothing is written or sent twice.

The worker is `worker.py` itself, run as a separate process (settings from the
environment) against the test session's dev server, a SQLite file of its own and its own
task queue, and killed with SIGKILL: no clean shutdown, no chance to finish what it holds.
It is killed right after a step, with the case in its cache and a timer set, so the next
worker has only the server's history to go on. (Killed while an activity runs, the attempt
is retried only after the activity's start-to-close timeout, minutes of real time: the
case's activities have no heartbeat timeout, and time skipping waits for a running one.)

St Barnabas' policy, the register of tests/test_case.py's St Barnabas walk: O on three
Monday mornings in September and both sessions of Mon 16 Nov; on Fri 13 Nov 89 of 92
sessions (96.74%) is below 97%, so a letter home; from 13 Nov to Fri 11 Dec, four school
weeks, 40 of 42 sessions (95.24%) is no improvement on the 96.67% before, so a meeting with
the Senior Attendance Champion (a letter and a task to arrange it).
"""

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from sqlmodel import Session, func, select

from models.letters import Letter, Outbox
from models.tables import ChronologyEntry, StaffTask
from schedules import school_schedules
from tests.registers import both
from tests.test_case import school_pupil, settled, start_case, until_stage
from workflows.case import AttendanceCase, ScheduleMeetingInput, ThresholdsChanged

ROOT = Path(__file__).resolve().parent.parent
LADDER = "continued_absence"


def start_worker(env, settings, task_queue: str, log: Path) -> subprocess.Popen:
    """`python worker.py`, configured as an operator would: by environment variables."""
    environment = os.environ | {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "DATABASE_URL": settings.database_url,
        "ATTEND_TASK_QUEUE": task_queue,
        "ATTEND_LETTERS_DIR": str(settings.letters_dir),
        "ATTEND_SMTP_HOST": settings.smtp_host,
        "ATTEND_SMTP_PORT": str(settings.smtp_port),
        "ATTEND_SMTP_STARTTLS": "false",
        "ATTEND_LETTERS_PDF_PROCESSES": "0",
    }
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=environment, stdout=out, stderr=out
        )


def kill(worker: subprocess.Popen) -> None:
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(timeout=10) == -signal.SIGKILL


def counts(engine) -> dict[str, int]:
    with Session(engine) as session:
        return {
            table.__name__: session.exec(select(func.count()).select_from(table)).one()
            for table in (ChronologyEntry, Letter, StaffTask, Outbox)
        }


async def test_worker_killed_mid_case_loses_and_duplicates_nothing(
    temporal_env, engine, settings, mailbox, task_queue, tmp_path
):
    absent = {("2026-09-07", "AM"): "O", ("2026-09-14", "AM"): "O", ("2026-09-21", "AM"): "O"}
    absent |= both("2026-11-16", "O")
    school, pupil = school_pupil(engine, "st-barnabas", absent)
    box, _ = mailbox
    mail_before = len(box.messages)
    log = tmp_path / "worker.log"
    env = temporal_env

    worker = start_worker(env, settings, task_queue, log)
    try:
        handle = await start_case(
            env,
            school,
            pupil,
            task_queue,
            ThresholdsChanged("2026-11-13", ["below_97"], ["below_97"]),
        )
        await until_stage(handle, LADDER, "concern_letter")
        await letters_sent(engine, 1)
        first = counts(engine)

        # Killed right after the step, with the case in its cache and its review timer set;
        # a new process has none of it but the server's history.
        kill(worker)
        worker = start_worker(env, settings, task_queue, log)
        assert counts(engine) == first
        await env.fast_forward(handle, timedelta(days=28))
        await until_stage(handle, LADDER, "sac_meeting")
        await letters_sent(engine, 2)

        # Killed again; a third worker takes the staff's next step.
        kill(worker)
        worker = start_worker(env, settings, task_queue, log)
        await handle.execute_update(
            AttendanceCase.schedule_meeting,
            ScheduleMeetingInput(
                "2026-12-15T15:30", "both parents", "Mrs Duncombe", "senior_attendance_champion"
            ),
        )
        await settled(handle)
        status = await handle.query(AttendanceCase.status)
    finally:
        if worker.poll() is None:
            kill(worker)
        for id_ in school_schedules(school, task_queue):
            await env.client.get_schedule_handle(id_).delete()

    assert first == {"ChronologyEntry": 3, "Letter": 1, "StaffTask": 0, "Outbox": 2}
    with Session(engine) as session:
        entries = session.exec(select(ChronologyEntry).order_by(ChronologyEntry.id)).all()
        letters = session.exec(select(Letter).order_by(Letter.id)).all()
        tasks = session.exec(select(StaffTask).order_by(StaffTask.id)).all()
        outbox = session.exec(select(Outbox)).all()
    # The chronology whole, each entry once: the two stages, each letter's copy to each
    # parent, the meeting arranged by the third worker.
    both_parents = "emailed to Mrs Jane Example and Mr John Example at"
    below_97 = f"Letter “Test's attendance” (st_barnabas/below_97) {both_parents}"
    sac_meeting = (
        "Letter “Test's attendance: a meeting with our Senior Attendance Champion” "
        f"(st_barnabas/sac_meeting) {both_parents}"
    )
    expected = [
        ("stage", "If absence continues: Letter home (over below_97)"),
        *(("letter", f"{below_97} {a}@example.org") for a in ("jane", "john")),
        (
            "stage",
            "If absence continues: Meeting with the Senior Attendance Champion "
            "(no improvement (95.2% since 2026-11-13))",
        ),
        *(("letter", f"{sac_meeting} {a}@example.org") for a in ("jane", "john")),
        ("meeting", "Meeting arranged for 15/12/2026 15:30 with both parents"),
    ]
    # The two parents' copies of a letter go out concurrently, in either order.
    got = [(e.kind, e.summary) for e in entries]

    def in_turn(found: list) -> list:
        return [found[0], sorted(found[1:3]), found[3], sorted(found[4:6]), *found[6:]]

    assert in_turn(got) == in_turn(expected)
    assert [lt.template for lt in letters] == ["st_barnabas/below_97", "st_barnabas/sac_meeting"]
    # The task to arrange the meeting, done once it was arranged; the meeting's own.
    assert [(t.kind, t.status) for t in tasks] == [("meeting", "done"), ("meeting_held", "open")]
    # Each letter emailed to each parent once.
    assert sorted((o.letter_id, o.status) for o in outbox) == [
        (letters[0].id, "sent"),
        (letters[0].id, "sent"),
        (letters[1].id, "sent"),
        (letters[1].id, "sent"),
    ]
    assert sorted(m.rcpt_tos[0] for m in box.messages[mail_before:]) == [
        "jane@example.org",
        "jane@example.org",
        "john@example.org",
        "john@example.org",
    ]
    assert status.ladder_stages == {LADDER: "sac_meeting"}
    assert "record_meeting_outcome" in status.available_actions


async def letters_sent(engine, count: int) -> None:
    for _ in range(400):
        with Session(engine) as session:
            outbox = session.exec(select(Outbox)).all()
            letters = session.exec(select(func.count()).select_from(Letter)).one()
        if letters == count and outbox and all(o.status == "sent" for o in outbox):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} letters were not all sent")
