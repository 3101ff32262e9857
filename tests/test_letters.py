"""Letters: templates for every preset, rendering to HTML and PDF, storage that can be
rendered again, delivery through a real SMTP server on loopback (aiosmtpd), retries,
fallback to post, print packs, the evidence pack and the preview command."""

import asyncio
import email
import email.policy
import io
import json
import re
import shutil
import socket
import ssl
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pypdf
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from jinja2 import UndefinedError
from sqlmodel import Session, select
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.testing import ActivityEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from typer.testing import CliRunner

import letters.render as render_module
from activities.letters import (
    LetterActivities,
    LetterRequest,
    LetterResult,
    PrintPackRequest,
    build_letter_activities,
)
from cli import letters as letters_cli
from figures.compute import compute_figures
from letters.catalogue import LA, SPECS, TEXT, LetterSpec
from letters.context import compulsory_school_age_from, compulsory_school_age_until
from letters.pdf import PdfRenderer, html_to_pdf
from letters.render import (
    address_copy,
    days,
    html_to_text,
    long_date,
    long_datetime,
    pct,
    render,
    render_from_sources,
    render_text_message,
    resolve_language,
    sha256,
    template_names,
)
from letters.samples import sample_context
from letters.service import LetterService
from models.letters import Letter, LetterTemplateVersion, Outbox
from models.tables import ChronologyEntry, Contact, StaffTask
from policies import list_presets, load_policy
from settings import Settings
from tests.conftest import add_school
from tests.registers import add_pupil, both, register

TODAY = date(2026, 11, 25)
AS_OF = "2026-11-24"


# --------------------------------------------------------------------------- fixtures


class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and can misbehave on request."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list = []
        self.drop_next = 0  # close the connection during DATA, before accepting
        self.defer_next = 0  # answer DATA with 451 (try again later)
        self.peers: set = set()  # client connections (address and port)

    @property
    def sessions(self) -> int:
        return len(self.peers)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.peers.add(session.peer)
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.drop_next:
            self.drop_next -= 1
            server.transport.close()
            return "451 4.3.0 connection dropped"
        if self.defer_next:
            self.defer_next -= 1
            return "451 4.3.0 Try again later"
        self.envelopes.append(envelope)
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    mailbox.port = controller.port
    try:
        yield mailbox
    finally:
        controller.stop()


def settings_for(tmp_path: Path, port: int, **overrides) -> Settings:
    values = dict(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_from="attendance@attend.example",
        smtp_attempts=3,
        smtp_backoff_seconds=0.01,
        smtp_timeout_seconds=5,
        letters_pdf_processes=0,
        letters_dir=tmp_path / "letters",
    )
    values.update(overrides)
    return Settings(**values)


class Sleeps:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def make_service(engine, settings: Settings, **kwargs) -> LetterService:
    kwargs.setdefault("sleep", Sleeps())
    return LetterService(settings, engine, today=lambda zone: TODAY, **kwargs)


@pytest.fixture
async def service(engine, smtp, tmp_path):
    service = make_service(engine, settings_for(tmp_path, smtp.port))
    yield service
    await service.close()


def add_family(
    engine,
    *,
    policy: str = "all-saints",
    urn: str = "145873",
    serial: int = 1,
    forename: str = "Maisie",
    surname: str = "Whitlock",
    parents: tuple[dict, ...] | None = None,
    marks: dict[tuple[str, str], str] | None = None,
) -> tuple[int, int]:
    """A school on `policy`, a pupil with an autumn of register (two days absent without
    authorisation, one day ill) and parents with parental responsibility."""
    with Session(engine, expire_on_commit=False) as session:
        from models.tables import School

        school = session.exec(select(School).where(School.urn == urn)).first()
        if school is None:
            school = add_school(session, urn=urn, policy=policy)
        pupil = add_pupil(session, school.id, serial)
        pupil.forename, pupil.surname = forename, surname
        session.add(pupil)
        register(
            session,
            school.id,
            pupil,
            "2026-09-03",
            AS_OF,
            both("2026-11-10", "O")
            | both("2026-11-11", "O")
            | both("2026-11-12", "I")
            | (marks or {}),
        )
        if parents is None:
            parents = (
                dict(
                    title="Mrs",
                    forename="Jane",
                    surname=surname,
                    relationship="Mother",
                    email=f"jane.{serial}@example.org",
                    phone="07700 900123",
                    preferred_channel="email",
                ),
                dict(
                    title="Mr",
                    forename="Tom",
                    surname=surname,
                    relationship="Father",
                    email="",
                    preferred_channel="post",
                ),
            )
        for priority, parent in enumerate(parents, start=1):
            values = dict(address="4 Mill Lane\nLeek", postcode=f"ST13 {serial}AB") | parent
            session.add(Contact(pupil_id=pupil.id, priority=priority, **values))
        session.commit()
        return school.id, pupil.id


