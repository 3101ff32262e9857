"""The September baseline (All Saints' Appendix 1, Stage 1): at the start of the school
year every pupil persistently absent the year before gets the Stage 1 letter and starts
the year on the first rung, so the review points measure from there. Run by a yearly
Schedule for each school whose policy has such a ladder (schedules.py)."""

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.baseline import BaselineActivities, SendBaselineInput, SendBaselineResult
    from workflows.school_day import school_today


@dataclass
class SeptemberBaselineInput:
    school_id: int
    as_of: str | None = None  # ISO date; by default today in the school's time zone
    time_zone: str = "Europe/London"


@workflow.defn
class SeptemberBaseline:
    @workflow.run
    async def run(self, input: SeptemberBaselineInput) -> SendBaselineResult:
        as_of = input.as_of or school_today(input.time_zone)
        return await workflow.execute_activity_method(
            BaselineActivities.send_september_baseline,
            SendBaselineInput(school_id=input.school_id, as_of=str(as_of)),
            start_to_close_timeout=timedelta(minutes=30),
        )
