"""The September baseline's side effects: find last year's persistently absent pupils who
are still on roll, and tell each one's attendance case for the new year
(signal-with-start of `previous_year_absence`).

Built once in worker.py with the worker's client. Idempotent: the case's workflow ID is
fixed by pupil and year, and a case already on a baseline ladder's rungs does nothing
with a second baseline, so a retried activity changes nothing the first attempt did.
"""

import asyncio
from dataclasses import dataclass
from datetime import date

from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.sweep import case_workflow_id
from database import SessionFactory
from figures.compute import compute_figures
from models.calendar import academic_year_of, load_calendar
from models.tables import School
from policies import load_policy
from workflows.case import AttendanceCase, AttendanceCaseInput, PreviousYearAbsence


@dataclass
class SendBaselineInput:
    school_id: int
    as_of: str  # ISO date, in the new school year


@dataclass
class SendBaselineResult:
    school_id: int
    as_of: str
    year_ended: str | None  # last year's last school day (None: no year before)
    pupils: int  # last year's persistently absent pupils on roll, each case told
    already_closed: int = 0  # cases of this year already finished


@dataclass
class _Baseline:
    year_ended: str | None
    pupils: list[tuple[int, float | None]]  # (pupil id, last year's rate)


class BaselineActivities:
    def __init__(self, client: Client, session_factory: SessionFactory):
        self.client = client
        self.session_factory = session_factory

    @activity.defn
    async def send_september_baseline(self, input: SendBaselineInput) -> SendBaselineResult:
        found = await asyncio.to_thread(self._last_years_persistent_absence, input)
        year = academic_year_of(date.fromisoformat(input.as_of))
        result = SendBaselineResult(input.school_id, input.as_of, found.year_ended, 0)
        for pupil_id, rate in found.pupils:
            try:
                await self.client.start_workflow(
                    AttendanceCase.run,
                    AttendanceCaseInput(input.school_id, pupil_id, year),
                    id=case_workflow_id(pupil_id, year),
                    task_queue=activity.info().task_queue,
                    start_signal="previous_year_absence",
                    start_signal_args=[PreviousYearAbsence(input.as_of, rate, found.year_ended)],
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
                )
                result.pupils += 1
            except WorkflowAlreadyStartedError:  # this year's case has already finished
                result.already_closed += 1
        return result

    def _last_years_persistent_absence(self, input: SendBaselineInput) -> _Baseline:
        """Pupils on roll who were persistently absent by the end of last school year, if
        the school's policy has a ladder that starts them on it in September."""
        with self.session_factory() as session:
            policy = load_policy(session.get(School, input.school_id).policy)
            if not any(ladder.september_previous_year_pa for ladder in policy.ladders):
                return _Baseline(None, [])
            calendar = load_calendar(session=session, school_id=input.school_id)
            year = academic_year_of(date.fromisoformat(input.as_of))
            last_year = calendar.school_days(date(year - 1, 8, 1), date(year, 7, 31))
            if not last_year:
                return _Baseline(None, [])
            figures = compute_figures(
                session=session,
                school_id=input.school_id,
                as_of=last_year[-1],
                rules=policy.figure_rules(),
                calendar=calendar,
            )
            pupils = [(f.pupil_id, f.rate_year) for f in figures if f.persistent_absence]
            return _Baseline(last_year[-1].isoformat(), pupils)
