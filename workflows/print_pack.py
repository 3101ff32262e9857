"""The day's print pack, run by a Temporal Schedule per school at the end of its school
day: the office finds one PDF of the day's postal letters, in envelope order, ready to
print and post, without having to ask for it."""

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.letters import LetterActivities, PrintPackRequest, PrintPackResult
    from workflows.school_day import school_today


@dataclass
class DailyPrintPackInput:
    school_id: int
    day: str | None = None  # ISO date; by default today in the school's time zone
    time_zone: str = "Europe/London"


@workflow.defn
class DailyPrintPack:
    @workflow.run
    async def run(self, input: DailyPrintPackInput) -> PrintPackResult:
        day = input.day or school_today(input.time_zone).isoformat()
        return await workflow.execute_activity_method(
            LetterActivities.build_print_pack,
            PrintPackRequest(school_id=input.school_id, day=day),
            start_to_close_timeout=timedelta(minutes=30),
        )