def pdf_text(pdf: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return "\n".join(page.extract_text() for page in reader.pages)


def flat(text: str) -> str:
    return " ".join(text.split())


def rows(engine, model, *where):
    with Session(engine) as session:
        return session.exec(select(model).where(*where)).all()


async def send(service: LetterService, school_id: int, pupil_id: int, **kwargs):
    kwargs.setdefault("template", "all_saints/stage_1b")
    kwargs.setdefault("key", "case-1/stage_1/letter")
    kwargs.setdefault("as_of", AS_OF)
    return await service.send(school_id=school_id, pupil_id=pupil_id, **kwargs)


# --------------------------------------------------------------------------- templates


# Letters the attendance case workflow asks for by name, whatever the policy says.
WORKFLOW_LETTERS = {"la/legal_referral", "la/penalty_notice_request"}


def policy_letters(policy) -> dict[str, dict]:
    """Every template a policy's ladders send, with the data the case workflow gives it
    (workflows/case.py: the ladder's and stage's names; `reason` for a positive letter)."""
    found: dict[str, dict] = {}
    for ladder in policy.ladders:
        first = {"ladder": ladder.name, "stage": ladder.stages[0].name}
        if ladder.september_letter:
            found[ladder.september_letter] = first
        for stage in ladder.stages:
            data = {"ladder": ladder.name, "stage": stage.name}
            for name in (stage.letter, stage.text_message):
                if name:
                    found[name] = data
            for variant in stage.variants.values():
                if variant.letter:
                    found[variant.letter] = data
            if stage.positive_letter:
                found[stage.positive_letter] = data | {"reason": "back above the line"}
    legal = {
        "ladder": "National Framework for Penalty Notices",
        "stage": "Consider a penalty notice",
    }
    found["la/legal_referral"] = legal
    found["la/penalty_notice_request"] = legal | {
        "notices": [
            {"parent": "Mrs Jane Example", "sequence": 1, "amount": 160},
            {"parent": "Mr John Example", "sequence": 2, "amount": 160},
        ]
    }
    return found


def test_templates_and_catalogue_agree():
    assert set(template_names()) == set(SPECS)


ROOT = Path(__file__).parent.parent
TEMPLATE_LITERAL = re.compile(r"[\"'](?:la|st_barnabas|all_saints|sevenoaks|springbank)/\w+[\"']")


def named_in_code(folder: str) -> set[str]:
    """Template names written as string literals in the Python files under `folder`."""
    return {
        match.group()[1:-1]
        for path in sorted((ROOT / folder).rglob("*.py"))
        for match in TEMPLATE_LITERAL.finditer(path.read_text())
    }


def test_every_letter_the_code_asks_for_by_name_exists():
    """The case workflow, the web app and the activities ask for some letters by name,
    whatever the policy says; a renamed template must fail here, not in a live case."""
    assert named_in_code("workflows") == WORKFLOW_LETTERS
    for folder in ("workflows", "web", "activities", "cli"):
        assert named_in_code(folder) <= set(SPECS), folder
    assert "la/evidence_pack" in named_in_code("web")


def test_a_referral_for_prosecution_says_why():
    """No further penalty notice within the repeat period: the case workflow refers the
    parent to the LA with `reason`, which the referral states."""
    policy = load_policy("all-saints")
    why = (
        "No further penalty notice within 3 years for Mr Tom Whitlock: referred to the LA"
        " to consider prosecution instead"
    )
    data = {
        "ladder": "National Framework for Penalty Notices",
        "stage": "Consider a penalty notice",
    }
    # At a stage whose step is the referral, the workflow gives the stage as the reason:
    # the letter names the stage once.
    at_stage = data | {"reason": data["stage"]}
    for given, expected in ((data | {"reason": why}, True), (data, False), (at_stage, False)):
        context = sample_context(policy, "la/legal_referral", data=given)
        text = flat(html_to_text(render("la/legal_referral", context)))
        assert (f"Why the school is referring now: {why}." in text) is expected
        assert ("Why the school is referring now" in text) is expected
        assert text.count("Consider a penalty notice") == 1 and "Maisie" in text


def test_the_presets_name_every_ladder_letter():
    """The walk below covers what the issue lists: each preset's ladder letters, the All
    Saints' variants and section 11 letters, Springbank's text, and the LA documents."""
    named = {p: set(policy_letters(load_policy(p))) for p in list_presets()}
    assert set(named) == {"st-barnabas", "all-saints", "sevenoaks", "springbank"}
    assert {
        "all_saints/stage_1_pa",
        "all_saints/stage_1a",
        "all_saints/stage_1b",
        "all_saints/stage_2a",
        "all_saints/stage_2b",
        "all_saints/stage_3a",
        "all_saints/stage_3b",
        "all_saints/stage_4_formal_warning",
        "all_saints/positive",
        "all_saints/below_96",
        "all_saints/monitored",
        "all_saints/targets_met",
        "all_saints/final_warning",
        "all_saints/truancy_warning",
    } <= named["all-saints"]
    assert {
        "springbank/warning_below_93",
        "springbank/stage_1",
        "springbank/stage_2",
    } <= named["springbank"]
    assert {
        "st_barnabas/below_97",
        "st_barnabas/sac_meeting",
        "st_barnabas/support_plan",
        "st_barnabas/la_referral_notice",
        "st_barnabas/improvement",
    } <= named["st-barnabas"]
    assert all(names >= WORKFLOW_LETTERS for names in named.values())


@pytest.mark.parametrize("preset", list_presets())
def test_every_letter_a_preset_sends_renders_with_the_workflows_data(preset):
    """Each template a preset's ladders name is in the catalogue, needs nothing beyond
    what the case workflow gives, and renders under StrictUndefined with only that."""
    policy = load_policy(preset)
    for name, data in policy_letters(policy).items():
        assert name in SPECS, f"{preset} names {name}, which has no template"
        spec = SPECS[name]
        assert not spec.missing(data), f"{name} needs {spec.missing(data)}"
        context = sample_context(policy, name, data=data)
        if spec.delivery == TEXT:
            text = render_text_message(name, context)
            assert "Maisie" in text and "88.7%" in text and len(text) <= 160
            continue
        text = flat(html_to_text(render(name, context)))
        assert policy.school.name in text and "Maisie" in text, name
        assert "88.7%" in text, name  # 94 of 106 sessions
        assert "None" not in text.replace("None recorded", ""), name
        assert "{{" not in text and "}}" not in text, name


async def test_every_letter_a_preset_sends_is_drafted_for_a_real_pupil(engine, smtp, service):
    """The same through the service, as the worker runs it: a pupil of a school on each
    preset with a register in the database, the workflow's data and nothing else."""
    urns = {
        "st-barnabas": "118000",
        "all-saints": "145873",
        "sevenoaks": "118947",
        "springbank": "148406",
    }
    with Session(engine) as session:
        for serial, preset in enumerate(list_presets(), start=1):
            school_id, pupil_id = add_family(engine, policy=preset, urn=urns[preset], serial=serial)
            for name, data in policy_letters(load_policy(preset)).items():
                draft = service.draft(
                    session,
                    school_id=school_id,
                    pupil_id=pupil_id,
                    template=name,
                    key=f"{preset}/{name}",
                    data=data,
                    case_id="case-x",
                    as_of=AS_OF,
                )
                text = flat(html_to_text(draft.html))
                assert "Maisie" in text, name
                # 106 sessions from 3 September to 24 November (the INSET day not
                # counted), 6 of them missed: 100 attended.
                assert "94.3%" in text, name
                assert draft.subject, name


@pytest.mark.parametrize("preset", list_presets())
@pytest.mark.parametrize("template", sorted(SPECS))
def test_every_template_renders_for_every_preset(preset, template):
    """StrictUndefined: a missing value fails; with all the example data and with none."""
    policy = load_policy(preset)
    spec = SPECS[template]
    for data in (spec.sample_data, dict(spec.needs)):
        context = sample_context(policy, template, data=data)
        if spec.delivery == TEXT:
            assert "Maisie" in render_text_message(template, context)
            continue
        text = html_to_text(render(template, context))
        assert policy.school.name in text
        assert "Maisie" in text
        assert "None" not in text.replace("None recorded", "")
        assert not glued(text), glued(text)


def glued(text: str) -> list[str]:
    """Words run together where a template tag swallowed a line break ("Keetch,called")."""
    words = [w for w in text.split() if not any(x in w for x in ("@", "http", "www."))]
    return [w for w in words if re.search(r"[a-z)][,.;:][A-Za-z(]|[^-0-9]\d{4}[a-z]", w)]


def test_a_missing_value_is_an_error_not_a_blank():
    policy = load_policy("st-barnabas")
    context = sample_context(policy, "st_barnabas/no_contact", data={})
    del context["school"]["phone"]
    with pytest.raises(UndefinedError):
        render("st_barnabas/no_contact", context)


def test_every_template_makes_a_pdf_with_the_figures():
    policy = load_policy("all-saints")
    for template in (
        "all_saints/stage_4_formal_warning",
        "springbank/calling_card",
        "la/evidence_pack",
    ):
        context = sample_context(policy, template)
        pdf = html_to_pdf(render(template, context))
        text = flat(pdf_text(pdf))
        assert "Maisie" in text
        # An outline to find the sections of an LA document by; none in a letter.
        assert bool(pypdf.PdfReader(io.BytesIO(pdf)).outline) == template.startswith("la/")
        if template != "springbank/calling_card":
            assert "88.7%" in text
            assert "Thursday 3 September 2026" in text


def test_the_stylesheet_parsed_once_lays_out_the_same():
    """html_to_pdf hands WeasyPrint the letter's stylesheet parsed (once per process):
    every box lands where the letter's own <style> puts it."""
    from weasyprint import HTML

    import letters.pdf as pdf_module

    def boxes(document) -> list[tuple]:
        found: list[tuple] = []

        def walk(box) -> None:
            found.append(
                (type(box).__name__, box.position_x, box.position_y, box.width, box.height)
            )
            for child in getattr(box, "children", []):
                walk(child)

        for page in document.pages:
            walk(page._page_box)
        return found

    policy = load_policy("all-saints")
    for template in ("all_saints/stage_4_formal_warning", "la/evidence_pack"):
        html = render(template, sample_context(policy, template))
        own = HTML(string=html).render(font_config=pdf_module._fonts())
        style = pdf_module._STYLE.search(html)
        parsed = HTML(string=html[: style.start()] + html[style.end() :]).render(
            font_config=pdf_module._fonts(),
            stylesheets=[pdf_module._stylesheet(style.group(1))],
        )
        assert len(own.pages) > 1 and boxes(parsed) == boxes(own), template
        assert pdf_text(html_to_pdf(html)) == pdf_text(own.write_pdf()), template


def test_address_lines_are_lines_in_the_pdf_and_the_email_and_stored_copies_stay_the_same():
    """The layout breaks the address, the school's block and the signature with newlines
    (pre-line) rather than <br>: each line still stands on its own in the PDF and in the
    email's text. A letter stored with the earlier layout makes the very same copy (and so
    the same copy hash) as when it was sent."""
    policy = load_policy("st-barnabas")
    html = render("st_barnabas/below_97", sample_context(policy, "st_barnabas/below_97"))
    assert "<br>" not in html
    address = ["14 Mill Lane", "Tunbridge Wells", "TN2 3AB"]
    copy = address_copy(html, name="Ms Jo Keetch", address_lines=address, salutation="Ms Keetch")
    lines = "Ms Jo Keetch\n14 Mill Lane\nTunbridge Wells\nTN2 3AB"
    assert lines in pdf_text(html_to_pdf(copy))
    text = html_to_text(copy)
    assert lines in text and "Dear Ms Keetch," in text
    school = policy.school
    assert f"{school.address[0]}\n{school.address[1]}" in text
    assert f"{policy.school.senior_attendance_champion.name}\n" in text
    stored_before = html.replace("<!--recipient:lines-->", "<!--recipient-->")
    old_copy = address_copy(
        stored_before, name="Ms Jo Keetch", address_lines=address, salutation="Ms Keetch"
    )
    assert "Ms Jo Keetch<br>14 Mill Lane<br>Tunbridge Wells<br>TN2 3AB" in old_copy


def test_plain_english_formats():
    assert long_date("2026-11-23") == "Monday 23 November 2026"
    assert long_datetime("2026-12-01T09:15") == "Tuesday 1 December 2026 at 9:15am"
    assert pct(96.0) == "96%" and pct(88.68) == "88.7%" and pct(None) == "not yet measured"
    assert days(0.5) == "½ day" and days(1) == "1 day" and days(4.5) == "4½ days"


def test_compulsory_school_age():
    # Fifth birthday 14 May 2023: from the next prescribed day, 31 August 2023.
    assert compulsory_school_age_from(date(2018, 5, 14)) == date(2023, 8, 31)
    assert compulsory_school_age_from(date(2018, 12, 31)) == date(2023, 12, 31)
    # Sixteen on 14 May 2034: until the last Friday in June 2034.
    assert compulsory_school_age_until(date(2018, 5, 14)) == date(2034, 6, 30)
    assert compulsory_school_age_until(date(2018, 10, 1)) == date(2035, 6, 29)


def test_the_legal_wording_comes_from_the_national_rules():
    policy = load_policy("st-barnabas")

    def text(template: str) -> str:
        return flat(html_to_text(render(template, sample_context(policy, template))))

    brief = text("st_barnabas/below_97")
    assert "sections 7 and 444 of the Education Act 1996" in brief
    assert "at 10 sessions of unauthorised absence within 10 school weeks" in brief
    assert "a penalty notice of £160 for each parent (£80 if paid within 21 days)" in brief
    full = text("st_barnabas/la_referral_notice")
    assert "10 sessions (half-days) of unauthorised absence within any 10 school weeks" in full
    assert "£160 for each parent, for each child, reduced to £80 if paid within 21 days" in full
    assert "A second notice within 3 years is £160, with no reduction" in full
    assert "the local authority considers prosecution instead" in full
    assert "fined up to £2,500 and/or imprisoned for up to 3 months" in full
    assert "Education Supervision Order (section 447" in full


async def test_a_language_set_is_used_where_it_has_the_letter(
    engine, smtp, service, tmp_path, monkeypatch
):
    """A Polish set holding one letter: that letter is written, stored, emailed and
    rendered again in Polish; a letter the set lacks is written in English."""
    root = tmp_path / "templates"
    shutil.copytree(render_module.TEMPLATES, root)
    (root / "pl" / "all_saints").mkdir(parents=True)
    (root / "pl" / "all_saints" / "stage_1a.html").write_text(
        '{% extends "base.html" %}{% block lang %}pl{% endblock %}'
        "{% block title %}Frekwencja: {{ pupil.forename }}{% endblock %}"
        "{% block body %}<p>Frekwencja {{ figures.rate_year | pct }}</p>{% endblock %}"
    )
    monkeypatch.setattr(render_module, "TEMPLATES", root)
    render_module.environment.cache_clear()
    render_module.template_version.cache_clear()
    try:
        assert resolve_language("all_saints/stage_1a", "pl") == "pl"
        assert resolve_language("all_saints/stage_1b", "pl") == "en"
        context = sample_context(load_policy("all-saints"), "all_saints/stage_1a")
        html = render("all_saints/stage_1a", context, "pl")
        assert "Frekwencja 88.7%" in html and 'lang="pl"' in html

        school_id, pupil_id = add_family(engine)
        for template in ("all_saints/stage_1a", "all_saints/stage_1b"):
            await send(
                service,
                school_id,
                pupil_id,
                template=template,
                key=template,
                data={"language": "pl"},
            )
        polish, english = sorted(rows(engine, Letter), key=lambda letter: letter.template)
        assert (polish.language, english.language) == ("pl", "en")
        subjects = {m["Subject"]: m for m in smtp.messages}
        assert set(subjects) == {"Frekwencja: Maisie", "Maisie's attendance: Stage 1 letter"}
        body = flat(subjects["Frekwencja: Maisie"].get_body(("plain",)).get_content())
        assert "Frekwencja 94.3%" in body  # 100 of 106 sessions for this pupil
        version = rows(engine, LetterTemplateVersion, LetterTemplateVersion.language == "pl")[0]
        assert "Frekwencja" in json.loads(version.sources)["all_saints/stage_1a.html"]
        again = render_from_sources(
            json.loads(version.sources), polish.template, json.loads(polish.data)
        )
        assert again == polish.html
    finally:
        render_module.environment.cache_clear()
        render_module.template_version.cache_clear()


# --------------------------------------------------------------------------- email


async def test_the_email_that_arrives(engine, smtp, service):
    school_id, pupil_id = add_family(engine)
    result = await send(service, school_id, pupil_id, case_id="case-1")
    assert (result.channel, result.status) == ("both", "sent_and_queued")

    assert len(smtp.messages) == 1
    message = smtp.messages[0]
    assert smtp.envelopes[0].rcpt_tos == ["jane.1@example.org"]
    assert message["To"] == "Mrs Jane Whitlock and Mr Tom Whitlock <jane.1@example.org>"
    assert message["Subject"] == "Maisie's attendance: Stage 1 letter"
    assert message["Reply-To"] == load_policy("all-saints").school.email
    assert message["From"].addresses[0].addr_spec == "attendance@attend.example"
    assert message["From"].addresses[0].display_name == load_policy("all-saints").school.name
    body = flat(message.get_body(preferencelist=("plain",)).get_content())
    assert "Dear Mrs Whitlock and Mr Whitlock," in body
    assert "Maisie's attendance has fallen below 95%" in body

    with Session(engine) as session:
        figures = next(
            f
            for f in compute_figures(
                session=session,
                school_id=school_id,
                as_of=date.fromisoformat(AS_OF),
                rules=load_policy("all-saints").figure_rules(),
            )
            if f.pupil_id == pupil_id
        )
    rate = f"{figures.rate_year:.1f}%"
    assert rate in body
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    text = flat(pdf_text(attachment.get_content()))
    for expected in (
        "Maisie",
        "Whitlock",
        rate,
        "Thursday 3 September 2026",
        "Tuesday 24 November 2026",
        "Wednesday 25 November 2026",
    ):
        assert expected in text

    [copy] = rows(engine, Outbox, Outbox.channel == "email")
    assert message["Message-ID"] == copy.message_id
    assert copy.status == "sent" and copy.attempts == 1 and copy.sent_at is not None

    # The case's chronology: what was sent, how, to whom and when.
    entries = {e.summary: e for e in rows(engine, ChronologyEntry)}
    title = "Letter \u201cMaisie's attendance: Stage 1 letter\u201d (all_saints/stage_1b)"
    emailed = entries[f"{title} emailed to Mrs Jane Whitlock and Mr Tom Whitlock at {copy.email}"]
    posted = entries[f"{title} queued for post to Mrs Jane Whitlock and Mr Tom Whitlock"]
    assert len(entries) == 2
    assert emailed.case_id == posted.case_id == "case-1"
    assert emailed.on_day == TODAY and emailed.kind == "letter"
    assert emailed.at.replace(tzinfo=None) == copy.sent_at.replace(tzinfo=None)
    detail = json.loads(emailed.detail)
    assert detail["message_id"] == copy.message_id and detail["channel"] == "email"


def test_names_and_subjects_beyond_ascii_arrive_as_written():
    """The message is written by hand for speed; a reader must still decode every header
    as it was given: accented names, punctuation that needs quoting, a long subject."""
    from letters.mail import build_message

    for to_name, subject in (
        ("Mrs Zoë Brontë-Kowalczyk and Mr Łukasz Kowalczyk of Flat 2", "Zoë's attendance"),
        ("Smith, Jane (Mrs)", "Maisie's attendance: " + " ".join(["a long subject line"] * 5)),
    ):
        outgoing = build_message(
            sender="attendance@attend.example",
            sender_name="St Mary’s C of E Primary",
            reply_to="office@school.example",
            to_name=to_name,
            to_address="parent@example.org",
            subject=subject,
            text="Dear Mrs Brontë,\n£160\n",
            html="<p>Dear Mrs Brontë, £160</p>",
            pdf=b"%PDF-1.7 letter",
            pdf_name="letter-145873-0a1b2c3d.pdf",
            message_id="<letter-1@attend.example>",
            sent_at=datetime(2026, 11, 25, 9, 30, tzinfo=UTC),
        )
        assert max(len(line) for line in outgoing.data.split(b"\n")) <= 78
        message = email.message_from_bytes(outgoing.data, policy=email.policy.default)
        assert message["To"].addresses[0].display_name == to_name
        assert message["To"].addresses[0].addr_spec == "parent@example.org"
        assert message["From"].addresses[0].display_name == "St Mary’s C of E Primary"
        assert message["Subject"] == subject
        assert message.get_body(("plain",)).get_content() == "Dear Mrs Brontë,\n£160\n"
        assert message.get_body(("html",)).get_content() == "<p>Dear Mrs Brontë, £160</p>"
        [pdf] = list(message.iter_attachments())
        assert pdf.get_filename() == "letter-145873-0a1b2c3d.pdf"
        assert pdf.get_content() == b"%PDF-1.7 letter"
        assert not any(part.defects for part in message.walk())


async def test_the_same_key_sends_nothing_twice(engine, smtp, service):
    school_id, pupil_id = add_family(engine)
    first = await send(service, school_id, pupil_id)
    again = await send(service, school_id, pupil_id)
    assert again == first
    assert len(smtp.messages) == 1
    assert len(rows(engine, Letter)) == 1
    assert len(rows(engine, Outbox)) == 2
    assert len(rows(engine, ChronologyEntry)) == 2


async def test_a_send_that_fails_mid_message_is_delivered_once(engine, smtp, service):
    school_id, pupil_id = add_family(engine)
    smtp.drop_next = 1  # the connection drops while the message is being sent
    result = await send(service, school_id, pupil_id)
    assert result.status == "sent_and_queued"
    assert len(smtp.messages) == 1
    [copy] = rows(engine, Outbox, Outbox.channel == "email")
    assert copy.status == "sent" and copy.attempts == 2
    assert copy.last_error == "SMTPServerDisconnected"
    assert service.sleep.seconds == [0.01]


async def test_a_temporary_refusal_is_retried_with_backoff(engine, smtp, tmp_path):
    service = make_service(engine, settings_for(tmp_path, smtp.port, smtp_attempts=4))
    school_id, pupil_id = add_family(engine)
    smtp.defer_next = 2
    try:
        result = await send(service, school_id, pupil_id)
    finally:
        await service.close()
    assert result.status == "sent_and_queued"
    assert len(smtp.messages) == 1
    assert service.sleep.seconds == [0.01, 0.02]  # doubled after each failure
    [copy] = rows(engine, Outbox, Outbox.channel == "email")
    assert copy.attempts == 3 and copy.last_error == "SMTPDataError 451"


async def test_a_retried_activity_after_a_crash_mid_send_delivers_once(engine, smtp, service):
    """The worker died after taking the copy (status sending): while its lease lasts a
    retry waits; after it, the retry sends, with the same Message-ID."""
    school_id, pupil_id = add_family(engine)
    letter_id = await asyncio.to_thread(
        service.write,
        school_id=school_id,
        pupil_id=pupil_id,
        template="all_saints/stage_1b",
        key="case-1/stage_1/letter",
        as_of=AS_OF,
    )
    [copy] = rows(engine, Outbox, Outbox.channel == "email")
    with Session(engine) as session:
        row = session.get(Outbox, copy.id)
        row.status, row.attempts = "sending", 1
        row.lease_until = datetime.now(UTC) + timedelta(minutes=5)
        session.add(row)
        session.commit()

    activities = LetterActivities(service)
    request = LetterRequest(
        school_id, pupil_id, "all_saints/stage_1b", "case-1/stage_1/letter", as_of=AS_OF
    )
    with pytest.raises(Exception, match="being sent by another attempt") as raised:
        await ActivityEnvironment().run(activities.send_letter, request)
    assert not getattr(raised.value, "non_retryable", True)
    assert smtp.messages == []

    with Session(engine) as session:
        row = session.get(Outbox, copy.id)
        row.lease_until = datetime.now(UTC) - timedelta(seconds=1)
        session.add(row)
        session.commit()
    result = await ActivityEnvironment().run(activities.send_letter, request)
    assert result == LetterResult(letter_id, "both", "sent_and_queued")
    assert len(smtp.messages) == 1
    assert smtp.messages[0]["Message-ID"] == copy.message_id


async def test_an_unreachable_server_is_retried_then_the_letter_goes_by_post(engine, tmp_path):
    dead = free_port()  # nothing listens here
    service = make_service(engine, settings_for(tmp_path, dead, smtp_attempts=3))
    school_id, pupil_id = add_family(
        engine,
        parents=(
            dict(
                title="Ms",
                forename="Ana",
                surname="Rees",
                relationship="Mother",
                email="ana@example.org",
                preferred_channel="email",
            ),
        ),
    )
    try:
        result = await send(service, school_id, pupil_id, case_id="case-9")
    finally:
        await service.close()
    assert (result.channel, result.status) == ("post", "failed_to_post")
    assert service.sleep.seconds == [0.01, 0.02]
    email_copy, post_copy = rows(engine, Outbox)
    assert email_copy.status == "failed" and email_copy.attempts == 3
    assert email_copy.last_error == "SMTPConnectError"
    assert "ana@example.org" not in email_copy.last_error
    assert post_copy.status == "queued_for_post" and post_copy.fallback_for == email_copy.id
    assert post_copy.copy_sha256 == email_copy.copy_sha256
    summaries = [e.summary for e in rows(engine, ChronologyEntry)]
    assert any(
        "email to Ms Ana Rees at ana@example.org failed after 3 attempts (SMTPConnectError)" in s
        for s in summaries
    )
    assert any("queued for post to Ms Ana Rees instead of email" in s for s in summaries)
    assert {e.case_id for e in rows(engine, ChronologyEntry)} == {"case-9"}


async def test_each_parent_by_their_preferred_channel(engine, smtp, service):
    school_id, pupil_id = add_family(
        engine,
        parents=(
            dict(
                title="Mrs",
                forename="Jo",
                surname="Hart",
                relationship="Mother",
                email="jo@example.org",
                preferred_channel="both",
            ),
            dict(
                title="Mr",
                forename="Lee",
                surname="Hart",
                relationship="Father",
                email="lee@example.org",
                preferred_channel="email",
                address="9 Bank St\nCheddleton",
                postcode="ST13 7EE",
            ),
            dict(
                title="",
                forename="Sam",
                surname="Hart",
                relationship="Carer",
                email="",
                address="",
                postcode="",
                preferred_channel="email",
            ),
        ),
    )
    result = await send(service, school_id, pupil_id)
    assert (result.channel, result.status) == ("both", "partly_undeliverable")
    copies = {(r.channel, r.recipient_name, r.status) for r in rows(engine, Outbox)}
    assert copies == {
        ("email", "Mrs Jo Hart", "sent"),
        ("post", "Mrs Jo Hart", "queued_for_post"),
        ("email", "Mr Lee Hart", "sent"),
        ("post", "Sam Hart", "no_address"),
    }
    assert sorted(m["To"].addresses[0].addr_spec for m in smtp.messages) == [
        "jo@example.org",
        "lee@example.org",
    ]


async def test_parents_at_one_address_share_one_postal_copy(engine, smtp, service):
    school_id, pupil_id = add_family(
        engine,
        parents=(
            dict(
                title="Mrs",
                forename="Jo",
                surname="Hart",
                relationship="Mother",
                preferred_channel="post",
            ),
            dict(
                title="Mr",
                forename="Lee",
                surname="Hart",
                relationship="Father",
                preferred_channel="post",
            ),
        ),
    )
    result = await send(service, school_id, pupil_id)
    assert (result.channel, result.status) == ("post", "queued_for_post")
    [copy] = rows(engine, Outbox)
    assert copy.recipient_name == "Mrs Jo Hart and Mr Lee Hart"
    assert smtp.messages == []


async def test_a_letter_can_be_rendered_again_years_later(engine, smtp, service):
    school_id, pupil_id = add_family(engine)
    await send(
        service,
        school_id,
        pupil_id,
        template="all_saints/stage_2b",
        data={"meeting_at": "2026-12-01T09:15", "target_rate": 95},
    )
    [letter] = rows(engine, Letter)
    [version] = rows(engine, LetterTemplateVersion)
    assert letter.template_version == version.version
    assert letter.content_sha256 == sha256(letter.html)
    again = render_from_sources(
        json.loads(version.sources), letter.template, json.loads(letter.data)
    )
    assert again == letter.html
    assert "Tuesday 1 December 2026 at 9:15am" in html_to_text(letter.html)
    runner = CliRunner()
    result = runner.invoke(letters_cli.app, ["show", str(letter.id)], env=_cli_env(engine))
    assert result.exit_code == 0, result.output
    assert "identical" in result.output


async def test_a_letter_that_cannot_be_written_is_not_retried(
    engine, smtp, service, tmp_path, monkeypatch
):
    """Unknown template, missing data, data of the wrong form, a template asking for a
    value it is not given: each a non-retryable error naming internal IDs only."""
    school_id, pupil_id = add_family(engine, policy="st-barnabas", urn="118000")
    activities = LetterActivities(service)

    async def refused(template: str, key: str, data: dict | None = None) -> str:
        request = LetterRequest(school_id, pupil_id, template, key, data=data or {}, as_of=AS_OF)
        with pytest.raises(Exception) as raised:
            await ActivityEnvironment().run(activities.send_letter, request)
        assert raised.value.non_retryable and raised.value.type == "LetterError"
        assert "Whitlock" not in str(raised.value) and "Maisie" not in str(raised.value)
        return str(raised.value)

    assert "no letter template" in await refused("no_such/letter", "k/1")

    spec = SPECS["st_barnabas/no_contact"]
    needy = LetterSpec(spec.name, needs={"first_day_absent": "2026-11-20"})
    monkeypatch.setitem(SPECS, spec.name, needy)
    assert "needs data: first_day_absent" in await refused(spec.name, "k/2")
    monkeypatch.setitem(SPECS, spec.name, spec)

    bad_date = await refused("st_barnabas/sac_meeting", "k/3", {"meeting_at": "next Tuesday"})
    assert "cannot be written: ValueError" in bad_date and "next Tuesday" not in bad_date

    # A translated letter that uses a value nobody gives it: UndefinedError, not a retry.
    root = tmp_path / "templates"
    shutil.copytree(render_module.TEMPLATES, root)
    (root / "pl" / "st_barnabas").mkdir(parents=True)
    (root / "pl" / "st_barnabas" / "below_97.html").write_text(
        '{% extends "base.html" %}{% block body %}{{ data.nobody_gives_this }}{% endblock %}'
    )
    monkeypatch.setattr(render_module, "TEMPLATES", root)
    render_module.environment.cache_clear()
    render_module.template_version.cache_clear()
    try:
        undefined = await refused("st_barnabas/below_97", "k/4", {"language": "pl"})
    finally:
        render_module.environment.cache_clear()
        render_module.template_version.cache_clear()
    assert "undefined value" in undefined and "nobody_gives_this" in undefined
    assert rows(engine, Letter) == [] and smtp.messages == []


async def test_a_text_message_is_stored_and_handed_to_staff(engine, smtp, service):
    """Springbank's warning text: the exact text stored like a letter, one copy per parent
    with a telephone number, a task for the office to send it, and the chronology."""
    school_id, pupil_id = add_family(
        engine,
        policy="springbank",
        urn="148406",
        parents=(
            dict(
                title="Mrs",
                forename="Jane",
                surname="Whitlock",
                relationship="Mother",
                email="jane@example.org",
                phone="07700 900123",
                preferred_channel="email",
            ),
            dict(
                title="Mr",
                forename="Tom",
                surname="Whitlock",
                relationship="Father",
                phone="",
                preferred_channel="post",
            ),
        ),
    )
    data = {"ladder": "Persistent Absentees and ATTEND", "stage": "Warning text"}
    result = await send(
        service,
        school_id,
        pupil_id,
        template="springbank/warning_below_93",
        key="case-7/letter/springbank/warning_below_93",
        data=data,
        case_id="case-7",
    )
    assert (result.channel, result.status) == ("text", "ready_to_text")
    assert smtp.messages == []
    [letter] = rows(engine, Letter)
    policy = load_policy("springbank")
    expected = (
        f"{policy.school.name}: Maisie's attendance is 94.3%, below 93%. Our target is 95%. "
        f"Please call {policy.school.phone} if we can help."
    )
    assert letter.html == expected
    assert letter.subject == "Text message about Maisie's attendance"
    copies = {(r.channel, r.recipient_name, r.status) for r in rows(engine, Outbox)}
    assert copies == {
        ("text", "Mrs Jane Whitlock", "ready_to_text"),
        ("text", "Mr Tom Whitlock", "no_address"),
    }
    [task] = rows(engine, StaffTask)
    assert (task.case_id, task.kind, task.role, task.status) == (
        "case-7",
        "send_text",
        "office",
        "open",
    )
    assert expected in task.summary and "Mrs Jane Whitlock" in task.summary
    summaries = sorted(e.summary for e in rows(engine, ChronologyEntry))
    assert summaries == [
        "Text message not sent to Mr Tom Whitlock: no telephone number on record",
        f"Text message to Mrs Jane Whitlock ready for staff to send: \u201c{expected}\u201d",
    ]
    again = await send(
        service,
        school_id,
        pupil_id,
        template="springbank/warning_below_93",
        key="case-7/letter/springbank/warning_below_93",
        data=data,
        case_id="case-7",
    )
    assert again == result
    assert len(rows(engine, StaffTask)) == 1 and len(rows(engine, ChronologyEntry)) == 2
    runner = CliRunner()
    shown = runner.invoke(letters_cli.app, ["show", str(letter.id)], env=_cli_env(engine))
    assert shown.exit_code == 0, shown.output
    assert "identical" in shown.output


async def test_without_dates_a_letter_about_absence_takes_them_from_the_register(
    engine, smtp, service
):
    """The workflow gives no dates: the letter finds the run of absence and the sessions
    still without a reason in the register."""
    school_id, pupil_id = add_family(
        engine,
        policy="sevenoaks",
        urn="118947",
        marks=both("2026-11-17", "N") | {("2026-11-18", "AM"): "N"},
    )
    with Session(engine) as session:
        # As of Thursday 12 November: absent (O, O, I) since Tuesday 10 November.
        no_contact = service.draft(
            session,
            school_id=school_id,
            pupil_id=pupil_id,
            template="st_barnabas/no_contact",
            key="x/1",
            data={"ladder": "l", "stage": "s"},
            as_of="2026-11-12",
        )
        unexplained = service.draft(
            session,
            school_id=school_id,
            pupil_id=pupil_id,
            template="sevenoaks/unexplained_absence",
            key="x/2",
            data={"ladder": "l", "stage": "s"},
            as_of=AS_OF,
        )
    assert no_contact.context["absence"]["run_started_on"] == "2026-11-10"
    assert "absent from school since Tuesday 10 November 2026 and we have not heard from you" in (
        flat(html_to_text(no_contact.html))
    )
    assert unexplained.context["absence"] == {
        "run_started_on": None,  # present on the afternoon of the 18th and since
        "unexplained_on": ["2026-11-17", "2026-11-18"],
    }
    assert (
        "Maisie was absent on Tuesday 17 November 2026 and Wednesday 18 November 2026, and we "
        "have not received a reason" in flat(html_to_text(unexplained.html))
    )


# A self-signed certificate for 127.0.0.1 and localhost (valid 2000 to 2099), for the SMTP
# server the TLS tests start. Test material only: it protects nothing.
TEST_CERT = """\
-----BEGIN CERTIFICATE-----
MIIDEjCCAfqgAwIBAgIBATANBgkqhkiG9w0BAQsFADAUMRIwEAYDVQQDDAlsb2Nh
bGhvc3QwIBcNMDAwMTAxMDAwMDAwWhgPMjA5OTEyMzEwMDAwMDBaMBQxEjAQBgNV
BAMMCWxvY2FsaG9zdDCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBALnE
FEdaYI74jSSMEm/BeGnf0lHK/gG1t7+R20lFjRx5jtllVlvIY/czPRsE7R99Czs9
eYeyGy5/1F6mKNeaFKy7St7LjLxK9SZkOM3qUnPMRYRWVIbdNZ0hW8j3hifhREL3
TpMNGwI6TIOKXgVmfW5xMvGmdTAXdowkCVEVeYOvzzD7DBXRX3sl8KcilysK2TOM
VUujoeJqGC1SPLBaLQe1Clj/si/ga1yXTwKFP7o908tkBOzIt5duscMpPR2Si0jq
PsEC2+dfS/Un/srEO+uRoaTtJDMxvAZPKdYo6FlT/JFU6MUUyJd2N9h5nbtdLjYu
sAgbnaxPTdwrQi+5fPcCAwEAAaNtMGswGgYDVR0RBBMwEYcEfwAAAYIJbG9jYWxo
b3N0MAwGA1UdEwQFMAMBAf8wCwYDVR0PBAQDAgKkMBMGA1UdJQQMMAoGCCsGAQUF
BwMBMB0GA1UdDgQWBBRb1z4bnuYC5a8j79MPTsCtzbIO+TANBgkqhkiG9w0BAQsF
AAOCAQEAhJmBAiNHTX1RORsPiI2Xt//V5J9qCYsXlTBzNP58WXEbvFWwKxvb64JW
Fti5KMdl1D/5Wh3utaIFBVJ5HZ3CBcTxDYllXx98+ggT2muKwN5bDtxxfvg4KAu8
I3br1LmDArcwJhsUNkBb4ehnQcqgvWcv3ITO3wrHgMG5laB9eKu22uegljhWFlQZ
QPh0gBfG/jhnKcO7O+SEssMWQhNY5hgf5FODBxs/VrjQMhivwTYIn/Dfv2clR/zq
t2/4ae9eAv7/y7XD70hDhGOvD8bW5te0AbKxpdupXZNtLdvWwukQqUh3v1KL8GUJ
VFlGacoP0gpJl8OCi7HcOssEq3iy3g==
-----END CERTIFICATE-----
"""
TEST_KEY = """\
-----BEGIN PRIVATE KEY-----
MIIEvAIBADANBgkqhkiG9w0BAQEFAASCBKYwggSiAgEAAoIBAQC5xBRHWmCO+I0k
jBJvwXhp39JRyv4Btbe/kdtJRY0ceY7ZZVZbyGP3Mz0bBO0ffQs7PXmHshsuf9Re
pijXmhSsu0rey4y8SvUmZDjN6lJzzEWEVlSG3TWdIVvI94Yn4URC906TDRsCOkyD
il4FZn1ucTLxpnUwF3aMJAlRFXmDr88w+wwV0V97JfCnIpcrCtkzjFVLo6Hiahgt
UjywWi0HtQpY/7Iv4Gtcl08ChT+6PdPLZATsyLeXbrHDKT0dkotI6j7BAtvnX0v1
J/7KxDvrkaGk7SQzMbwGTynWKOhZU/yRVOjFFMiXdjfYeZ27XS42LrAIG52sT03c
K0IvuXz3AgMBAAECggEADK3GWIxhlMCAGaN5yqjgyBEfsLdzGLjHXsrctaaKmAvv
5QSWnVMTB5c2r3ZpnMGTF6r9dXaBhm3xF7ithvGcQaHS3Vv1MhDHpKQogF1i3UZu
5DZkNIQ6mYviUNgcDvLADvYEJeM6Ga/S8xNpkWLKYtRVDss2ql6fl7cJ77/QeF1U
ii0vITs8i5grh/WsYetiMHp7YDQWIzL/nHcWRPHFNG/7z+foV0cxF2+8lPrR4QdG
gWGEcZO2cUy55nC4cNTkUIGt9PfFeFgN4ZwNShP+Vua0KqzElxKsI70cN371IbvN
Q7HAXVQRUQ9DOKfegShRDW0O2XcVP6XEKD8NkejEuQKBgQDzrvrwNk6/SUh4dRXU
OT3/V9RYlVghjsQUK7pYF3gJhfhUTSSn03QR5/4YNu5jct/xoKuJYUpvpuUu6RPd
bC/0NJKFzXhCrSUbbSYs3xGB+jV133X7lB7Dx6vKwDEfItuUqjhin1bnufCWXOUJ
QOYDZ39BCmA/stRAAz9BC9TcwwKBgQDDJ7Qk5FqiF9c5WNd1awgUh33Y9b0zynR2
na7buXI9tRBQLd4d7IDukRwpE2SPte4//YF+DsZzJjYcvW6Mar3PX4vVpRdsEIg9
1BKYR8TJsA43e3fF56EuBP2vv6bS2HEF5Ij5zy6IJeM/KY+0wYBBUHtWH1TEF6Qo
datJBq9rvQKBgA/3WQ3AISy7Wno6AbIkBgHi+VDMiDe6qPJBYzY+Y2kMVBcB7vLo
EeTSdH2Vq8zsS+wDAPpBW6UxJDcMonaRjhrMDwWhTs3fllzTq/qoqvb/M92DRLG1
JMbjIEhqi01k9UoqVQNxOTp5nl/buk3+6JM0hsv2KBREXU/MZqqWYd4NAoGAatiN
B3nCqWZWHn6mkBHGfb7kxulb6kQY2WxhdMkmY+SDBvLl3gpDWNo3ycFlWE0qIPzB
bevW+OpdzARmxxgVzbipDZJyrWarwPYgLCF2+1mZnwTJQaAcnd57qkJKqrt3vdsu
p16oQkBEF6vAkx0yBBB1RmSm+ylaZhBuc+/mER0CgYAJJKxzAetx28QlgfulHq6k
JybHWOPuSQGUTd7ubY2DdJLmodhZaosiVAkMYz0Iba7qXIhenTpkpk+Y1ivAG2xg
rsMh++rNQhkArP4lBz6F1MUCKSg3T+14pyjxt1nfmpY/UtXB2KfilLKoW/qu8pA3
XWi0G+vpu4DeftcbaOjVvw==
-----END PRIVATE KEY-----
"""


@pytest.fixture
def tls_files(tmp_path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(TEST_CERT)
    key.write_text(TEST_KEY)
    return cert, key


def _server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _check_login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = auth_data.login == b"school" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


async def test_starttls_and_login_from_the_settings(engine, tls_files, tmp_path):
    cert, key = tls_files
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=_server_tls(cert, key),
        require_starttls=True,
        authenticator=_check_login,
        auth_require_tls=True,
    )
    controller.start()
    settings = settings_for(
        tmp_path,
        controller.port,
        smtp_starttls=True,
        smtp_username="school",
        smtp_password="s3cret",
        smtp_ca_file=cert,
    )
    service = make_service(engine, settings)
    school_id, pupil_id = add_family(engine)
    try:
        first = await send(service, school_id, pupil_id, key="a")
        second = await send(service, school_id, pupil_id, key="b")
    finally:
        await service.close()
        controller.stop()
    assert first.status == second.status == "sent_and_queued"
    assert len(mailbox.messages) == 2
    assert mailbox.sessions == 1  # the second letter reused the connection


async def test_a_wrong_password_is_not_delivered_and_the_letter_goes_by_post(
    engine, tls_files, tmp_path
):
    cert, key = tls_files
    mailbox = Mailbox()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=_server_tls(cert, key),
        require_starttls=True,
        authenticator=_check_login,
        auth_require_tls=True,
    )
    controller.start()
    settings = settings_for(
        tmp_path,
        controller.port,
        smtp_starttls=True,
        smtp_username="school",
        smtp_password="wrong",
        smtp_ca_file=cert,
        smtp_attempts=2,
    )
    service = make_service(engine, settings)
    school_id, pupil_id = add_family(engine)
    try:
        result = await send(service, school_id, pupil_id)
    finally:
        await service.close()
        controller.stop()
    assert result.status == "failed_to_post"
    assert mailbox.messages == []
    [failed] = [r for r in rows(engine, Outbox) if r.status == "failed"]
    assert failed.last_error == "SMTPAuthenticationError 535" and failed.attempts == 2


