"""Each school's Temporal Schedules, in the school's time zone: on weekdays the
register-close sweep at the close time its policy gives and the day's print pack at the
end of its school day, and the half-termly letters check when the afternoon register
closes if its policy sends them; on 1 September the baseline of last year's persistent
absence, if its policy has one."""

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from models.tables import School
from policies import load_policy
from workflows.baseline import SeptemberBaseline, SeptemberBaselineInput
from workflows.half_termly import HalfTermlyLetters, HalfTermlyLettersInput
from workflows.print_pack import DailyPrintPack, DailyPrintPackInput
from workflows.sweep import RegisterCloseInput, RegisterCloseSweep


def schedule_id(school_id: int) -> str:
    return f"register-close-{school_id}"


def print_pack_schedule_id(school_id: int) -> str:
    return f"print-pack-{school_id}"


def half_termly_schedule_id(school_id: int) -> str:
    return f"half-termly-letters-{school_id}"


def september_baseline_schedule_id(school_id: int) -> str:
    return f"september-baseline-{school_id}"


# Early on 1 September, before any register of the new year closes.
SEPTEMBER_BASELINE_AT = ScheduleCalendarSpec(
    month=[ScheduleRange(9)],
    day_of_month=[ScheduleRange(1)],
    hour=[ScheduleRange(6)],
    comment="the September baseline, 1 September",
)


def school_schedules(school: School, task_queue: str) -> dict[str, Schedule]:
    """Every Schedule the school's policy calls for, by ID."""
    schedules = {
        schedule_id(school.id): register_close_schedule(school, task_queue),
        print_pack_schedule_id(school.id): print_pack_schedule(school, task_queue),
    }
    policy = load_policy(school.policy)
    if policy.half_termly_letter:
        schedules[half_termly_schedule_id(school.id)] = Schedule(
            action=ScheduleActionStartWorkflow(
                HalfTermlyLetters.run,
                HalfTermlyLettersInput(school_id=school.id, time_zone=policy.timezone),
                id=half_termly_schedule_id(school.id),
                task_queue=task_queue,
            ),
            spec=_weekdays_at(
                policy.register.pm.closes,
                policy.timezone,
                "half-termly letters, if the half-term ends today",
            ),
        )
    if any(ladder.september_previous_year_pa for ladder in policy.ladders):
        schedules[september_baseline_schedule_id(school.id)] = Schedule(
            action=ScheduleActionStartWorkflow(
                SeptemberBaseline.run,
                SeptemberBaselineInput(school_id=school.id, time_zone=policy.timezone),
                id=september_baseline_schedule_id(school.id),
                task_queue=task_queue,
            ),
            spec=ScheduleSpec(calendars=[SEPTEMBER_BASELINE_AT], time_zone_name=policy.timezone),
        )
    return schedules


def _weekdays_at(clock: str, time_zone: str, comment: str) -> ScheduleSpec:
    hour, minute = (int(part) for part in clock.split(":"))
    return ScheduleSpec(
        calendars=[
            ScheduleCalendarSpec(
                hour=[ScheduleRange(hour)],
                minute=[ScheduleRange(minute)],
                day_of_week=[ScheduleRange(1, 5)],
                comment=comment,
            )
        ],
        time_zone_name=time_zone,
    )


def print_pack_schedule(school: School, task_queue: str) -> Schedule:
    """At the end of the school day (the policy's `day_ends`, or else when the afternoon
    register closes): a letter queued later goes into the next day's pack."""
    policy = load_policy(school.policy)
    at = policy.register.day_ends or policy.register.pm.closes
    return Schedule(
        action=ScheduleActionStartWorkflow(
            DailyPrintPack.run,
            DailyPrintPackInput(school_id=school.id, time_zone=policy.timezone),
            id=print_pack_schedule_id(school.id),
            task_queue=task_queue,
        ),
        spec=_weekdays_at(at, policy.timezone, "print pack, Monday to Friday"),
    )


def register_close_schedule(school: School, task_queue: str) -> Schedule:
    policy = load_policy(school.policy)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RegisterCloseSweep.run,
            RegisterCloseInput(school_id=school.id, time_zone=policy.timezone),
            id=f"register-close-{school.id}",
            task_queue=task_queue,
        ),
        spec=_weekdays_at(
            policy.register.am.closes, policy.timezone, "register close, Monday to Friday"
        ),
    )


async def sync_schedules(client: Client, *, engine: Engine, task_queue: str) -> list[str]:
    """Create or update every school's schedules; returns their IDs."""
    with Session(engine) as session:
        schools = session.exec(select(School)).all()
    ids = []
    for school in schools:
        for id_, schedule in school_schedules(school, task_queue).items():
            try:
                await client.create_schedule(id_, schedule)
            except ScheduleAlreadyRunningError:

                def replace(_: ScheduleUpdateInput, new: Schedule = schedule) -> ScheduleUpdate:
                    return ScheduleUpdate(schedule=new)

                await client.get_schedule_handle(id_).update(replace)
            ids.append(id_)
    return ids
