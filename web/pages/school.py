"""School: the figures a headteacher, governor or LA officer looks at, with no names."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from web.accounts import SignedIn
from web.charts import trend_chart
from web.deps import SessionDep, require_page, school_of
from web.permissions import GOVERNOR
from web.queries import school_context, school_page
from web.render import render

router = APIRouter()

# A governor sees a cohort's figures only when it has at least this many pupils: the
# figures of two or three looked-after children would tell who they are.
SMALL_COHORT = 5


@router.get("/schools/{school_id}")
def school(
    request: Request,
    school_id: int,
    session: SessionDep,
    user: Annotated[SignedIn, Depends(require_page("school"))],
) -> Response:
    found = school_of(session, user, school_id)
    ctx = school_context(session, found)
    page = school_page(session, ctx)
    return render(
        request,
        "school.html",
        user=user,
        session=session,
        school=found,
        active="school",
        title=found.name,
        ctx=ctx,
        page=page,
        chart=trend_chart(page.trend, target=ctx.policy.attendance_target),
        # A governor sees the returns counted, never which pupils they are about.
        anonymous=user.role == GOVERNOR,
        small_cohort=SMALL_COHORT,
    )
