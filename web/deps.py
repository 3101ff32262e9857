"""Dependencies every route uses: the SQL session, the signed-in user, the school they
asked for (only one of theirs), and the CSRF check on every form sent."""

import hmac
import secrets
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from models.tables import CaseRecord, School
from web.accounts import SignedIn, load_session
from web.permissions import may_see

SESSION_COOKIE = "attend_session"
LOGIN_CSRF_COOKIE = "attend_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotSignedIn(Exception):
    """No valid session: pages send the browser to the sign-in page."""


class Forbidden(Exception):
    """Signed in, but the role may not do this. The message is shown on the page."""

    def __init__(self, message: str = "Your role may not see this page."):
        super().__init__(message)
        self.message = message


class NotFound(Exception):
    """Nothing here, or not one of the user's schools: the two look the same, so that a
    page never tells anyone that another school's pupil exists."""


class CsrfRefused(Exception):
    """A form without the token this session gave it: refused before anything is read."""


def get_db(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_db)]


def _signed_in(request: Request) -> SignedIn | None:
    """The session behind the request's cookie (looked up once per request)."""
    if hasattr(request.state, "signed_in"):
        return request.state.signed_in
    token = request.cookies.get(SESSION_COOKIE)
    found = None
    if token:
        settings = request.app.state.settings
        with Session(request.app.state.engine, expire_on_commit=False) as session:
            found = load_session(
                session,
                token,
                idle_minutes=settings.web_idle_minutes,
                pop_flash=request.method == "GET",
            )
    request.state.signed_in = found
    return found


def current_user(request: Request) -> SignedIn:
    found = _signed_in(request)
    if found is None:
        raise NotSignedIn()
    return found


CurrentUser = Annotated[SignedIn, Depends(current_user)]


async def csrf_protect(request: Request) -> None:
    """Every POST carries the session's CSRF token (or, signing in, the one the sign-in
    page set in its cookie); anything else is refused with 403 before the route runs."""
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD, "")
        sent = value if isinstance(value, str) else ""
    if request.url.path == "/login":
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    else:
        signed_in = await run_in_threadpool(_signed_in, request)
        expected = signed_in.csrf_token if signed_in else ""
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise CsrfRefused()


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def require_page(page: str):
    """A dependency: the signed-in user, if their role may see `page`."""

    def check(user: CurrentUser) -> SignedIn:
        if not may_see(user.role, page):
            raise Forbidden("Your role may not see this page.")
        return user

    return check


def school_of(session: Session, user: SignedIn, school_id: int) -> School:
    """One of the user's schools, or NotFound."""
    if school_id not in user.school_ids:
        raise NotFound()
    school = session.get(School, school_id)
    if school is None:
        raise NotFound()
    return school


def case_of(session: Session, user: SignedIn, case_id: str) -> tuple[CaseRecord, School]:
    """A case at one of the user's schools, or NotFound."""
    record = session.get(CaseRecord, case_id)
    if record is None or record.school_id not in user.school_ids:
        raise NotFound()
    school = session.get(School, record.school_id)
    if school is None:
        raise NotFound()
    return record, school