async def test_implicit_tls_from_the_settings(engine, tls_files, tmp_path):
    cert, key = tls_files
    mailbox = Mailbox()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=free_port(), ssl_context=_server_tls(cert, key)
    )
    controller.start()
    settings = settings_for(tmp_path, controller.port, smtp_tls=True, smtp_ca_file=cert)
    service = make_service(engine, settings)
    school_id, pupil_id = add_family(engine)
    try:
        result = await send(service, school_id, pupil_id)
    finally:
        await service.close()
        controller.stop()
    assert result.status == "sent_and_queued" and len(mailbox.messages) == 1


# --------------------------------------------------------------------------- post


async def test_the_print_pack_is_in_envelope_order_on_whole_sheets(engine, smtp, service):
    late = add_family(
        engine,
        serial=9,
        forename="Zoe",
        surname="Abbott",
        parents=(
            dict(
                title="Mr",
                forename="Al",
                surname="Abbott",
                relationship="Father",
                preferred_channel="post",
            ),
        ),
    )
    early = add_family(
        engine,
        serial=2,
        forename="Amir",
        surname="Young",
        parents=(
            dict(
                title="Mrs",
                forename="Di",
                surname="Young",
                relationship="Mother",
                preferred_channel="post",
            ),
        ),
    )
    for n, (school_id, pupil_id) in enumerate((late, early)):
        await send(service, school_id, pupil_id, key=f"case-{n}/letter")
    pack = await service.print_pack(school_id=late[0], day=date.today())
    assert pack.letters == 2 and pack.pages % 2 == 0
    text = flat(pdf_text(Path(pack.path).read_bytes()))
    assert text.index("ST13 2AB") < text.index("ST13 9AB")  # by postcode, not by name
    assert "Dear Mrs Young," in text and "Dear Mr Abbott," in text
    assert {r.status for r in rows(engine, Outbox)} == {"printed"}
    again = await service.print_pack(school_id=late[0], day=date.today())
    assert again.letters == 2 and again.sha256
    printed = [e for e in rows(engine, ChronologyEntry) if "printed for posting" in e.summary]
    assert len(printed) == 2
    activities = LetterActivities(service)
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    empty = await ActivityEnvironment().run(
        activities.build_print_pack, PrintPackRequest(late[0], tomorrow)
    )
    assert empty.letters == 0 and empty.path is None


