"""Signing in and out, the start page of each role, and the list of a user's schools."""

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from web.accounts import authenticate, end_session, start_session
from web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CurrentUser,
    SessionDep,
    _signed_in,
    new_login_token,
)
from web.permissions import HOME
from web.queries import schools_of, schools_summary
from web.render import page_url, render

router = APIRouter()


def _safe_next(target: str) -> str:
    """Only a path on this site (never another host) is followed after signing in."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _login_page(request: Request, *, error: str = "", email: str = "", status: int = 200):
    token = new_login_token()
    response = render(
        request,
        "login.html",
        user=None,
        title="Sign in",
        error=error,
        email=email,
        next=_safe_next(request.query_params.get("next", "")),
        login_token=token,
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.app.state.settings.web_secure_cookies,
        path="/login",
    )
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    if _signed_in(request) is not None:
        return RedirectResponse("/", status_code=303)
    return _login_page(request)


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    user = authenticate(session, email, password)
    if user is None:
        return _login_page(
            request,
            error="That e-mail address and password do not match an account. "
            "After five wrong passwords an account waits five minutes.",
            email=email,
            status=401,
        )
    settings = request.app.state.settings
    token = start_session(session, user, hours=settings.web_session_hours)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=settings.web_secure_cookies,
        max_age=int(settings.web_session_hours * 3600),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    end_session(session, user.token_hash)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def home(user: CurrentUser) -> Response:
    """Each role starts where its day starts: the office on Today, the headteacher on
    Approvals, an LA officer on the list of their schools."""
    if len(user.school_ids) != 1:
        return RedirectResponse("/schools", status_code=303)
    return RedirectResponse(page_url(HOME[user.role], user.school_ids[0]), status_code=303)


@router.get("/schools")
def schools(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    found = schools_of(session, user.school_ids)
    return render(
        request,
        "schools.html",
        user=user,
        session=session,
        title="Your schools",
        summaries=schools_summary(session, found),
        home=HOME[user.role],
        page_url=page_url,
    )
