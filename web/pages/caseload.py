"""Caseload: the school's open cases, overdue first, filtered by year group and cohort."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from web.accounts import SignedIn
from web.deps import SessionDep, require_page, school_of
from web.queries import COHORTS, caseload_page
from web.render import render

router = APIRouter()

KINDS = {"attendance_case": "Attendance cases", "absence_episode": "Absence episodes"}


@router.get("/schools/{school_id}/caseload")
def caseload(
    request: Request,
    school_id: int,
    session: SessionDep,
    user: Annotated[SignedIn, Depends(require_page("caseload"))],
    year: Annotated[str, Query()] = "",
    cohort: Annotated[str, Query()] = "",
    stage: Annotated[str, Query()] = "",
    kind: Annotated[str, Query()] = "",
) -> Response:
    school = school_of(session, user, school_id)
    year_group = int(year) if year.isdigit() else None
    page = caseload_page(
        session,
        school.id,
        year_group=year_group,
        cohort=cohort if cohort in COHORTS else None,
        stage=stage or None,
        kind=kind if kind in KINDS else None,
    )
    return render(
        request,
        "caseload.html",
        user=user,
        session=session,
        school=school,
        active="caseload",
        title="Caseload",
        page=page,
        cohorts=COHORTS,
        kinds=KINDS,
        chosen={"year": year_group, "cohort": cohort, "stage": stage, "kind": kind},
    )
