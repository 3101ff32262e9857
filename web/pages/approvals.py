"""Approvals: the headteacher's queue of legal decisions, each with its evidence, and
the pupils over the National Framework's threshold whose decision is not yet recorded.

Only the headteacher decides, and that is checked here on the server whatever the page
showed; the case workflow's validator refuses anyone else once more.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from letters.pdf import html_to_pdf
from letters.service import LetterService
from models.tables import LegalDecision, School
from policies import load_policy
from web.accounts import SignedIn, set_flash
from web.actions import Actor, FormProblem, decide
from web.deps import CurrentUser, Forbidden, NotFound, SessionDep, require_page, school_of
from web.engine import Refused
from web.permissions import may_do, may_see, refusal, workflow_role
from web.queries import approvals_page, school_context
from web.render import render

router = APIRouter()

DECISION_WORDS = {
    "penalty_notice_request": "Request a penalty notice from the LA",
    "formal_warning": "Formal warning (countersignature)",
    "notice_to_improve": "Notice to improve",
    "prosecution_referral": "Referral to the LA for prosecution",
    "education_supervision_order": "Education supervision order",
}


def _approvals(
    request: Request,
    session: Session,
    user: SignedIn,
    school: School,
    *,
    error: str = "",
    error_for: int | None = None,
    status: int = 200,
    form: dict[str, Any] | None = None,
) -> Response:
    ctx = school_context(session, school)
    return render(
        request,
        "approvals.html",
        user=user,
        session=session,
        school=school,
        active="approvals",
        title="Approvals",
        ctx=ctx,
        page=approvals_page(session, ctx),
        decision_words=DECISION_WORDS,
        error=error,
        error_for=error_for,
        form=form or {},
        status=status,
    )


@router.get("/schools/{school_id}/approvals")
def approvals(
    request: Request,
    school_id: int,
    session: SessionDep,
    user: Annotated[SignedIn, Depends(require_page("approvals"))],
) -> Response:
    return _approvals(request, session, user, school_of(session, user, school_id))


def _decision(session: Session, user: SignedIn, school_id: int, decision_id: int):
    school = school_of(session, user, school_id)
    decision = session.get(LegalDecision, decision_id)
    if decision is None or decision.school_id != school.id:
        raise NotFound()
    return school, decision


@router.post("/schools/{school_id}/approvals/{decision_id}")
async def decide_step(
    request: Request, school_id: int, decision_id: int, user: CurrentUser
) -> Response:
    """Approve or decline a legal step, with a reason: the case's `decide` Update."""
    if not may_see(user.role, "approvals"):
        raise Forbidden()
    engine = request.app.state.engine

    def load():
        with Session(engine, expire_on_commit=False) as session:
            return _decision(session, user, school_id, decision_id)

    school, decision = await run_in_threadpool(load)
    if not may_do(user.role, "decide"):
        raise Forbidden(refusal("decide"))
    form = dict(await request.form())
    form.pop("csrf_token", None)
    problem = ""
    if decision.status != "awaiting":
        problem = f"This decision was already recorded ({decision.status})."
    else:
        policy = await run_in_threadpool(load_policy, school.policy)
        actor = Actor(user.name, workflow_role(user.role))
        try:
            step = decide(form, actor, policy, decision.key)
            await request.app.state.case_engine.update(decision.case_id, "decide", step)
        except (FormProblem, Refused) as refused:
            problem = str(refused)
    if problem:

        def again() -> Response:
            with Session(engine, expire_on_commit=False) as session:
                return _approvals(
                    request,
                    session,
                    user,
                    school,
                    error=problem,
                    error_for=decision.id,
                    status=409,
                    form=form,
                )

        return await run_in_threadpool(again)
    verdict = "approved" if form.get("verdict") == "approve" else "declined"

    def flash() -> None:
        with Session(engine) as session:
            set_flash(session, user.token_hash, f"Decision recorded: {verdict}.")

    await run_in_threadpool(flash)
    return RedirectResponse(f"/schools/{school_id}/approvals", status_code=303)


@router.get("/schools/{school_id}/approvals/{decision_id}/evidence.pdf")
async def evidence_pack(
    request: Request, school_id: int, decision_id: int, user: CurrentUser
) -> Response:
    """The evidence pack for a decision (figures, register, chronology, letters), drafted
    now and not stored: what the LA would receive with a referral."""
    if not may_see(user.role, "approvals"):
        raise Forbidden()
    app = request.app

    def draft() -> str:
        with Session(app.state.engine, expire_on_commit=False) as session:
            school, decision = _decision(session, user, school_id, decision_id)
            ctx = school_context(session, school)
            service = LetterService(app.state.settings, app.state.engine)
            found = service.draft(
                session,
                school_id=school.id,
                pupil_id=decision.pupil_id,
                template="la/evidence_pack",
                key=f"preview/{decision.key}",
                data={},
                case_id=decision.case_id,
                as_of=ctx.as_of.isoformat(),
            )
            return found.copy_html(found.copies[0]) if found.copies else found.html

    html = await run_in_threadpool(draft)
    pdf = await run_in_threadpool(html_to_pdf, html)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="evidence-{decision_id}.pdf"'},
    )