async def test_a_calling_card_is_printed_not_emailed(engine, smtp, service):
    school_id, pupil_id = add_family(engine, policy="springbank", urn="148406")
    result = await send(
        service,
        school_id,
        pupil_id,
        template="springbank/calling_card",
        key="episode-1/day-1/card",
        data={"visit_at": "2026-11-25T10:40"},
    )
    assert (result.channel, result.status) == ("post", "queued_for_post")
    assert smtp.messages == []


# --------------------------------------------------------------------------- the LA


async def test_an_la_document_goes_to_the_la_not_the_parents(engine, smtp, tmp_path):
    school_id, pupil_id = add_family(engine, policy="st-barnabas", urn="118000")
    kept = make_service(engine, settings_for(tmp_path, smtp.port))
    emailed = make_service(
        engine, settings_for(tmp_path, smtp.port, letters_la_email="cme@kent.example")
    )
    try:
        first = await send(
            kept,
            school_id,
            pupil_id,
            template="la/cme_referral",
            key="cme/1",
            data={"first_day_absent": "2026-11-10"},
        )
        second = await send(
            emailed,
            school_id,
            pupil_id,
            template="la/cme_referral",
            key="cme/2",
            data={"first_day_absent": "2026-11-10"},
        )
    finally:
        await kept.close()
        await emailed.close()
    assert (first.channel, first.status) == ("la", "ready_for_la")
    assert (second.channel, second.status) == ("la", "sent")
    [message] = smtp.messages
    assert smtp.envelopes[0].rcpt_tos == ["cme@kent.example"]
    assert message["Subject"].startswith("CME referral from St Barnabas")
    text = flat(pdf_text(next(message.iter_attachments()).get_content()))
    assert "Maisie Whitlock" in text and "Tuesday 10 November 2026" in text
    assert "Mrs Jane Whitlock" in text  # the contacts, for the LA's enquiries


