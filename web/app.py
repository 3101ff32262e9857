"""The web app: `create_app(settings)` builds it; `web.server.serve` runs it.

Pages are rendered on the server from SQL; the steps staff take are workflow Updates
sent through the Temporal client. Every route checks the signed-in user's role and
schools itself, and every form carries the session's CSRF token.
"""

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

import web  # noqa: F401  (registers the account tables before the engine creates them)
from database import create_tables, make_engine
from settings import Settings
from web.deps import CsrfRefused, Forbidden, NotFound, NotSignedIn, _signed_in, csrf_protect
from web.engine import CaseEngine
from web.pages import approvals, auth, case, caseload, school, today
from web.queries import refresh_school_figures
from web.render import make_templates, render

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)

# No script or style from anywhere else, no framing, and no URL (with its IDs) sent on.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


ERROR_PAGE = (
    b'<!doctype html><html lang="en-GB"><meta charset="utf-8"><title>Something went wrong'
    b"</title><h1>Something went wrong</h1><p>Nothing more was recorded than had already been."
    b' <a href="/">Start again</a>.</p></html>'
)


class SecurityHeaders:
    """Adds the headers above to every response; pages (which hold pupils' details) are
    never stored by the browser or a proxy. An error nothing else handled is logged by
    its kind and the path only (the message of a database error can quote a pupil's
    details), and the browser gets a plain error page."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")
        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except Exception as problem:
            log.error(
                "unhandled %s on %s %s", type(problem).__name__, scope["method"], scope["path"]
            )
            if started:
                raise RuntimeError("the response was cut short") from None
            await with_headers(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"text/html; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": ERROR_PAGE})


# How often the School page's kept register counts are brought up to date, so that the
# first page after an import or a case step seldom reads the change itself. A page never
# shows a stale count: it checks the register's version first (see
# web.queries.register_count).
SCHOOL_FIGURES_REFRESH_SECONDS = 10.0


async def _keep_school_figures_fresh(app: FastAPI) -> None:
    every = True  # at start, every school's: the first School page then finds them counted
    while True:
        try:
            await asyncio.to_thread(refresh_school_figures, app.state.engine, every=every)
            every = False
        except Exception as problem:  # a page counts them itself meanwhile
            log.warning("refreshing the School page figures failed: %s", type(problem).__name__)
        await asyncio.sleep(SCHOOL_FIGURES_REFRESH_SECONDS)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # What start-up made (modules, templates, the engine) lives as long as the app. Frozen,
    # the cyclic collector no longer walks it on each full collection: those walks
    # stopped a page for 300 ms every few dozen big pages (bench/RESULTS.md, Web pages).
    gc.collect()
    gc.freeze()
    refresher = asyncio.create_task(_keep_school_figures_fresh(app))
    try:
        yield
    finally:
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        gc.unfreeze()


def create_app(
    settings: Settings, *, engine: Engine | None = None, temporal_client: Client | None = None
) -> FastAPI:
    """The app, with its SQL engine and (optionally) a Temporal client already connected;
    without one, the client connects on the first step a page takes."""
    app = FastAPI(
        title="attend",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(csrf_protect)],
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.database_url)
    # An engine made before this package was imported lacks the account tables.
    create_tables(app.state.engine)
    app.state.templates = make_templates()
    app.state.case_engine = CaseEngine(settings, temporal_client)
    for module in (auth, today, caseload, case, approvals, school):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, _: NotSignedIn) -> Response:
        if request.method == "GET":
            target = request.url.path
            return RedirectResponse(f"/login?next={target}", status_code=303)
        return _error(request, 401, "Please sign in again", "Your session has ended.")

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, problem: Forbidden) -> Response:
        return _error(request, 403, "Not for your role", problem.message)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, _: NotFound) -> Response:
        return _error(request, 404, "Not found", "There is nothing here for you to see.")

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, _: CsrfRefused) -> Response:
        return _error(
            request,
            403,
            "The form could not be accepted",
            "The form was out of date or did not come from this site, so nothing was "
            "recorded. Go back, reload the page and try again.",
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, problem: StarletteHTTPException) -> Response:
        titles = {404: "Not found", 405: "Not allowed"}
        return _error(
            request, problem.status_code, titles.get(problem.status_code, "Error"), "", problem
        )

    return app


def _error(
    request: Request,
    status: int,
    title: str,
    message: str,
    problem: StarletteHTTPException | None = None,
) -> HTMLResponse:
    try:
        user = _signed_in(request)
    except Exception:  # an error page must render even when the database is not there
        user = None
    response = render(
        request,
        "error.html",
        user=user,
        title=title,
        message=message or "There is nothing here for you to see.",
        status=status,
    )
    if problem is not None and problem.headers:
        response.headers.update(problem.headers)
    return response
