"""The web app's authorisation, over HTTP: every route for every role, another school's
pages and cases, CSRF tokens missing or forged, signing in and out, and a governor never
seeing a pupil's name.

The app runs in-process (httpx's ASGI transport) against real SQLite, with its own case
engine on the test session's Temporal server. The steps go to real workflows run by a
real worker; the engine notes each Update the server let through before sending it on, so
that a test can tell a step the server refused (it never reached Temporal) from one the
workflow itself refused. Another school's cases are rows only: the server must never
reach them.
"""

import asyncio
import html
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from argon2 import PasswordHasher
from sqlmodel import Session, col, select

import web.accounts
import web.queries
from figures.compute import compute_figures
from imports.marks import MarkRow, store_marks
from letters.catalogue import spec_for
from letters.service import LetterService
from models.tables import (
    CaseRecord,
    ChronologyEntry,
    Contact,
    LAReturn,
    LegalDecision,
    Pupil,
    RegisterMark,
    School,
    StaffTask,
)
from models.upn import make_upn
from settings import Settings
from tests.conftest import add_school
from tests.registers import both, register
from web.accounts import WebSession, add_user, start_session
from web.actions import KIND_OF
from web.app import create_app
from web.deps import SESSION_COOKIE
from web.engine import CaseEngine
from worker import build_worker
from workflows.case import AttendanceCase, AttendanceCaseInput, ThresholdsChanged
from workflows.episode import (
    AbsenceEpisode,
    AbsenceEpisodeInput,
    EpisodeAction,
    EpisodeDay,
    EpisodeProcedure,
    RegisterToday,
)

PASSWORD = "correct horse battery"
DAY = "2026-11-24"  # the last day of every register here (a Tuesday)
ROLES = ("office", "attendance_officer", "headteacher", "governor", "la_officer")


# --------------------------------------------------------------------------- the world


@dataclass
class World:
    """Two schools, each with pupils, an absence episode, an attendance case, a legal
    decision waiting, a letter and an LA return; users of every role at the first."""

    school: School
    other: School
    names: list[str]  # every pupil's forename and surname, both schools
    pupil_ids: dict[str, int]
    episode_id: str
    case_id: str
    decision_id: int
    letter_id: int
    other_episode_id: str
    other_case_id: str
    other_decision_id: int
    other_letter_id: int
    users: dict[str, str] = field(default_factory=dict)  # role -> e-mail


PUPILS = {
    # key: (school, forename, surname, year, flags)
    "absent": ("a", "Amelia", "Thornbury", 3, {"social_worker": True}),
    "case": ("a", "Barnaby", "Quenell", 5, {"fsm": True}),
    "decision": ("a", "Cordelia", "Vantongeren", 6, {"send": True}),
    "absent_b": ("b", "Zachary", "Quillfeather", 2, {}),
    "case_b": ("b", "Yolanda", "Marchbanks", 4, {"looked_after": True}),
}


def add_named_pupil(
    session: Session, school_id: int, serial: int, forename: str, surname: str, year: int, **flags
) -> Pupil:
    pupil = Pupil(
        school_id=school_id,
        upn=make_upn(886, 2001, 26, serial),
        forename=forename,
        surname=surname,
        date_of_birth=date(2026 - 5 - year, 3, 1),
        year_group=year,
        **flags,
    )
    session.add(pupil)
    session.flush()
    for priority, (first, relationship) in enumerate([("Jane", "Mother"), ("John", "Father")]):
        session.add(
            Contact(
                pupil_id=pupil.id,
                priority=priority + 1,
                title="Mrs" if priority == 0 else "Mr",
                forename=first,
                surname=surname,
                relationship=relationship,
                email=f"{first.lower()}.{surname.lower()}@example.org",
                phone=f"07700 90{serial:02d}{priority + 1:02d}",
                address="1 Quarry Road\nTunbridge Wells",
                postcode="TN1 2EY",
            )
        )
    return pupil


def cheap_hasher(monkeypatch) -> None:
    """Tests sign in many times: a cheap argon2 (the app's own is ~0.5 s a hash here)."""
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(web.accounts, "_hasher", lambda: hasher)
    monkeypatch.setattr(web.accounts, "_dummy_hash", lambda: hasher.hash("not anyone's"))