async def test_the_evidence_pack_has_figures_register_chronology_and_letters(engine, smtp, service):
    school_id, pupil_id = add_family(engine)
    await send(service, school_id, pupil_id, case_id="case-1")
    with Session(engine) as session:
        session.add(
            ChronologyEntry(
                key="case-1/meeting",
                school_id=school_id,
                pupil_id=pupil_id,
                case_id="case-1",
                on_day=date(2026, 11, 20),
                at=datetime(2026, 11, 20, 15, tzinfo=UTC),
                kind="meeting",
                summary="Meeting with the attendance lead; target 95% agreed",
                actor="D Fenwick",
                role="attendance_officer",
            )
        )
        session.commit()
    result = await send(
        service, school_id, pupil_id, template="la/evidence_pack", key="case-1/stage_5/evidence"
    )
    assert (result.channel, result.status) == ("la", "ready_for_la")
    letter = next(x for x in rows(engine, Letter) if x.template == "la/evidence_pack")
    text = flat(pdf_text(html_to_pdf(letter.html)))
    assert "Maisie Whitlock" in text
    assert "Register extract" in text and "absent in other or unknown circumstances" in text
    assert "Meeting with the attendance lead; target 95% agreed" in text
    assert "Maisie's attendance has fallen below 95%" in text  # the copy of the letter
    assert "emailed to Mrs Jane Whitlock" in text  # the chronology of the letter


