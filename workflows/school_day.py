"""The school's date by the workflow's clock, for the workflows its Schedules start.
Imported through the sandbox (`imports_passed_through`), like the activities' modules."""

from datetime import date
from zoneinfo import ZoneInfo

from temporalio import workflow


def school_today(time_zone: str) -> date:
    """Today in the school's time zone: the same on every replay of the workflow."""
    return workflow.now().astimezone(ZoneInfo(time_zone)).date()