def build_world(engine, settings: Settings, *, with_cases: bool = True) -> World:
    """The schools, pupils, registers and users; with `with_cases`, also the rows the
    workflows would have written (cases, tasks, a decision, a return, a letter)."""
    now = datetime.now(UTC)
    with Session(engine, expire_on_commit=False) as session:
        school = add_school(session)  # St Barnabas' policy, URN 118000
        other = add_school(session, name="Other Primary", urn="118001", policy="all-saints")
        schools = {"a": school, "b": other}
        ids = {}
        for serial, (key, (which, forename, surname, year, flags)) in enumerate(
            PUPILS.items(), start=1
        ):
            pupil = add_named_pupil(
                session, schools[which].id, serial, forename, surname, year, **flags
            )
            ids[key] = pupil.id
            marks = both(DAY, "N") if key.startswith("absent") else {}
            if key.startswith("decision"):
                for day in ("2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"):
                    marks |= both(day, "O")
            register(session, schools[which].id, pupil, "2026-09-03", DAY, marks)
        session.commit()
    rows = uuid.uuid4().hex[:8]  # no workflow on the test server has these IDs
    world = World(
        school=school,
        other=other,
        names=[n for _, f, s, _, _ in PUPILS.values() for n in (f, s)],
        pupil_ids=ids,
        episode_id=f"absence-{ids['absent']}-{DAY}-{rows}",
        case_id=f"attendance-case-{ids['case']}-2026-{rows}",
        decision_id=0,
        letter_id=0,
        other_episode_id=f"absence-{ids['absent_b']}-{DAY}-{rows}",
        other_case_id=f"attendance-case-{ids['case_b']}-2026-{rows}",
        other_decision_id=0,
        other_letter_id=0,
    )
    if with_cases:
        _add_cases(engine, settings, world, now)
    return world


def _add_cases(engine, settings: Settings, world: World, now: datetime) -> None:
    letters = LetterService(settings, engine)
    with Session(engine, expire_on_commit=False) as session:
        for school, episode_id, case_id, absent, case_pupil in (
            (world.school, world.episode_id, world.case_id, "absent", "case"),
            (world.other, world.other_episode_id, world.other_case_id, "absent_b", "case_b"),
        ):
            for cid, kind, pupil, stage in (
                (episode_id, "absence_episode", absent, "day 1"),
                (case_id, "attendance_case", case_pupil, "Continued absence: Letter home"),
            ):
                session.add(
                    CaseRecord(
                        case_id=cid,
                        school_id=school.id,
                        pupil_id=world.pupil_ids[pupil],
                        kind=kind,
                        status="open",
                        stage=stage,
                        next_action="Phone parents/carers",
                        next_due=now + timedelta(hours=2),
                        opened_on=date.fromisoformat(DAY),
                        updated_at=now,
                    )
                )
            session.add(
                StaffTask(
                    key=f"{episode_id}/call",
                    school_id=school.id,
                    pupil_id=world.pupil_ids[absent],
                    case_id=episode_id,
                    kind="call_parents",
                    summary="Phone parents/carers (day 1 of absence)",
                    role="office",
                    due_at=now - timedelta(hours=1),
                    created_at=now,
                )
            )
            session.add(
                ChronologyEntry(
                    key=f"{case_id}/stage",
                    school_id=school.id,
                    pupil_id=world.pupil_ids[case_pupil],
                    case_id=case_id,
                    on_day=date.fromisoformat(DAY),
                    at=now,
                    kind="stage",
                    summary="Continued absence: Letter home",
                )
            )
            session.add(
                LAReturn(
                    key=f"{case_id}/return",
                    school_id=school.id,
                    pupil_id=world.pupil_ids[case_pupil],
                    case_id=case_id,
                    kind="attendance_return",
                    raised_on=date.fromisoformat(DAY),
                    summary="Attendance return to the LA",
                )
            )
            decision = LegalDecision(
                key=f"{case_id}/decision",
                school_id=school.id,
                pupil_id=world.pupil_ids[case_pupil],
                case_id=case_id,
                kind="penalty_notice_request",
                asked_on=date.fromisoformat(DAY),
                due_on=date.fromisoformat(DAY) + timedelta(days=5),
            )
            session.add(decision)
            session.flush()
            if school is world.school:
                world.decision_id = decision.id
            else:
                world.other_decision_id = decision.id
        session.commit()
    template = "st_barnabas/below_97"
    world.letter_id = letters.write(
        school_id=world.school.id,
        pupil_id=world.pupil_ids["case"],
        template=template,
        key="test/letter-a",
        data=spec_for(template).sample_data,
        case_id=world.case_id,
        as_of=DAY,
    )
    world.other_letter_id = letters.write(
        school_id=world.other.id,
        pupil_id=world.pupil_ids["case_b"],
        template="all_saints/below_96",
        key="test/letter-b",
        data=spec_for("all_saints/below_96").sample_data,
        case_id=world.other_case_id,
        as_of=DAY,
    )


def add_users(engine, world: World) -> None:
    with Session(engine) as session:
        for role in ROLES:
            email = f"{role.replace('_', '.')}@school-a.example"
            add_user(
                session,
                email=email,
                name=f"A {role.replace('_', ' ').title()}",
                role=role,
                school_ids=[world.school.id],
                password=PASSWORD,
            )
            world.users[role] = email
        session.commit()


