"""The register-close sweep: run by a Temporal Schedule per school at its close time."""

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from zoneinfo import ZoneInfo

    from activities.sweep import RecordThresholdsInput, SweepActivities, ThresholdChange


@dataclass
class RegisterCloseInput:
    school_id: int
    as_of: str | None = None  # ISO date; by default today in the school's time zone
    time_zone: str = "Europe/London"


@dataclass
class RegisterCloseResult:
    school_id: int
    as_of: str
    pupils: int
    crossed: int
    cleared: int
    changes: list[ThresholdChange] = field(default_factory=list)


@workflow.defn
class RegisterCloseSweep:
    @workflow.run
    async def run(self, input: RegisterCloseInput) -> RegisterCloseResult:
        as_of = input.as_of or workflow.now().astimezone(ZoneInfo(input.time_zone)).date()
        recorded = await workflow.execute_activity_method(
            SweepActivities.record_threshold_crossings,
            RecordThresholdsInput(school_id=input.school_id, as_of=str(as_of)),
            start_to_close_timeout=timedelta(minutes=10),
        )
        return RegisterCloseResult(
            school_id=recorded.school_id,
            as_of=recorded.as_of,
            pupils=recorded.pupils,
            crossed=sum(c.direction == "crossed" for c in recorded.changes),
            cleared=sum(c.direction == "cleared" for c in recorded.changes),
            changes=recorded.changes,
        )