async def test_a_legal_referral_is_one_pdf_with_the_evidence_pack(engine, smtp, service):
    """What a court or the LA asks the school to show: the referral, the figures, the
    register extract with its codes, the chronology and copies of the letters."""
    school_id, pupil_id = add_family(engine)
    await send(service, school_id, pupil_id, case_id="case-1")
    data = {"ladder": "Attendance stages (Appendix 1)", "stage": "Stage 5: referral"}
    result = await send(
        service,
        school_id,
        pupil_id,
        template="la/legal_referral",
        key="case-1/letter/la/legal_referral",
        data=data,
        case_id="case-1",
    )
    assert (result.channel, result.status) == ("la", "ready_for_la")
    letter = next(x for x in rows(engine, Letter) if x.template == "la/legal_referral")
    [copy] = rows(engine, Outbox, Outbox.letter_id == letter.id)
    pdf = service.pdf_path(SimpleNamespace(**letter.model_dump()), copy)
    assert not pdf.exists()  # nothing to send: rendered when it is asked for
    text = flat(pdf_text(html_to_pdf(letter.html)))
    assert "Referral for legal action" in text and "Maisie Whitlock" in text
    assert "The case has reached \u201cStage 5: referral\u201d of \u201cAttendance stages" in text
    assert "Attendance evidence pack" in text
    assert "94.3%" in text  # 100 of 106 sessions
    assert "Register extract" in text and "absent in other or unknown circumstances" in text
    # The week of the absence: Monday present, Tuesday and Wednesday O, Thursday ill.
    assert "9 November 2026 / \\ O O O O I I / \\" in text
    assert "Thursday 3 September 2026 to Tuesday 24 November 2026" in text
    assert "emailed to Mrs Jane Whitlock" in text  # the chronology of the first letter
    assert "Copy of letter 1 of 1" in text
    assert "Maisie's attendance has fallen below 95%" in text  # the copy itself


