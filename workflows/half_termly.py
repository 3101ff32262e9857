"""The half-termly letter to every family (All Saints' "Universal" level), run by a
Schedule on each school day when the afternoon register closes for each school whose
policy names one: on the last school day of a half-term the letters go out, and the
day's print pack is built again so their postal copies go with that day's post rather
than after the holiday."""

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.letters import (
        HalfTermlyInput,
        HalfTermlyResult,
        LetterActivities,
        PrintPackRequest,
    )
    from workflows.school_day import school_today


@dataclass
class HalfTermlyLettersInput:
    school_id: int
    as_of: str | None = None  # ISO date; by default today in the school's time zone
    time_zone: str = "Europe/London"


@workflow.defn
class HalfTermlyLetters:
    @workflow.run
    async def run(self, input: HalfTermlyLettersInput) -> HalfTermlyResult:
        as_of = input.as_of or school_today(input.time_zone)
        sent = await workflow.execute_activity_method(
            LetterActivities.send_half_termly_letters,
            HalfTermlyInput(school_id=input.school_id, as_of=str(as_of)),
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=2),
        )
        if sent.letters:
            await workflow.execute_activity_method(
                LetterActivities.build_print_pack,
                PrintPackRequest(school_id=input.school_id, day=str(as_of)),
                start_to_close_timeout=timedelta(minutes=30),
            )
        return sent