# --------------------------------------------------------------------------- the app


class RecordingEngine(CaseEngine):
    """The app's own case engine, noting each Update the server let through."""

    def __init__(self, settings: Settings, client) -> None:
        super().__init__(settings, client)
        self.updates: list[tuple[str, str, Any]] = []

    async def update(self, case_id: str, name: str, arg: Any) -> Any:
        self.updates.append((case_id, name, arg))
        return await super().update(case_id, name, arg)


@dataclass
class Live:
    """School A's cases run by real workflows: an absence episode on its first day, an
    attendance case at its first letter and one waiting for the headteacher's decision."""

    episode_id: str
    case_id: str
    decision_case_id: str
    decision_id: int
    decision_key: str


@pytest.fixture
def world(engine, settings, monkeypatch) -> World:
    cheap_hasher(monkeypatch)
    found = build_world(engine, settings)
    add_users(engine, found)
    return found


@pytest.fixture
def sent(settings, temporal_env) -> RecordingEngine:
    return RecordingEngine(settings, temporal_env.client)


@pytest.fixture
def app(engine, settings, sent):
    app = create_app(settings, engine=engine, temporal_client=sent._client)
    app.state.case_engine = sent
    return app


async def _until(check, what: str) -> None:
    for _ in range(400):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest_asyncio.fixture
async def live(engine, settings, world, temporal_env) -> AsyncIterator[Live]:
    client = temporal_env.client
    queue = f"web-auth-{uuid.uuid4()}"
    suffix = queue[-12:]
    ids = world.pupil_ids
    async with build_worker(client, engine=engine, task_queue=queue, settings=settings):
        with temporal_env.with_time_skipping_disabled():
            episode = await client.start_workflow(
                AbsenceEpisode.run,
                AbsenceEpisodeInput(
                    school_id=world.school.id,
                    pupil_id=ids["absent"],
                    first_day=DAY,
                    procedure=EpisodeProcedure(
                        days=[EpisodeDay(1, [EpisodeAction("call_parents", "office", "09:30")])]
                    ),
                    safeguarding=True,
                ),
                id=f"absence-{ids['absent']}-{DAY}-{suffix}",
                task_queue=queue,
                start_signal="register_today",
                start_signal_args=[RegisterToday(day=DAY, am="N", pm="N")],
            )
            case = await client.start_workflow(
                AttendanceCase.run,
                AttendanceCaseInput(world.school.id, ids["case"], 2026),
                id=f"attendance-case-{ids['case']}-2026-{suffix}",
                task_queue=queue,
                start_signal="thresholds_changed",
                start_signal_args=[ThresholdsChanged("2026-11-13", ["below_97"], ["below_97"])],
            )
            decision = await client.start_workflow(
                AttendanceCase.run,
                AttendanceCaseInput(world.school.id, ids["decision"], 2026),
                id=f"attendance-case-{ids['decision']}-2026-{suffix}",
                task_queue=queue,
                start_signal="thresholds_changed",
                start_signal_args=[
                    ThresholdsChanged(
                        DAY, ["penalty_notice_consideration"], ["penalty_notice_consideration"]
                    )
                ],
            )

        async def written() -> bool:
            with Session(engine) as session:
                cases = session.exec(
                    select(CaseRecord.case_id).where(
                        col(CaseRecord.case_id).in_([episode.id, case.id, decision.id])
                    )
                ).all()
                asked = session.exec(
                    select(LegalDecision).where(LegalDecision.case_id == decision.id)
                ).first()
            stage = (await case.query(AttendanceCase.status)).ladder_stages
            return len(cases) == 3 and asked is not None and "continued_absence" in stage

        await _until(written, "the cases' first steps")
        with Session(engine) as session:
            asked = session.exec(
                select(LegalDecision).where(LegalDecision.case_id == decision.id)
            ).one()
        yield Live(episode.id, case.id, decision.id, asked.id, asked.key)


