"""The register-close sweep: run by a Temporal Schedule per school at its close time.

Two activities: the figures and the day's threshold changes are computed and recorded in
SQL; then the fan-out sends each affected pupil's workflows what changed (signal-with-start
of the attendance case, of a new absence episode, the day's register to open episodes).
The fan-out reads what to send from SQL, so a school of any size passes nothing large
through the sweep's history.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import Priority

with workflow.unsafe.imports_passed_through():
    from activities.sweep import (
        FanOutActivities,
        FanOutInput,
        FanOutResult,
        RecordThresholdsInput,
        SweepActivities,
        ThresholdChange,
    )
    from workflows.school_day import school_today


@dataclass
class RegisterCloseInput:
    school_id: int
    as_of: str | None = None  # ISO date; by default today in the school's time zone
    time_zone: str = "Europe/London"
    fan_out: bool = True  # False: record the day's changes only, signal no workflow
    list_changes: bool = False  # True: the day's changes in the result (tests, tools)


@dataclass
class RegisterCloseResult:
    school_id: int
    as_of: str
    pupils: int
    crossed: int
    cleared: int
    changes: list[ThresholdChange] = field(default_factory=list)
    fan_out: FanOutResult | None = None


# The sweep's activities go ahead of the cases' in the task queue: at register close the
# workers may hold a backlog of case steps from earlier sweeps, which must not hold up
# today's (a server that does not order by priority ignores this).
SWEEP_FIRST = Priority(priority_key=1)


@workflow.defn
class RegisterCloseSweep:
    @workflow.run
    async def run(self, input: RegisterCloseInput) -> RegisterCloseResult:
        as_of = input.as_of or school_today(input.time_zone)
        recorded = await workflow.execute_activity_method(
            SweepActivities.record_threshold_crossings,
            RecordThresholdsInput(
                school_id=input.school_id, as_of=str(as_of), list_changes=input.list_changes
            ),
            start_to_close_timeout=timedelta(minutes=10),
            priority=SWEEP_FIRST,
        )
        fanned = None
        if input.fan_out:
            # Heartbeats carry the fan-out's progress: a worker lost mid-way is noticed in
            # a minute, and the retry skips what was already sent.
            fanned = await workflow.execute_activity_method(
                FanOutActivities.fan_out,
                FanOutInput(school_id=input.school_id, as_of=str(as_of)),
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=1),
                priority=SWEEP_FIRST,
            )
        return RegisterCloseResult(
            school_id=recorded.school_id,
            as_of=recorded.as_of,
            pupils=recorded.pupils,
            crossed=recorded.crossed,
            cleared=recorded.cleared,
            changes=recorded.changes,
            fan_out=fanned,
        )