# --------------------------------------------------------------------------- wiring


@workflow.defn
class SendOneLetter:
    """The smallest workflow that asks for a letter, as the case workflows do."""

    @workflow.run
    async def run(self, request: LetterRequest) -> LetterResult:
        return await workflow.execute_activity_method(
            LetterActivities.send_letter,
            request,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )


async def test_send_letter_through_a_temporal_worker(
    engine, smtp, tmp_path, temporal_env, task_queue
):
    school_id, pupil_id = add_family(engine)
    activities = build_letter_activities(settings_for(tmp_path, smtp.port), engine)
    activities.service.today = lambda zone: TODAY
    request = LetterRequest(
        school_id, pupil_id, "all_saints/stage_1b", "wf/stage_1/letter", case_id="wf", as_of=AS_OF
    )
    try:
        async with Worker(
            temporal_env.client,
            task_queue=task_queue,
            workflows=[SendOneLetter],
            activities=activities.all,
            workflow_runner=UnsandboxedWorkflowRunner(),
        ):
            result = await temporal_env.client.execute_workflow(
                SendOneLetter.run, request, id=f"letters-{task_queue}", task_queue=task_queue
            )
            assert result.status == "sent_and_queued"
            bad = LetterRequest(school_id, pupil_id, "nope/nope", "wf/bad")
            with pytest.raises(WorkflowFailureError):
                await temporal_env.client.execute_workflow(
                    SendOneLetter.run,
                    bad,
                    id=f"letters-bad-{task_queue}",
                    task_queue=task_queue,
                )
    finally:
        await activities.service.close()
    assert len(smtp.messages) == 1


