"""Today: what the office and the attendance officer must do after register close."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from activities.episodes import ACTION_WORDS
from web.accounts import SignedIn
from web.deps import SessionDep, require_page, school_of
from web.queries import school_context, today_page
from web.render import render

router = APIRouter()


@router.get("/schools/{school_id}/today")
def today(
    request: Request,
    school_id: int,
    session: SessionDep,
    user: Annotated[SignedIn, Depends(require_page("today"))],
) -> Response:
    school = school_of(session, user, school_id)
    ctx = school_context(session, school)
    return render(
        request,
        "today.html",
        user=user,
        session=session,
        school=school,
        active="today",
        title="Today",
        ctx=ctx,
        page=today_page(session, ctx),
        action_words=ACTION_WORDS,
    )
