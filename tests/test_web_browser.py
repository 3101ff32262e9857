"""The web app in a real browser (Debian's Chromium, driven by Playwright) against uvicorn
in-process, the real worker on the test session's Temporal dev server and real SQLite.

One browser, one server and one set of workflows for the module: the office records a
first-day call and sees the register change; the attendance officer arranges a meeting,
records that the family did not come and sees the case move on; the headteacher approves a
penalty-notice request that the officer, forging the form, could not. A screenshot of each
main page is written to var/screenshots/.
"""

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect
from sqlmodel import Session, select

from database import make_engine
from models.letters import Letter
from models.tables import LegalDecision, MarkAmendment, PenaltyNotice, RegisterMark, School
from settings import Settings
from tests.conftest import add_school
from tests.registers import both, register
from tests.test_web_auth import PASSWORD, add_named_pupil, cheap_hasher
from web.accounts import add_user
from web.server import server
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

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DAY = "2026-11-24"  # the last register day (a Tuesday)
DESKTOP = {"width": 1280, "height": 900}
TABLET = {"width": 820, "height": 1180}  # a tablet held upright

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (./test installs it)"
)


@dataclass
class Site:
    url: str
    engine: object
    school: School
    other: School
    episode_id: str
    meeting_case_id: str
    decision_case_id: str
    pupils: dict[str, int]
    users: dict[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _world(engine) -> tuple[School, School, dict[str, int]]:
    """St Barnabas' (the school under test) and another school, for the LA officer."""
    with Session(engine, expire_on_commit=False) as session:
        school = add_school(session)
        other = add_school(session, name="Other Primary", urn="118001", policy="all-saints")
        ids: dict[str, int] = {}
        # Absent today, no reason yet: the office's first-day call.
        pupil = add_named_pupil(session, school.id, 1, "Amelia", "Thornbury", 3, social_worker=True)
        register(session, school.id, pupil, "2026-09-03", DAY, both(DAY, "N"))
        ids["absent"] = pupil.id
        # O on three Monday mornings and a whole Monday: below 97%, then no better.
        pupil = add_named_pupil(session, school.id, 2, "Barnaby", "Quenell", 5, fsm=True)
        marks = {("2026-09-07", "AM"): "O", ("2026-09-14", "AM"): "O", ("2026-09-21", "AM"): "O"}
        register(session, school.id, pupil, "2026-09-03", DAY, marks | both("2026-11-16", "O"))
        ids["meeting"] = pupil.id
        # Ten unauthorised sessions in a week (a holiday not granted): the National
        # Framework's threshold.
        pupil = add_named_pupil(session, school.id, 3, "Cordelia", "Vantongeren", 6, send=True)
        holiday = {}
        for day in ("2026-11-16", "2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"):
            holiday |= both(day, "G")
        register(session, school.id, pupil, "2026-09-03", DAY, holiday)
        ids["decision"] = pupil.id
        for serial, (forename, surname) in enumerate(
            [("Dmitri", "Ashcombe"), ("Esme", "Bellweather"), ("Felix", "Carrow")], start=4
        ):
            pupil = add_named_pupil(session, school.id, serial, forename, surname, serial)
            register(session, school.id, pupil, "2026-09-03", DAY)
        pupil = add_named_pupil(session, other.id, 9, "Zachary", "Quillfeather", 2)
        register(session, other.id, pupil, "2026-09-03", DAY)
        session.commit()
    return school, other, ids


async def _until(check, what: str) -> None:
    for _ in range(300):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest_asyncio.fixture(scope="module")
async def site(tmp_path_factory, temporal_env, mailbox) -> AsyncIterator[Site]:
    folder = tmp_path_factory.mktemp("web")
    _, smtp_port = mailbox
    settings = Settings(
        database_url=f"sqlite:///{folder / 'attend.db'}",
        letters_dir=folder / "letters",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_starttls=False,
        letters_pdf_processes=0,
    )
    engine = make_engine(settings.database_url)
    patch = pytest.MonkeyPatch()
    cheap_hasher(patch)
    school, other, pupils = _world(engine)
    users = {}
    with Session(engine) as session:
        for role, name in (
            ("office", "Olive Office"),
            ("attendance_officer", "Oscar Officer"),
            ("headteacher", "Hana Head"),
            ("governor", "Gil Governor"),
            ("la_officer", "Lara LA"),
        ):
            email = f"{role.replace('_', '.')}@browser.example"
            schools = [school.id, other.id] if role == "la_officer" else [school.id]
            add_user(
                session, email=email, name=name, role=role, school_ids=schools, password=PASSWORD
            )
            users[role] = email
        session.commit()

    client = temporal_env.client
    queue = f"web-{uuid.uuid4()}"
    suffix = queue[-12:]
    async with build_worker(client, engine=engine, task_queue=queue, settings=settings):
        with temporal_env.with_time_skipping_disabled():
            episode = await client.start_workflow(
                AbsenceEpisode.run,
                AbsenceEpisodeInput(
                    school_id=school.id,
                    pupil_id=pupils["absent"],
                    first_day=DAY,
                    procedure=EpisodeProcedure(
                        days=[EpisodeDay(1, [EpisodeAction("call_parents", "office", "09:30")])]
                    ),
                    safeguarding=True,
                ),
                id=f"absence-{pupils['absent']}-{DAY}-{suffix}",
                task_queue=queue,
                start_signal="register_today",
                start_signal_args=[RegisterToday(day=DAY, am="N", pm="N")],
            )
            meeting = await client.start_workflow(
                AttendanceCase.run,
                AttendanceCaseInput(school.id, pupils["meeting"], 2026),
                id=f"attendance-case-{pupils['meeting']}-2026-{suffix}",
                task_queue=queue,
                start_signal="thresholds_changed",
                start_signal_args=[ThresholdsChanged("2026-11-13", ["below_97"], ["below_97"])],
            )
            decision = await client.start_workflow(
                AttendanceCase.run,
                AttendanceCaseInput(school.id, pupils["decision"], 2026),
                id=f"attendance-case-{pupils['decision']}-2026-{suffix}",
                task_queue=queue,
                start_signal="thresholds_changed",
                start_signal_args=[
                    ThresholdsChanged(
                        DAY, ["penalty_notice_consideration"], ["penalty_notice_consideration"]
                    )
                ],
            )

        async def stage_is(handle, ladder: str, stage: str) -> bool:
            return (await handle.query(AttendanceCase.status)).ladder_stages.get(ladder) == stage

        await _until(lambda: stage_is(meeting, "continued_absence", "concern_letter"), "letter")
        # Four school weeks on, no better: the meeting with the Senior Attendance Champion.
        await temporal_env.fast_forward(meeting, timedelta(days=28))
        await _until(lambda: stage_is(meeting, "continued_absence", "sac_meeting"), "meeting")
        await _until(
            lambda: stage_is(decision, "penalty_notice", "consider_penalty_notice"), "decision"
        )

        async def episode_recorded() -> bool:
            return bool((await episode.query(AbsenceEpisode.status)).days_absent)

        await _until(episode_recorded, "the episode's first day")

        port = free_port()
        web = server(settings, engine=engine, temporal_client=client, host="127.0.0.1", port=port)
        serving = asyncio.create_task(web.serve())

        async def started() -> bool:
            return web.started

        await _until(started, "uvicorn")
        try:
            yield Site(
                url=f"http://127.0.0.1:{port}",
                engine=engine,
                school=school,
                other=other,
                episode_id=episode.id,
                meeting_case_id=meeting.id,
                decision_case_id=decision.id,
                pupils=pupils,
                users=users,
            )
        finally:
            web.should_exit = True
            await serving
            patch.undo()


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        found = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield found
        await found.close()


async def sign_in(browser: Browser, site: Site, role: str, viewport=DESKTOP) -> Page:
    context = await browser.new_context(viewport=viewport, locale="en-GB")
    page = await context.new_page()
    await page.goto(f"{site.url}/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("E-mail address").fill(site.users[role])
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
    return page


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def test_each_role_signs_in_to_their_own_start_page(browser, site):
    starts = {
        "office": ("Today", f"/schools/{site.school.id}/today"),
        "attendance_officer": ("Caseload", f"/schools/{site.school.id}/caseload"),
        "headteacher": ("Approvals", f"/schools/{site.school.id}/approvals"),
        "governor": ("St Barnabas' CE Primary", f"/schools/{site.school.id}"),
        "la_officer": ("Your schools", "/schools"),
    }
    for role, (heading, path) in starts.items():
        page = await sign_in(browser, site, role)
        assert page.url == site.url + path, role
        await expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        if role == "governor":
            body = await page.content()
            for name in ("Amelia", "Thornbury", "Barnaby", "Cordelia", "Quenell"):
                assert name not in body
            # Only the School page is in a governor's navigation.
            nav = page.get_by_role("navigation", name="Pages")
            await expect(nav.get_by_role("link")).to_have_count(1)
            await screenshot(page, "school-governor")
        if role == "la_officer":
            await expect(page.get_by_role("link", name="Other Primary")).to_be_visible()
            await screenshot(page, "schools-la-officer")
        if role == "headteacher":
            await page.goto(f"{site.url}/schools/{site.school.id}")
            await expect(page.get_by_role("heading", name="Cohorts compared")).to_be_visible()
            await screenshot(page, "school")
        # Signing out ends the session: the pages ask for a sign-in again.
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await page.goto(site.url + path)
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await page.context.close()
    page = await (await browser.new_context(viewport=DESKTOP)).new_page()
    await page.goto(f"{site.url}/login")
    await screenshot(page, "login")
    await page.context.close()


async def test_office_records_a_first_day_call_and_the_register_changes(browser, site):
    page = await sign_in(browser, site, "office")
    await expect(page.get_by_role("heading", name="Unexplained absences")).to_be_visible()
    absences = page.locator("section", has=page.get_by_role("heading", name="Unexplained"))
    await expect(absences.get_by_role("row", name="Amelia Thornbury")).to_be_visible()
    calls = page.locator("section", has=page.get_by_role("heading", name="Calls due"))
    await expect(calls.get_by_role("link", name="07700 900101")).to_be_visible()
    await screenshot(page, "today")

    await absences.get_by_role("link", name="Record the call").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Amelia Thornbury")
    today_am = page.locator(f'td.mark[data-day="{DAY}"][data-session="AM"]')
    today_pm = page.locator(f'td.mark[data-day="{DAY}"][data-session="PM"]')
    await expect(today_am).to_have_attribute("data-code", "N")
    form = page.locator("form#record_contact")
    # First a call nobody answered, by keyboard alone.
    await form.get_by_label("No answer").focus()
    await page.keyboard.press("Space")
    await form.get_by_role("button", name="Record").press("Enter")
    await expect(page.locator(".flash")).to_contain_text("Phone: no answer")
    await expect(today_am).to_have_attribute("data-code", "N")
    # Then the parent rings back: ill, so the N becomes I.
    await form.get_by_label("Contact made").check()
    await form.get_by_label("What the parent or carer gave as the reason").fill("Chickenpox")
    await form.get_by_label("The absence becomes").select_option("I")
    await form.get_by_role("button", name="Record").click()
    await expect(page.locator(".flash")).to_contain_text("contact made")
    for cell in (today_am, today_pm):
        await expect(cell).to_have_attribute("data-code", "I")
        await expect(cell).to_have_attribute("title", re.compile(r"amended from N"))
    await expect(page.locator("ol.chronology")).to_contain_text("Chickenpox")
    with Session(site.engine) as session:
        marks = session.exec(
            select(RegisterMark.code).where(
                RegisterMark.pupil_id == site.pupils["absent"], RegisterMark.day == DAY
            )
        ).all()
        assert sorted(marks) == ["I", "I"]
        amendment = session.exec(
            select(MarkAmendment).where(MarkAmendment.pupil_id == site.pupils["absent"])
        ).first()
        # Recorded under the policy's word for the office's role.
        assert (amendment.amended_by, amendment.amended_role) == ("Olive Office", "office_staff")
    # The episode closed: nothing more can be recorded on it.
    await page.reload()
    await expect(page.locator("form#record_contact")).to_have_count(0)
    await page.context.close()


async def test_officer_records_a_meeting_outcome_and_the_case_moves_on(browser, site):
    page = await sign_in(browser, site, "attendance_officer")
    await expect(page.get_by_role("row", name="Barnaby Quenell")).to_be_visible()
    await screenshot(page, "caseload")
    await page.get_by_role("link", name="Barnaby Quenell").click()
    stage = page.locator("#case-stage")
    await expect(stage).to_contain_text("Meeting with the Senior Attendance Champion")

    # A pause the policy says only the Senior Attendance Champion agrees: the workflow
    # refuses it, and the page says why.
    pause = page.locator("form#pause")
    await pause.get_by_label("Agreed reason").select_option("medical")
    await pause.get_by_role("button", name="Pause").click()
    await expect(page.locator("form#pause .error")).to_contain_text(
        "agreed by the senior attendance champion"
    )

    meeting = page.locator("form#schedule_meeting")
    await meeting.get_by_label("Date").fill("2026-12-15")
    await meeting.get_by_label("Time").fill("15:30")
    await meeting.get_by_label("With").fill("both parents")
    await meeting.get_by_role("button", name="Arrange").click()
    await expect(page.locator(".flash")).to_contain_text("Meeting arranged for 15/12/2026 15:30")

    outcome = page.locator("form#record_meeting_outcome")
    await outcome.get_by_label("No", exact=True).check()
    await outcome.get_by_label("Notes").fill("Nobody came; two calls unanswered")
    await outcome.get_by_role("button", name="Record the outcome").click()
    await expect(page.locator(".flash")).to_contain_text("did not attend")
    await expect(stage).to_contain_text("Personalised support plan or attendance contract")
    await expect(page.locator("form#record_contract")).to_be_visible()
    await expect(page.locator("ol.chronology")).to_contain_text("did not attend the meeting")
    # St Barnabas' sends a letter at each rung: the letter home, the invitation to the
    # meeting, and now the support plan's.
    await expect(page.locator("ul.letters a")).to_have_count(3)
    with Session(site.engine) as session:
        sent = session.exec(
            select(Letter.template).where(Letter.case_id == site.meeting_case_id)
        ).all()
    assert sorted(sent) == [
        "st_barnabas/below_97",
        "st_barnabas/sac_meeting",
        "st_barnabas/support_plan",
    ]
    await screenshot(page, "case")

    # The letter opens as a PDF.
    letter = page.locator("ul.letters a").first
    response = await page.request.get(site.url + await letter.get_attribute("href"))
    assert response.status == 200
    assert response.headers["content-type"] == "application/pdf"
    await page.context.close()

    # On a tablet the same page reads in one column.
    tablet = await sign_in(browser, site, "attendance_officer", viewport=TABLET)
    await tablet.goto(f"{site.url}/cases/{site.meeting_case_id}")
    await expect(tablet.locator("#case-stage")).to_contain_text("Personalised support plan")
    await screenshot(tablet, "case-tablet")
    await tablet.context.close()


async def test_headteacher_approves_a_penalty_notice_request_an_officer_cannot(browser, site):
    approvals = f"{site.url}/schools/{site.school.id}/approvals"
    with Session(site.engine) as session:
        decision = session.exec(
            select(LegalDecision).where(LegalDecision.case_id == site.decision_case_id)
        ).one()
    assert decision.kind == "penalty_notice_request"

    # The officer sees the queue but no way to decide; the form forged with their own
    # session's CSRF token is refused by the server.
    officer = await sign_in(browser, site, "attendance_officer")
    await officer.goto(approvals)
    await expect(officer.get_by_text("Cordelia Vantongeren").first).to_be_visible()
    await expect(officer.get_by_role("button", name="Approve")).to_have_count(0)
    token = await officer.locator('input[name="csrf_token"]').first.input_value()
    forged = await officer.request.post(
        f"{approvals}/{decision.id}",
        form={"verdict": "approve", "reason": "I think so", "csrf_token": token},
    )
    assert forged.status == 403
    assert "Only the headteacher" in await forged.text()
    await officer.context.close()
    with Session(site.engine) as session:
        assert session.get(LegalDecision, decision.id).status == "awaiting"

    head = await sign_in(browser, site, "headteacher")
    assert head.url == approvals
    card = head.locator("article.decision", has_text="Cordelia Vantongeren")
    await expect(card).to_contain_text("Request a penalty notice from the LA")
    await expect(card).to_contain_text("Unauthorised sessions")
    await screenshot(head, "approvals")
    evidence = await head.request.get(
        site.url
        + await card.get_by_role("link", name="Open the evidence pack (PDF)").get_attribute("href")
    )
    assert evidence.status == 200 and (await evidence.body()).startswith(b"%PDF")
    await card.get_by_label("Reason (recorded either way)").fill(
        "Holiday in term time after a refused request"
    )
    await card.get_by_role("button", name="Approve").click()
    await expect(head.locator(".flash")).to_have_text("Decision recorded: approved.")
    decided = head.locator("section", has=head.get_by_role("heading", name="Recently decided"))
    await expect(decided).to_contain_text("Approved by Hana Head")
    with Session(site.engine) as session:
        found = session.get(LegalDecision, decision.id)
        assert (found.status, found.decided_by) == ("approved", "Hana Head")
        notices = session.exec(
            select(PenaltyNotice).where(PenaltyNotice.pupil_id == site.pupils["decision"])
        ).all()
        assert sorted((n.sequence, n.amount) for n in notices) == [(1, 160), (1, 160)]
    await head.goto(f"{site.url}/cases/{site.decision_case_id}")
    await expect(head.locator("ol.chronology")).to_contain_text("approved by the headteacher")
    await head.context.close()