async def test_pdfs_render_in_a_separate_process():
    renderer = PdfRenderer(processes=1)
    try:
        context = sample_context(load_policy("springbank"), "springbank/stage_1")
        pdf = await renderer.pdf(render("springbank/stage_1", context))
    finally:
        renderer.close()
    assert "Persistent Absentee" in flat(pdf_text(pdf))


def _cli_env(engine) -> dict[str, str]:
    return {"DATABASE_URL": str(engine.url)}


@pytest.fixture(autouse=True)
def _fresh_settings():
    from settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_preview_renders_without_sending(engine, tmp_path):
    school_id, pupil_id = add_family(engine)
    with Session(engine) as session:
        from models.tables import Pupil

        upn = session.get(Pupil, pupil_id).upn
    out = tmp_path / "preview.pdf"
    runner = CliRunner()
    result = runner.invoke(
        letters_cli.app,
        [
            "preview",
            "all_saints/stage_2a",
            "--pupil",
            upn,
            "--as-of",
            AS_OF,
            "--out",
            str(out),
            "--data",
            '{"meeting_at": "2026-12-01T09:15"}',
        ],
        env=_cli_env(engine),
    )
    assert result.exit_code == 0, result.output
    text = flat(pdf_text(out.read_bytes()))
    assert "Maisie" in text and "Tuesday 1 December 2026 at 9:15am" in text
    assert rows(engine, Letter) == [] and rows(engine, Outbox) == []

    sample = tmp_path / "sample.html"
    result = runner.invoke(
        letters_cli.app,
        ["preview", "la/cme_referral", "--sample", "st-barnabas", "--html", "--out", str(sample)],
    )
    assert result.exit_code == 0, result.output
    assert "Child missing education" in sample.read_text()
    assert all(spec.audience in ("parents", LA) for spec in SPECS.values())


async def test_the_print_pack_command(engine, smtp, service, tmp_path):
    """`attend letters print-pack`: today's postal copies in one PDF under the letters
    folder; a day that is not a date is refused with what to give instead."""
    school_id, pupil_id = add_family(engine)
    await send(service, school_id, pupil_id)  # Mr Whitlock's copy goes by post
    env = _cli_env(engine) | {
        "ATTEND_LETTERS_DIR": str(tmp_path / "letters"),
        "ATTEND_LETTERS_PDF_PROCESSES": "0",
    }
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, letters_cli.app, ["print-pack", "--school", "145873"], env=env
    )
    assert result.exit_code == 0, result.output
    pack = tmp_path / "letters" / "print" / "145873" / f"{date.today().isoformat()}.pdf"
    assert flat(result.output).startswith("1 letter, ")
    text = flat(pdf_text(pack.read_bytes()))
    assert "Mrs Jane Whitlock and Mr Tom Whitlock 4 Mill Lane Leek ST13 1AB" in text
    assert "Maisie" in text
    [copy] = rows(engine, Outbox, Outbox.channel == "post")
    assert copy.status == "printed" and copy.print_day == date.today()

    refused = runner.invoke(
        letters_cli.app, ["print-pack", "--school", "145873", "--day", "25/11/2026"], env=env
    )
    assert refused.exit_code == 1
    assert "--day is a date as YYYY-MM-DD" in refused.output
    refused = runner.invoke(
        letters_cli.app,
        ["preview", "all_saints/stage_1a", "--pupil", "X", "--as-of", "yesterday"],
        env=env,
    )
    assert refused.exit_code == 1 and "--as-of is a date as YYYY-MM-DD" in refused.output


def test_staff_send_a_letter_of_their_own(engine, tmp_path):
    """`attend letters send`: a CME referral is stored and kept for staff to submit to the
    LA (no LA address set), a calling card is queued for the print pack; the same
    command again sends nothing twice; a bad template or pupil is refused."""
    school_id, pupil_id = add_family(engine)
    with Session(engine) as session:
        from models.tables import Pupil

        upn = session.get(Pupil, pupil_id).upn
    env = _cli_env(engine) | {
        "ATTEND_LETTERS_DIR": str(tmp_path / "letters"),
        "ATTEND_LETTERS_PDF_PROCESSES": "0",
        "ATTEND_SMTP_PORT": str(free_port()),  # nothing listens: nothing here is emailed
    }
    runner = CliRunner()
    referral = ["send", "la/cme_referral", "--pupil", upn, "--case", "case-7", "--as-of", AS_OF]
    first = runner.invoke(letters_cli.app, referral, env=env)
    assert first.exit_code == 0, first.output
    assert ": la, ready_for_la" in first.output
    again = runner.invoke(letters_cli.app, referral, env=env)
    assert again.output == first.output
    card = runner.invoke(
        letters_cli.app,
        ["send", "springbank/calling_card", "--pupil", upn, "--data", '{"day_of_absence": 2}'],
        env=env,
    )
    assert card.exit_code == 0, card.output
    assert ": post, queued_for_post" in card.output

    cme, calling_card = sorted(rows(engine, Letter), key=lambda letter: letter.template)
    assert (cme.template, calling_card.template) == ("la/cme_referral", "springbank/calling_card")
    assert cme.case_id == "case-7" and calling_card.case_id is None
    assert "Maisie" in html_to_text(cme.html) and "Child missing education" in cme.html
    assert sorted((r.channel, r.status) for r in rows(engine, Outbox)) == [
        ("la", "ready_for_la"),
        ("post", "queued_for_post"),
    ]
    [entry] = rows(engine, ChronologyEntry, ChronologyEntry.case_id == "case-7")
    assert "la/cme_referral" in entry.summary

    for args, error in (
        (["send", "la/no_such_letter", "--pupil", upn], "no template 'la/no_such_letter'"),
        (["send", "la/cme_referral", "--pupil", "A000000000000"], "no pupil with UPN"),
    ):
        refused = runner.invoke(letters_cli.app, args, env=env)
        assert refused.exit_code == 1 and error in refused.output
    assert len(rows(engine, Letter)) == 2
