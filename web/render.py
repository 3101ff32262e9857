"""Rendering pages: the Jinja2 environment and what every page's layout needs."""

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlmodel import Session

from models.tables import School
from web.accounts import SignedIn
from web.formatting import FILTERS
from web.permissions import may_do, may_see
from web.queries import flags_of, schools_of

TEMPLATES = Path(__file__).parent / "templates"

NAV = (
    ("today", "Today"),
    ("caseload", "Caseload"),
    ("approvals", "Approvals"),
    ("school", "School"),
)


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.filters.update(FILTERS)
    env.globals.update(may_do=may_do, may_see=may_see, flags_of=flags_of)
    env.trim_blocks = True
    env.lstrip_blocks = True
    return templates


def page_url(page: str, school_id: int) -> str:
    return f"/schools/{school_id}" if page == "school" else f"/schools/{school_id}/{page}"


def nav_for(user: SignedIn, school: School | None, active: str) -> list[dict[str, Any]]:
    if school is None:
        return []
    return [
        {"label": label, "url": page_url(page, school.id), "active": page == active}
        for page, label in NAV
        if may_see(user.role, page)
    ]


def render(
    request: Request,
    name: str,
    *,
    user: SignedIn | None,
    session: Session | None = None,
    school: School | None = None,
    active: str = "",
    status: int = 200,
    title: str = "",
    **context: Any,
) -> HTMLResponse:
    """A page in the layout: the user's name and role, their schools, the navigation
    their role may use, and the message left by the last step (if any)."""
    schools = schools_of(session, user.school_ids) if (user and session) else []
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        name,
        {
            "user": user,
            "csrf_token": user.csrf_token if user else "",
            "school": school,
            "schools": schools,
            "nav": nav_for(user, school, active) if user else [],
            "active": active,
            "flash": user.flash if user else "",
            "title": title,
            **context,
        },
        status_code=status,
    )
