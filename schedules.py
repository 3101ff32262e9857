"""One Temporal Schedule per school, starting the register-close sweep at the close time
its policy gives, on weekdays, in the school's time zone."""

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
from workflows.sweep import RegisterCloseInput, RegisterCloseSweep


def schedule_id(school_id: int) -> str:
    return f"register-close-{school_id}"


def register_close_schedule(school: School, task_queue: str) -> Schedule:
    policy = load_policy(school.policy)
    hour, minute = (int(part) for part in policy.register.am.closes.split(":"))
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RegisterCloseSweep.run,
            RegisterCloseInput(school_id=school.id, time_zone=policy.timezone),
            id=f"register-close-{school.id}",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            calendars=[
                ScheduleCalendarSpec(
                    hour=[ScheduleRange(hour)],
                    minute=[ScheduleRange(minute)],
                    day_of_week=[ScheduleRange(1, 5)],
                    comment="register close, Monday to Friday",
                )
            ],
            time_zone_name=policy.timezone,
        ),
    )


async def sync_schedules(client: Client, *, engine: Engine, task_queue: str) -> list[str]:
    """Create or update every school's schedule; returns their IDs."""
    with Session(engine) as session:
        schools = session.exec(select(School)).all()
    ids = []
    for school in schools:
        schedule = register_close_schedule(school, task_queue)
        try:
            await client.create_schedule(schedule_id(school.id), schedule)
        except ScheduleAlreadyRunningError:

            def replace(_: ScheduleUpdateInput, schedule: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            await client.get_schedule_handle(schedule_id(school.id)).update(replace)
        ids.append(schedule_id(school.id))
    return ids