@pytest_asyncio.fixture
async def anonymous(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def signed_in(app, engine, world: World, role: str) -> httpx.AsyncClient:
    """A client with a session for `role` (made directly: signing in is tested below)."""
    with Session(engine) as session:
        user = session.exec(
            select(web.accounts.WebUser).where(web.accounts.WebUser.email == world.users[role])
        ).one()
        token = start_session(session, user, hours=1)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    client.cookies.set(SESSION_COOKIE, token)
    return client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


# --------------------------------------------------------------------------- routes

# Who may see each page (everyone else gets 403); another school's page is 404 for those
# who may see the page at all.
PAGE_ROLES = {
    "today": {"office", "attendance_officer", "headteacher"},
    "caseload": {"office", "attendance_officer", "headteacher", "la_officer"},
    "approvals": {"attendance_officer", "headteacher"},
    "school": set(ROLES),
    "case": {"office", "attendance_officer", "headteacher", "la_officer"},
    "episode": {"office", "attendance_officer", "headteacher", "la_officer"},
    "letter": {"office", "attendance_officer", "headteacher", "la_officer"},
    "evidence": {"attendance_officer", "headteacher"},
}


def page_paths(world: World, *, other: bool = False) -> dict[str, str]:
    school = world.other if other else world.school
    case_id = world.other_case_id if other else world.case_id
    episode_id = world.other_episode_id if other else world.episode_id
    decision = world.other_decision_id if other else world.decision_id
    letter = world.other_letter_id if other else world.letter_id
    return {
        "today": f"/schools/{school.id}/today",
        "caseload": f"/schools/{school.id}/caseload",
        "approvals": f"/schools/{school.id}/approvals",
        "school": f"/schools/{school.id}",
        "case": f"/cases/{case_id}",
        "episode": f"/cases/{episode_id}",
        "letter": f"/cases/{case_id}/letters/{letter}.pdf",
        "evidence": f"/schools/{school.id}/approvals/{decision}/evidence.pdf",
    }


# Steps: the form each takes and who may take it.
ACTION_ROLES = {
    "record_contact": {"office", "attendance_officer", "headteacher"},
    "record_visit": {"attendance_officer", "headteacher"},
    "schedule_meeting": {"attendance_officer", "headteacher"},
    "record_meeting_outcome": {"attendance_officer", "headteacher"},
    "record_contract": {"attendance_officer", "headteacher"},
    "pause": {"attendance_officer", "headteacher"},
    "resume": {"attendance_officer", "headteacher"},
    "move_to_stage": {"attendance_officer", "headteacher"},
    "record_la_outcome": {"attendance_officer", "headteacher"},
}
ACTION_FORMS = {
    "record_contact": {"outcome": "contact_made", "channel": "phone", "reason": "ill", "code": "I"},
    "record_visit": {"outcome": "child_seen", "note": "at home"},
    "schedule_meeting": {"day": "2026-12-01", "time": "15:30", "with_whom": "parents"},
    "record_meeting_outcome": {"attended": "yes", "targets": "97%"},
    "record_contract": {"signed_on": "2026-12-01", "terms": "review in 4 weeks"},
    "pause": {"reason": "medical", "note": "hospital stay"},
    "resume": {"note": "back"},
    "move_to_stage": {"target": "penalty_notice/consider_penalty_notice", "reason": "holiday"},
    "record_la_outcome": {"outcome": "issued", "on_day": "2026-12-01"},
}


def action_case(world: World, action: str, *, other: bool = False) -> str:
    episode = action in ("record_contact", "record_visit")
    if other:
        return world.other_episode_id if episode else world.other_case_id
    return world.episode_id if episode else world.case_id


# --------------------------------------------------------------------------- tests


async def test_signed_out_pages_go_to_sign_in_and_forms_are_refused(anonymous, world):
    for path in [*page_paths(world).values(), "/", "/schools"]:
        response = await anonymous.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/login?next={path}"
    response = await anonymous.post(
        f"/cases/{world.case_id}/pause", data={"reason": "medical", "csrf_token": "x"}
    )
    assert response.status_code == 403
    login = await anonymous.get("/login")
    assert login.status_code == 200
    assert 'autocomplete="current-password"' in login.text


@pytest.mark.parametrize("role", ROLES)
async def test_every_page_for_every_role(app, engine, world, role):
    async with await signed_in(app, engine, world, role) as client:
        for page, path in page_paths(world).items():
            response = await client.get(path)
            expected = 200 if role in PAGE_ROLES[page] else 403
            assert response.status_code == expected, (role, page, response.status_code)
            if expected == 200 and page in ("letter", "evidence"):
                assert response.headers["content-type"] == "application/pdf"
                assert response.content.startswith(b"%PDF")
        # Another school's pages and cases do not exist for this user: 404 where the role
        # may see such a page at all, 403 where it may not; nothing of them is shown.
        for page, path in page_paths(world, other=True).items():
            response = await client.get(path)
            expected = 404 if role in PAGE_ROLES[page] else 403
            assert response.status_code == expected, (role, page, response.status_code)
            for name in ("Zachary", "Quillfeather", "Yolanda", "Marchbanks", "Other Primary"):
                assert name not in response.text


# What the live cases make of each step the server lets through, taken in the order of
# ACTION_FORMS: the parent's call closes the episode, so no visit is due; St Barnabas' first
# rung (a letter home) has no meeting or contract; its policy has the Senior Attendance
# Champion (or the headteacher) agree a medical pause; a stage for staff to decide may be
# chosen by either; no penalty notice is with the LA.
NOTHING_WAITING = "Nothing in this case is waiting for that step."
WORKFLOW_SAYS = {
    "record_contact": None,
    "record_visit": "This absence episode is closed",
    "schedule_meeting": NOTHING_WAITING,
    "record_meeting_outcome": NOTHING_WAITING,
    "record_contract": NOTHING_WAITING,
    "pause": {"attendance_officer": "is agreed by the senior attendance champion"},
    "resume": {"attendance_officer": "The case is not paused."},
    "move_to_stage": None,
    "record_la_outcome": "Nothing in this case is waiting for a penalty notice",
}


def expected_refusal(action: str, role: str) -> str | None:
    said = WORKFLOW_SAYS[action]
    return said.get(role) if isinstance(said, dict) else said


def live_target(live: Live, action: str) -> str:
    return live.episode_id if KIND_OF[action] == "absence_episode" else live.case_id


@pytest.mark.parametrize("role", ROLES)
async def test_every_step_for_every_role(app, engine, world, live, sent, role):
    """Each step, for each role: refused by the server (403, nothing sent on) where the
    role may not take it; otherwise sent to the workflow, which takes it (303) or refuses
    it with its reason on the page (409). Another school's case is never reached."""
    async with await signed_in(app, engine, world, role) as client:
        page = await client.get(page_paths(world)["school"])
        token = csrf_of(page.text)
        for action, form in ACTION_FORMS.items():
            target = live_target(live, action)
            before = len(sent.updates)
            response = await client.post(
                f"/cases/{target}/{action}", data={**form, "csrf_token": token}
            )
            if role in ACTION_ROLES[action]:
                assert len(sent.updates) == before + 1, (role, action)
                case_id, name, step = sent.updates[-1]
                assert (case_id, name) == (target, action)
                assert step.by == f"A {role.replace('_', ' ').title()}"
                # Recorded under the policy's word for the role.
                assert step.role == {"office": "office_staff"}.get(role, role)
                refusal = expected_refusal(action, role)
                if refusal is None:
                    assert response.status_code == 303, (role, action, response.text[:400])
                else:
                    assert response.status_code == 409, (role, action)
                    shown = re.search(r'role="alert"[^>]*>(.*?)</div>', response.text, re.S)
                    assert refusal in html.unescape(shown.group(1)), (role, action)
            else:
                assert response.status_code == 403, (role, action)
                assert len(sent.updates) == before
            # Another school's case: not found, and nothing reaches the workflow.
            before = len(sent.updates)
            response = await client.post(
                f"/cases/{action_case(world, action, other=True)}/{action}",
                data={**form, "csrf_token": token},
            )
            # (A governor may not see cases at all; for everyone else the case is looked
            # up, and not found, before their role is weighed.)
            expected = 403 if role == "governor" else 404
            assert response.status_code == expected, (role, action, response.status_code)
            assert len(sent.updates) == before
    with Session(engine) as session:
        episode = session.get(CaseRecord, live.episode_id)
        marks = session.exec(
            select(RegisterMark.code).where(
                RegisterMark.pupil_id == world.pupil_ids["absent"], RegisterMark.day == DAY
            )
        ).all()
    if role in ACTION_ROLES["record_contact"]:
        # The call went through: the N became I and the episode is closing.
        assert sorted(marks) == ["I", "I"]
    else:
        assert sorted(marks) == ["N", "N"]
        assert episode.status == "open"


@pytest.mark.parametrize("role", ROLES)
async def test_only_the_headteacher_decides(app, engine, world, live, sent, role):
    async with await signed_in(app, engine, world, role) as client:
        token = csrf_of((await client.get(page_paths(world)["school"])).text)
        form = {"verdict": "approve", "reason": "Support has not worked", "csrf_token": token}
        response = await client.post(
            f"/schools/{world.school.id}/approvals/{live.decision_id}", data=form
        )
        with Session(engine) as session:
            decision = session.get(LegalDecision, live.decision_id)
        if role == "headteacher":
            assert response.status_code == 303
            case_id, name, step = sent.updates[-1]
            assert (case_id, name) == (live.decision_case_id, "decide")
            assert (step.approve, step.role, step.reason) == (
                True,
                "headteacher",
                "Support has not worked",
            )
            assert step.decision_key == live.decision_key
            assert (decision.status, decision.decided_by) == ("approved", "A Headteacher")
            # Decided once: the same form again is refused, and nothing is sent.
            response = await client.post(
                f"/schools/{world.school.id}/approvals/{live.decision_id}", data=form
            )
            assert response.status_code == 409
            assert "already recorded (approved)" in response.text
            assert len(sent.updates) == 1
        else:
            assert response.status_code == 403
            assert sent.updates == []
            assert decision.status == "awaiting"
            if role == "attendance_officer":
                assert "Only the headteacher" in response.text
        # Another school's decision: never reached.
        response = await client.post(
            f"/schools/{world.other.id}/approvals/{world.other_decision_id}", data=form
        )
        assert response.status_code == (404 if role in PAGE_ROLES["approvals"] else 403)
        assert all(update[0] != world.other_case_id for update in sent.updates)


async def test_a_refusal_by_the_workflow_is_shown_with_its_reason(app, engine, world, live, sent):
    async with await signed_in(app, engine, world, "attendance_officer") as client:
        token = csrf_of((await client.get(f"/cases/{live.case_id}")).text)
        # St Barnabas' policy has the Senior Attendance Champion agree a medical pause.
        response = await client.post(
            f"/cases/{live.case_id}/pause",
            data={"reason": "medical", "note": "", "csrf_token": token},
        )
        assert response.status_code == 409
        assert len(sent.updates) == 1  # it reached the workflow, which refused it
        assert "agreed by the senior attendance champion" in response.text
        status = await (await sent.client()).get_workflow_handle(live.case_id).query("status")
        assert status["paused"] is False
        # A form the server cannot read is refused before it reaches the workflow.
        response = await client.post(
            f"/cases/{live.case_id}/schedule_meeting",
            data={"day": "next tuesday", "time": "15:30", "with_whom": "x", "csrf_token": token},
        )
        assert response.status_code == 422
        assert "is not a date" in response.text
        # A step for the other kind of case is refused too.
        response = await client.post(
            f"/cases/{live.case_id}/record_visit",
            data={"outcome": "child_seen", "csrf_token": token},
        )
        assert response.status_code == 409
        assert "does not apply to this kind of case" in response.text
        assert len(sent.updates) == 1


async def test_csrf_token_missing_forged_or_from_another_session(app, engine, world, live, sent):
    office = await signed_in(app, engine, world, "office")
    head = await signed_in(app, engine, world, "headteacher")
    async with office, head:
        office_token = csrf_of((await office.get(f"/cases/{live.episode_id}")).text)
        head_token = csrf_of((await head.get(f"/cases/{live.case_id}")).text)
        contact = ACTION_FORMS["record_contact"]
        step = f"/cases/{live.episode_id}/record_contact"
        decide = f"/schools/{world.school.id}/approvals/{live.decision_id}"
        verdict = {"verdict": "approve", "reason": "r"}
        for client, path, form in (
            (office, step, contact),
            (office, step, {**contact, "csrf_token": ""}),
            (office, step, {**contact, "csrf_token": "forged" + office_token[6:]}),
            (office, step, {**contact, "csrf_token": head_token}),
            (head, decide, verdict),
            (head, decide, {**verdict, "csrf_token": office_token}),
            (office, "/logout", {}),
        ):
            response = await client.post(path, data=form)
            assert response.status_code == 403, (path, form)
            assert "nothing was recorded" in response.text
        # A JSON body or a header with the wrong token fares no better.
        response = await office.post(step, json=contact, headers={"x-csrf-token": "nope"})
        assert response.status_code == 403
        assert sent.updates == []
        with Session(engine) as session:
            assert session.get(LegalDecision, live.decision_id).status == "awaiting"
        # With the right token the same step goes through.
        response = await office.post(step, data={**contact, "csrf_token": office_token})
        assert response.status_code == 303
        assert len(sent.updates) == 1


async def test_sign_in_and_out(anonymous, engine, world):
    page = await anonymous.get("/login")
    token = csrf_of(page.text)
    email = world.users["office"]
    # The sign-in form has its own CSRF token, in a cookie for /login.
    response = await anonymous.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": "forged"}
    )
    assert response.status_code == 403
    response = await anonymous.post(
        "/login", data={"email": email, "password": "wrong password", "csrf_token": token}
    )
    assert response.status_code == 401
    assert "do not match an account" in response.text
    # Each sign-in page gives a new token; an unknown address reads the same as a wrong
    # password.
    unknown = await anonymous.post(
        "/login",
        data={
            "email": "nobody@school-a.example",
            "password": PASSWORD,
            "csrf_token": csrf_of(response.text),
        },
    )
    assert unknown.status_code == 401
    assert "do not match an account" in unknown.text
    response = await anonymous.post(
        "/login",
        data={
            "email": email.upper(),
            "password": PASSWORD,
            "csrf_token": csrf_of(unknown.text),
            "next": "https://elsewhere.example/",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"  # never to another site
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    home = await anonymous.get("/")
    assert home.headers["location"] == f"/schools/{world.school.id}/today"
    today = await anonymous.get(home.headers["location"])
    assert today.status_code == 200
    with Session(engine) as session:
        assert len(session.exec(select(WebSession)).all()) == 1
        stored = session.exec(select(WebSession)).one()
        assert stored.token_hash != anonymous.cookies.get(SESSION_COOKIE)  # only its hash
    old_token = anonymous.cookies.get(SESSION_COOKIE)
    response = await anonymous.post("/logout", data={"csrf_token": csrf_of(today.text)})
    assert response.status_code == 303
    with Session(engine) as session:
        assert session.exec(select(WebSession)).all() == []
    # The old cookie is worth nothing now.
    anonymous.cookies.set(SESSION_COOKIE, old_token)
    response = await anonymous.get(f"/schools/{world.school.id}/today")
    assert response.status_code == 303


async def test_five_wrong_passwords_lock_the_account(anonymous, world):
    token = csrf_of((await anonymous.get("/login")).text)
    email = world.users["headteacher"]
    for _ in range(5):
        response = await anonymous.post(
            "/login", data={"email": email, "password": "guess", "csrf_token": token}
        )
        assert response.status_code == 401
        token = csrf_of(response.text)
    response = await anonymous.post(
        "/login", data={"email": email, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 401


async def test_governor_sees_no_names(app, engine, world):
    async with await signed_in(app, engine, world, "governor") as client:
        home = await client.get("/")
        assert home.headers["location"] == f"/schools/{world.school.id}"
        for path in ("/schools", home.headers["location"]):
            response = await client.get(path)
            assert response.status_code == 200
            for name in world.names:
                assert name not in response.text, (path, name)
        school = await client.get(home.headers["location"])
        assert "Returns due to the LA" in school.text
        assert "/cases/" not in school.text
        # Cohorts of one or two pupils (one on free school meals here) are not shown.
        assert "fewer than 5" in school.text
    async with await signed_in(app, engine, world, "headteacher") as client:
        school = await client.get(f"/schools/{world.school.id}")
        assert "fewer than 5" not in school.text


async def test_la_officer_sees_their_schools_and_no_other(app, engine, world):
    """An LA officer reads across the schools they are given, and only those."""
    with Session(engine, expire_on_commit=False) as session:
        third = add_school(session, name="Third Primary", urn="118002", policy="springbank")
        add_user(
            session,
            email="la.two@county.example",
            name="Lee Two Schools",
            role="la_officer",
            school_ids=[world.school.id, world.other.id],
            password=PASSWORD,
        )
        session.commit()
        user = session.exec(
            select(web.accounts.WebUser).where(
                web.accounts.WebUser.email == "la.two@county.example"
            )
        ).one()
        token = start_session(session, user, hours=1)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    client.cookies.set(SESSION_COOKIE, token)
    async with client:
        home = await client.get("/")
        assert home.headers["location"] == "/schools"
        schools = (await client.get("/schools")).text
        assert "St Barnabas" in schools and "Other Primary" in schools
        assert "Third Primary" not in schools
        for other in (False, True):
            for page in ("caseload", "school", "case", "episode", "letter"):
                response = await client.get(page_paths(world, other=other)[page])
                assert response.status_code == 200, (other, page)
            for page in ("today", "approvals", "evidence"):  # not an LA officer's pages
                response = await client.get(page_paths(world, other=other)[page])
                assert response.status_code == 403, (other, page)
        caseload = (await client.get(page_paths(world, other=True)["caseload"])).text
        assert "Yolanda" in caseload and "Barnaby" not in caseload  # one school at a time
        for path in (f"/schools/{third.id}", f"/schools/{third.id}/caseload"):
            assert (await client.get(path)).status_code == 404
        # Reading is all: no step on a case.
        token = csrf_of((await client.get(page_paths(world)["case"])).text)
        response = await client.post(
            f"/cases/{world.case_id}/pause",
            data={"reason": "medical", "note": "", "csrf_token": token},
        )
        assert response.status_code == 403


async def test_an_unexpected_error_is_logged_without_personal_data(
    app, engine, world, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise ValueError("Barnaby Quenell, 1 Quarry Road, TN1 2EY")

    monkeypatch.setattr("web.pages.caseload.caseload_page", broken)
    async with await signed_in(app, engine, world, "attendance_officer") as client:
        response = await client.get(page_paths(world)["caseload"])
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "Barnaby" not in response.text
    logged = caplog.text
    assert f"unhandled ValueError on GET /schools/{world.school.id}/caseload" in logged
    assert "Barnaby" not in logged and "Quarry" not in logged


async def test_urls_hold_ids_only_and_pages_are_not_stored(app, engine, world):
    async with await signed_in(app, engine, world, "headteacher") as client:
        for page in ("today", "caseload", "approvals", "school", "case", "episode"):
            response = await client.get(page_paths(world)[page])
            assert response.status_code == 200
            assert response.headers["cache-control"] == "no-store"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["referrer-policy"] == "no-referrer"
            for url in re.findall(r'(?:href|action|src)="([^"]*)"', response.text):
                if url.startswith("tel:"):
                    continue
                for name in world.names:
                    assert name.lower() not in url.lower(), (page, url)
                assert "@" not in url, (page, url)


async def test_pages_show_the_schools_own_pupils(app, engine, world, live):
    async with await signed_in(app, engine, world, "headteacher") as client:
        today = (await client.get(page_paths(world)["today"])).text
        assert "Amelia" in today and "Thornbury" in today  # N today, and a call due
        assert "07700 900101" in today
        assert "Overdue" in today
        # On the safeguarding path (a social worker), St Barnabas' refers on day 3.
        assert "Referral to the local authority: child missing education on day 3" in today
        caseload = (await client.get(page_paths(world)["caseload"])).text
        assert "Barnaby" in caseload and "Amelia" in caseload
        filtered = await client.get(page_paths(world)["caseload"] + "?cohort=fsm")
        assert "Barnaby" in filtered.text and "Amelia" not in filtered.text
        approvals = (await client.get(page_paths(world)["approvals"])).text
        assert "Request a penalty notice from the LA" in approvals
        case = (await client.get(f"/cases/{live.case_id}")).text
        # The steps the workflow offers at a letter home, and no others.
        assert "Pause the case" in case and "Move the case to a stage" in case
        assert "Arrange the meeting" not in case and "Record the meeting" not in case
        assert world.other_case_id not in case
        school = (await client.get(page_paths(world)["school"])).text
        assert "Cohorts compared" in school and "Free school meals" in school
        for text in (today, caseload, approvals, case, school):
            for name in ("Zachary", "Yolanda"):
                assert name not in text


def test_today_lists_an_absence_once_its_register_has_closed(engine, world):
    """On the day itself, an N is unexplained only after the register closes: St Barnabas'
    closes at 09:00 in the morning and 13:10 in the afternoon (GMT in November)."""
    with Session(engine, expire_on_commit=False) as session:
        school = session.get(School, world.school.id)
        seen = {}
        for at in ("08:59", "09:00", "13:09", "13:10"):
            now = datetime.fromisoformat(f"{DAY}T{at}+00:00")
            ctx = web.queries.school_context(session, school, now=now)
            assert ctx.today == ctx.as_of == date.fromisoformat(DAY)
            page = web.queries.today_page(session, ctx, now=now)
            seen[at] = [(a.pupil.forename, a.sessions) for a in page.absences]
    assert seen == {
        "08:59": [],
        "09:00": [("Amelia", ["AM"])],
        "13:09": [("Amelia", ["AM"])],
        "13:10": [("Amelia", ["AM", "PM"])],
    }


def test_school_figures_kept_follow_the_register(engine, world):
    """The School page keeps its register figures between pages, and the page right after
    the register changes (here, the office amending a day's N to I) shows the change; the
    app's refresher then finds nothing more to count."""

    def codes() -> dict[str, int]:
        with Session(engine, expire_on_commit=False) as session:
            school = session.get(School, world.school.id)
            ctx = web.queries.school_context(session, school)
            return {code: n for code, _, n, _ in web.queries.school_page(session, ctx).codes}

    before = codes()
    assert before["N"] == 2  # Amelia's day, both sessions
    assert codes() == before
    with Session(engine, expire_on_commit=False) as session:
        upn = session.get(Pupil, world.pupil_ids["absent"]).upn
        store_marks(
            session=session,
            school_id=world.school.id,
            rows=[
                MarkRow(n, upn, date.fromisoformat(DAY), half, "I", reason="Parent: ill")
                for n, half in ((1, "AM"), (2, "PM"))
            ],
            recorded_by="Olive Office",
            role="office_staff",
            source="test amendment",
            kind="case",
            sha256="test-amendment",
        )
        session.commit()
    after = codes()
    assert "N" not in after
    assert after["I"] == before.get("I", 0) + 2
    assert web.queries.refresh_school_figures(engine) >= 1
    assert codes() == after


def test_a_few_pupils_figures_are_those_of_the_whole_school(engine, world, caplog):
    """A case and the approvals queue compute figures for their pupils only: the same as
    the whole school's for them, and without falling back to the whole school."""
    wanted = [world.pupil_ids["case"], world.pupil_ids["decision"]]
    with Session(engine, expire_on_commit=False) as session:
        school = session.get(School, world.school.id)
        ctx = web.queries.school_context(session, school)
        whole = compute_figures(
            session=session,
            school_id=school.id,
            as_of=ctx.as_of,
            rules=ctx.policy.figure_rules(),
            calendar=ctx.calendar,
        )
        some = web.queries.figures_of(session, ctx, wanted)
    assert len(whole) == 3 and sorted(some) == sorted(wanted)
    assert some == {f.pupil_id: f for f in whole if f.pupil_id in wanted}
    assert some[world.pupil_ids["decision"]].unauthorised_year == 10  # five days of O
    assert "whole school" not in caplog.text
