"""Case: one pupil's case with their figures, register, chronology and letters, and the
steps that fit the case now. Each step is an Update of the case's workflow."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from letters.pdf import html_to_pdf
from letters.render import address_copy
from models.tables import CaseRecord
from policies import load_policy
from web.accounts import SignedIn, set_flash
from web.actions import (
    ACTION_WORDS,
    BUILDERS,
    CHANNELS,
    CONTACT_WORDS,
    KIND_OF,
    LA_OUTCOME_WORDS,
    REASON_CODES,
    VISIT_WORDS,
    Actor,
    FormProblem,
    describe_awaiting,
    ladders_waiting,
    staff_stages,
)
from web.charts import pupil_chart
from web.deps import CurrentUser, Forbidden, NotFound, case_of
from web.engine import Refused
from web.permissions import may_do, may_see, refusal, workflow_role
from web.queries import case_page, first_copy, letter_of, school_context, schools_of
from web.render import nav_for

router = APIRouter()

EPISODE_ACTIONS = ["record_contact", "record_visit"]


def _load(request: Request, user: SignedIn, case_id: str) -> dict[str, Any]:
    """Everything the page shows from SQL, in one session (run in a worker thread)."""
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        record, school = case_of(session, user, case_id)
        ctx = school_context(session, school)
        page = case_page(session, ctx, record)
        return {
            "record": record,
            "school": school,
            "ctx": ctx,
            "page": page,
            "schools": schools_of(session, user.school_ids),
        }


async def _status(request: Request, record: CaseRecord) -> dict[str, Any] | None:
    if record.status == "closed":
        return None
    return await request.app.state.case_engine.status(record.case_id)


def _actions(record: CaseRecord, status: dict[str, Any] | None, role: str) -> list[str]:
    """The steps that fit the case now and that the user's role may take."""
    if record.status == "closed":
        return []
    if record.kind == "absence_episode":
        # An episode whose closing reason is set is closing: nothing more is recorded on it.
        still_open = status is None or (
            status.get("status") == "open" and not status.get("closed_reason")
        )
        fits = EPISODE_ACTIONS if still_open else []
    else:
        fits = list((status or {}).get("available_actions", []))
    return [a for a in fits if a in BUILDERS and may_do(role, a)]


async def _page(
    request: Request,
    user: SignedIn,
    case_id: str,
    *,
    error: str = "",
    failed_action: str = "",
    form: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    if not may_see(user.role, "case"):
        raise Forbidden()
    data = await run_in_threadpool(_load, request, user, case_id)
    record, ctx, page = data["record"], data["ctx"], data["page"]
    status = await _status(request, record)
    ladder_names = {ladder.id: ladder.name for ladder in ctx.policy.ladders}
    awaiting = list((status or {}).get("awaiting", []))
    templates = request.app.state.templates
    context = {
        "user": user,
        "csrf_token": user.csrf_token,
        "school": data["school"],
        "schools": data["schools"],
        "nav": nav_for(user, data["school"], "caseload"),
        "active": "caseload",
        "flash": user.flash,
        "title": f"{page.pupil.forename} {page.pupil.surname}",
        "ctx": ctx,
        "page": page,
        "status": status,
        "live": status is not None or record.status == "closed",
        "actions": _actions(record, status, user.role),
        "awaiting": [describe_awaiting(a, ladder_names) for a in awaiting],
        "decision_waiting": any(a.startswith("decision:") for a in awaiting),
        "meeting_ladders": ladders_waiting(awaiting, "meeting to arrange"),
        "outcome_ladders": ladders_waiting(awaiting, "meeting outcome"),
        "contract_ladders": ladders_waiting(awaiting, "contract"),
        "ladder_names": ladder_names,
        "chart": pupil_chart(page.weeks, ctx.policy.attendance_target),
        "action_words": ACTION_WORDS,
        "contact_words": CONTACT_WORDS,
        "visit_words": VISIT_WORDS,
        "la_outcome_words": LA_OUTCOME_WORDS,
        "channels": CHANNELS,
        "reason_codes": REASON_CODES,
        "pauses": ctx.policy.pauses,
        "staff_stages": staff_stages(ctx.policy),
        "error": error,
        "failed_action": failed_action,
        "form": form or {},
    }
    return templates.TemplateResponse(request, "case.html", context, status_code=status_code)


@router.get("/cases/{case_id}")
async def case(request: Request, case_id: str, user: CurrentUser) -> Response:
    return await _page(request, user, case_id)


@router.post("/cases/{case_id}/{action}")
async def take_step(request: Request, case_id: str, action: str, user: CurrentUser) -> Response:
    """One step on the case, checked here (the case is one of the user's schools', the
    role may take it) before the workflow's validator checks it against the case."""
    if not may_see(user.role, "case"):
        raise Forbidden()
    if action not in BUILDERS:
        raise NotFound()
    record, school = await run_in_threadpool(_case_and_school, request, user, case_id)
    if not may_do(user.role, action):
        raise Forbidden(refusal(action))
    form = dict(await request.form())
    form.pop("csrf_token", None)
    if KIND_OF[action] != record.kind:
        return await _page(
            request,
            user,
            case_id,
            error="This step does not apply to this kind of case.",
            failed_action=action,
            form=form,
            status_code=409,
        )
    policy = await run_in_threadpool(load_policy, school.policy)
    actor = Actor(user.name, workflow_role(user.role))
    try:
        step = BUILDERS[action](form, actor, policy)
        result = await request.app.state.case_engine.update(case_id, action, step)
    except (FormProblem, Refused) as problem:
        return await _page(
            request,
            user,
            case_id,
            error=str(problem),
            failed_action=action,
            form=form,
            status_code=422 if isinstance(problem, FormProblem) else 409,
        )
    summary = (result or {}).get("summary") if isinstance(result, dict) else None
    await run_in_threadpool(
        _flash, request, user, f"Recorded: {summary}" if summary else "Recorded."
    )
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


def _case_and_school(request: Request, user: SignedIn, case_id: str):
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        return case_of(session, user, case_id)


def _flash(request: Request, user: SignedIn, message: str) -> None:
    with Session(request.app.state.engine) as session:
        set_flash(session, user.token_hash, message)


@router.get("/cases/{case_id}/letters/{letter_id}.pdf")
async def letter_pdf(request: Request, case_id: str, letter_id: int, user: CurrentUser) -> Response:
    """A letter as the first recipient received it, as a PDF."""
    if not may_see(user.role, "case"):
        raise Forbidden()
    html = await run_in_threadpool(_letter_html, request, user, case_id, letter_id)
    pdf = await run_in_threadpool(html_to_pdf, html)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="letter-{letter_id}.pdf"'},
    )


def _letter_html(request: Request, user: SignedIn, case_id: str, letter_id: int) -> str:
    with Session(request.app.state.engine, expire_on_commit=False) as session:
        record, school = case_of(session, user, case_id)
        letter = letter_of(session, school.id, record.pupil_id, letter_id)
        if letter is None:
            raise NotFound()
        copy = first_copy(session, letter.id)
        lines = [*copy.address.splitlines(), copy.postcode] if copy else []
        return address_copy(
            letter.html,
            name=copy.recipient_name if copy else "",
            address_lines=[line for line in lines if line],
            salutation=copy.salutation if copy else "Parent/Carer",
        )
