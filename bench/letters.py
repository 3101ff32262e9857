"""The letters issue's speed goals, each measured beside the bare library in the same run.

(a) Letters rendered to PDF per second, in one process: ours is the whole path of a
    letter (the pupil's figures, parents and school from the database and the policy,
    the Jinja template, the recipient's copy, WeasyPrint); bare is WeasyPrint alone on a
    fixed page (one of our letters, rendered once beforehand). Goal: within 1.5x.
(b) Emails delivered per second to a local SMTP server (aiosmtpd, in a process of its
    own), one connection, one at a time: ours is `LetterService.deliver` (the outbox row
    taken and released in SQL, the message built with its text, HTML and PDF, sent over
    the reused connection, the chronology written), with the PDFs already rendered; bare
    is aiosmtplib sending one fixed message of the same size. Goal: within 1.5x.
(c) A day's letters for a whole LA: 5,000 letters to different pupils across the LA's
    schools, each written, rendered, stored and delivered by each parent's preferred
    channel through `LetterService.send` with 32 in flight (as a worker runs activities),
    PDFs in a pool of one process per core, email over 4 reused connections; then every
    school's print pack. Goal: under 5 minutes.

    .venv/bin/python -m bench.letters [--letters 5000] [--rebuild]

The LA (demo schools, pupils, parents and an autumn of register) is built once under
bench/data/letters/ and each run works on a fresh copy. Only a run of at least 5,000
letters writes its figures to bench/RESULTS.md (its own section; the others stay).
"""

import argparse
import asyncio
import email
import email.policy
import io
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import statistics
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

from sqlmodel import Session, select

from database import make_engine
from demo.generate import create_demo
from demo.schools import synthetic_schools
from letters.catalogue import SPECS
from letters.mail import Mailer, build_message
from letters.pdf import PdfRenderer, html_to_pdf
from letters.render import html_to_text
from letters.service import LetterService
from models.letters import Outbox
from models.tables import Pupil, School
from settings import Settings

DATA = Path(__file__).parent / "data" / "letters"
RESULTS = Path(__file__).parent / "RESULTS.md"
SECTION = "## Letters: PDF rendering and email delivery (`bench/letters.py`)"
THROUGH = date(2026, 11, 24)  # the register runs to here; letters are as of this day
WRITTEN_ON = date(2026, 11, 25)
LA_PUPILS = 6_000
SEED = 886
RATIO_GOAL = 1.5
DAY_GOAL_SECONDS = 300
IN_FLIGHT = 32
POLICIES = ["st-barnabas", "all-saints", "springbank", "sevenoaks"]
# What a school on each policy sends on an ordinary day (routine letters most often).
DAY_MIX = {
    "st-barnabas": ["st_barnabas/below_97"] * 6
    + ["st_barnabas/sac_meeting", "st_barnabas/support_plan", "st_barnabas/improvement"],
    "all-saints": ["all_saints/stage_1a", "all_saints/stage_1b", "all_saints/below_96"] * 2
    + ["all_saints/monitored", "all_saints/stage_2b", "all_saints/positive"],
    "springbank": ["springbank/stage_1"] * 4 + ["springbank/stage_2"],
    "sevenoaks": ["sevenoaks/pastoral_meeting", "sevenoaks/lateness"],
}
LA_EVERY = 50  # one letter in 50 is a return to the LA


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.letters", description=__doc__)
    parser.add_argument("--letters", type=int, default=5_000)
    parser.add_argument("--rebuild", action="store_true", help="build the LA's data again")
    parser.add_argument(
        "--parts", default="abc", help="which of (a), (b), (c) to run; only all three record"
    )
    args = parser.parse_args()
    # Stopped with SIGTERM: unwind, so the SMTP server and PDF processes stop with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    host = machine()
    host["load_start"] = os.getloadavg()
    print(
        f"machine: {host['nproc']} cores ({host['cpu']}), {host['ram_gib']:.1f} GiB RAM, "
        f"Python {host['python']}; load average at the start: {_load(host['load_start'])}",
        flush=True,
    )
    history = build(rebuild=args.rebuild)
    port = free_port()
    counter = multiprocessing.get_context("spawn").Value("i", 0)
    server = multiprocessing.get_context("spawn").Process(
        target=serve_smtp, args=(port, counter), daemon=True
    )
    server.start()
    wait_for_port(port)
    pdf = mail = day = None
    try:
        if "a" in args.parts:
            pdf = bench_pdf(history)
            print_pdf(pdf)
        if "b" in args.parts:
            mail = asyncio.run(bench_email(history, port, counter))
            print_email(mail)
        if "c" in args.parts:
            day = asyncio.run(bench_day(history, port, counter, args.letters, server.pid))
            print_day(day)
    finally:
        server.terminate()
        server.join(5)
    print(f"load average at the end: {_load(os.getloadavg())}")
    if pdf is None or mail is None or day is None:
        print(f"not recorded in {RESULTS}: only a run of all three parts is")
        return
    section = report(host, pdf, mail, day)
    if args.letters >= 5_000:
        record(section)
        print(f"recorded in {RESULTS}")
    else:
        print(f"not recorded in {RESULTS}: only a run of 5,000 letters or more is")


# --------------------------------------------------------------------------- the LA


def build(rebuild: bool) -> Path:
    """The LA's schools, pupils, parents and register, built once."""
    history = DATA / "history.db"
    if history.exists() and not rebuild:
        return history
    DATA.mkdir(parents=True, exist_ok=True)
    history.unlink(missing_ok=True)
    started = time.perf_counter()
    engine = make_engine(f"sqlite:///{history}")
    schools = synthetic_schools(LA_PUPILS, rng=random.Random(SEED))
    create_demo(engine=engine, schools=schools, through=THROUGH, seed=SEED)
    with Session(engine) as session:
        for n, school in enumerate(session.exec(select(School).order_by(School.id)).all()):
            school.policy = POLICIES[n % len(POLICIES)]
            session.add(school)
        session.commit()
    engine.dispose()
    print(f"built the LA ({len(schools)} schools) in {time.perf_counter() - started:.0f} s")
    return history


def working_copy(history: Path, name: str) -> Path:
    work = history.with_name(f"{name}.db")
    for stale in (work, work.with_name(f"{name}.db-wal"), work.with_name(f"{name}.db-shm")):
        stale.unlink(missing_ok=True)
    shutil.copyfile(history, work)
    letters = history.with_name(f"{name}-letters")
    shutil.rmtree(letters, ignore_errors=True)
    return work


def settings_for(work: Path, port: int, **overrides) -> Settings:
    values = dict(
        database_url=f"sqlite:///{work}",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_from="attendance@la.example",
        letters_dir=work.with_name(f"{work.stem}-letters"),
    )
    values.update(overrides)
    return Settings(**values)


def day_plan(engine, letters: int) -> list[tuple[int, int, str]]:
    """(school, pupil, template) for the day: pupils from every school in turn."""
    with Session(engine) as session:
        schools = session.exec(select(School).order_by(School.id)).all()
        pupils = {
            s.id: session.exec(
                select(Pupil.id).where(Pupil.school_id == s.id).order_by(Pupil.id)
            ).all()
            for s in schools
        }
    plan: list[tuple[int, int, str]] = []
    turn = 0
    while len(plan) < letters:
        added = False
        for school in schools:
            if turn < len(pupils[school.id]) and len(plan) < letters:
                mix = DAY_MIX[school.policy]
                n = len(plan)
                if n % LA_EVERY == LA_EVERY - 1:
                    template = "la/attendance_return"
                else:
                    template = mix[(turn + school.id) % len(mix)]
                plan.append((school.id, pupils[school.id][turn], template))
                added = True
        if not added:
            raise SystemExit(f"the LA has fewer than {letters} pupils")
        turn += 1
    return plan


# --------------------------------------------------------------------------- (a) PDF


def bench_pdf(history: Path, rounds: int = 5, per_round: int = 8) -> dict:
    """Ours and bare in alternating rounds, so that both see the same machine."""
    from weasyprint import HTML

    work = working_copy(history, "pdf")
    engine = make_engine(f"sqlite:///{work}")
    settings = settings_for(work, 25, letters_pdf_processes=0)
    service = LetterService(settings, engine, today=lambda zone: WRITTEN_ON)
    plan = [p for p in day_plan(engine, 400) if not p[2].startswith("la/")]
    # The fixed page for WeasyPrint alone: one of our letters, as a recipient gets it.
    with Session(engine) as session:
        school_id, pupil_id, fixed_template = plan[0]
        draft = service.draft(
            session,
            school_id=school_id,
            pupil_id=pupil_id,
            template=fixed_template,
            key="fixed",
            data=SPECS[fixed_template].sample_data,
            as_of=THROUGH.isoformat(),
        )
    fixed = draft.copy_html(draft.copies[0])
    HTML(string=fixed).write_pdf()
    html_to_pdf(fixed)
    ours_times, bare_times = [], []
    pages = 0
    with Session(engine) as session:
        for r in range(rounds):
            started = time.perf_counter()
            for _ in range(per_round):
                bare_pdf = HTML(string=fixed).write_pdf()
            bare_times.append((time.perf_counter() - started) / per_round)
            started = time.perf_counter()
            for i in range(per_round):
                school_id, pupil_id, template = plan[1 + r * per_round + i]
                draft = service.draft(
                    session,
                    school_id=school_id,
                    pupil_id=pupil_id,
                    template=template,
                    key=f"pdf/{r}/{i}",
                    data=SPECS[template].sample_data,
                    as_of=THROUGH.isoformat(),
                )
                pdf = html_to_pdf(draft.copy_html(draft.copies[0]))
                pages += count_pages(pdf)
            ours_times.append((time.perf_counter() - started) / per_round)
    engine.dispose()
    return {
        "ours": statistics.median(ours_times),
        "bare": statistics.median(bare_times),
        "letters": rounds * per_round,
        "pages": pages / (rounds * per_round),
        "fixed_pages": count_pages(bare_pdf),
        "fixed_template": fixed_template,
    }


def count_pages(pdf: bytes) -> int:
    import pypdf

    return len(pypdf.PdfReader(io.BytesIO(pdf)).pages)


def print_pdf(r: dict) -> None:
    print(
        f"(a) PDF, 1 process: ours {1 / r['ours']:.1f} letters/s ({r['ours'] * 1000:.0f} ms), "
        f"bare WeasyPrint {1 / r['bare']:.1f}/s ({r['bare'] * 1000:.0f} ms): "
        f"{r['ours'] / r['bare']:.2f}x"
    )


# --------------------------------------------------------------------------- (b) email


def serve_smtp(port: int, counter) -> None:
    """A local SMTP server in its own process, counting the messages it accepts."""
    from aiosmtpd.controller import Controller

    class Count:
        async def handle_DATA(self, server, session, envelope) -> str:
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    controller = Controller(Count(), hostname="127.0.0.1", port=port)
    controller.start()
    while True:
        time.sleep(3600)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int) -> None:
    import socket

    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the SMTP server did not start")


async def bench_email(history: Path, port: int, counter, count: int = 300) -> dict:
    import aiosmtplib

    work = working_copy(history, "email")
    engine = make_engine(f"sqlite:///{work}")
    settings = settings_for(work, port, smtp_connections=1, letters_pdf_processes=0)
    service = LetterService(settings, engine, today=lambda zone: WRITTEN_ON)
    plan = [p for p in day_plan(engine, count * 2) if not p[2].startswith("la/")]
    # Letters written and their PDFs rendered first: (b) times the delivery only.
    letter_ids = []
    for n, (school_id, pupil_id, template) in enumerate(plan):
        letter_id = service.write(
            school_id=school_id,
            pupil_id=pupil_id,
            template=template,
            key=f"email/{n}",
            data=SPECS[template].sample_data,
            as_of=THROUGH.isoformat(),
        )
        letter_ids.append(letter_id)
    with Session(engine) as session:
        with_email = {
            r.letter_id for r in session.exec(select(Outbox).where(Outbox.channel == "email")).all()
        }
    letter_ids = [i for i in letter_ids if i in with_email][:count]
    letter, rows = service._load(letter_ids[0])
    sample_pdf = None
    for letter_id in letter_ids:
        letter, rows = service._load(letter_id)
        for row in rows:
            path = service.pdf_path(letter, row)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(html_to_pdf(service._copy(letter, row)))
            sample_pdf = sample_pdf or path.read_bytes()
    emails = 0
    with Session(engine) as session:
        emails = len(
            session.exec(
                select(Outbox).where(Outbox.letter_id.in_(letter_ids), Outbox.channel == "email")
            ).all()
        )
    # The fixed message: the same parts and sizes as one of ours.
    html = service._copy(letter, rows[0])
    fixed = build_message(
        sender="attendance@la.example",
        sender_name="A School",
        reply_to="office@school.example",
        to_name="A Parent",
        to_address="parent@example.org",
        subject="Attendance",
        text=html_to_text(html),
        html=html,
        pdf=sample_pdf,
        pdf_name="letter.pdf",
        message_id="<fixed@la.example>",
        sent_at=letter.created_at,
    )
    # Bare: aiosmtplib's send_message of a fixed EmailMessage (flattened on each send,
    # as the library does), and sendmail of its bytes as the wire's floor.
    fixed_message = email.message_from_bytes(fixed.data, policy=email.policy.default)
    bare_client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
    await bare_client.connect()
    await bare_client.send_message(fixed_message)
    mailer = Mailer(settings)
    await mailer.send(fixed)
    ours_times, bare_times, layer_times, wire_times = [], [], [], []
    rounds, chunk = 5, len(letter_ids) // 5
    for r in range(rounds):
        started = time.perf_counter()
        for _ in range(chunk):
            await bare_client.send_message(fixed_message)
        bare_times.append((time.perf_counter() - started) / chunk)
        started = time.perf_counter()
        for _ in range(chunk):
            await bare_client.sendmail(fixed.sender, [fixed.recipient], fixed.data)
        wire_times.append((time.perf_counter() - started) / chunk)
        started = time.perf_counter()
        for _ in range(chunk):
            await mailer.send(fixed)
        layer_times.append((time.perf_counter() - started) / chunk)
        before = counter.value
        started = time.perf_counter()
        for letter_id in letter_ids[r * chunk : (r + 1) * chunk]:
            await service.deliver(letter_id)
        elapsed = time.perf_counter() - started
        sent = counter.value - before
        ours_times.append(elapsed / sent)
    await bare_client.quit()
    await mailer.close()
    await service.close()
    engine.dispose()
    return {
        "ours": statistics.median(ours_times),
        "mail_layer": statistics.median(layer_times),
        "bare": statistics.median(bare_times),
        "wire": statistics.median(wire_times),
        "emails": emails,
        "message_bytes": len(fixed.data),
    }


def print_email(r: dict) -> None:
    print(
        f"(b) email, 1 connection: ours {1 / r['ours']:.0f}/s, our mail layer alone "
        f"{1 / r['mail_layer']:.0f}/s, bare aiosmtplib {1 / r['bare']:.0f}/s "
        f"(sendmail of ready bytes {1 / r['wire']:.0f}/s): "
        f"{r['ours'] / r['bare']:.2f}x ({r['message_bytes'] / 1024:.0f} KiB messages)"
    )


# --------------------------------------------------------------------------- (c) a day


async def bench_day(history: Path, port: int, counter, letters: int, server_pid: int) -> dict:
    work = working_copy(history, "day")
    engine = make_engine(f"sqlite:///{work}")
    settings = settings_for(work, port, smtp_connections=4)
    plan = day_plan(engine, letters)
    service = LetterService(settings, engine, pdf=PdfRenderer(None), today=lambda zone: WRITTEN_ON)
    # Start the PDF processes before the clock: a worker has them from its start.
    await asyncio.gather(*(service.pdf.pdf("<p>warm</p>") for _ in range(service.pdf.processes)))
    pdf_pids = [p.pid for p in multiprocessing.active_children() if p.pid != server_pid]
    cpu_before = {pid: cpu_seconds(pid) for pid in [os.getpid(), server_pid, *pdf_pids]}
    before = counter.value
    gate = asyncio.Semaphore(IN_FLIGHT)
    statuses: Counter = Counter()

    async def one(n: int, school_id: int, pupil_id: int, template: str) -> None:
        async with gate:
            result = await service.send(
                school_id=school_id,
                pupil_id=pupil_id,
                template=template,
                key=f"day/{n}",
                data=SPECS[template].sample_data,
                as_of=THROUGH.isoformat(),
            )
            statuses[result.status] += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(n, *p) for n, p in enumerate(plan)))
    sent_seconds = time.perf_counter() - started
    schools = sorted({school_id for school_id, _, _ in plan})
    # Each school's pack on its own, as the schools' print-pack workflows run: the PDF
    # processes bind two at a time.
    packs = await asyncio.gather(
        *(service.print_pack(school_id=s, day=date.today()) for s in schools)
    )
    total = time.perf_counter() - started
    cpu = {pid: cpu_seconds(pid) - was for pid, was in cpu_before.items()}
    emailed = counter.value - before
    await service.close()
    with Session(engine) as session:
        copies = session.exec(select(Outbox)).all()
        channels = Counter((r.channel, r.status) for r in copies)
        pdfs = len({(r.letter_id, r.copy_sha256) for r in copies if r.channel != "text"})
    rendered = list((Path(settings.letters_dir) / "pdf").rglob("*.pdf"))
    sample = rendered[:: max(1, len(rendered) // 200)]
    pages_per_pdf = statistics.mean(count_pages(p.read_bytes()) for p in sample) if sample else 1
    engine.dispose()
    return {
        "letters": letters,
        "schools": len(schools),
        "send_seconds": sent_seconds,
        "seconds": total,
        "emails": emailed,
        "postal": sum(p.letters for p in packs),
        "pages": sum(p.pages for p in packs),
        "statuses": dict(statuses),
        "channels": {f"{c}/{s}": n for (c, s), n in sorted(channels.items())},
        "processes": service.pdf.processes,
        "cores": len(os.sched_getaffinity(0)),
        "pdfs": pdfs,
        "pages_per_pdf": pages_per_pdf,
        "cpu_main": cpu[os.getpid()],
        "cpu_smtp": cpu[server_pid],
        "cpu_pdf": sum(cpu[pid] for pid in pdf_pids),
    }


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def print_day(r: dict) -> None:
    print(
        f"(c) {r['letters']:,} letters for {r['schools']} schools: written, rendered and sent "
        f"in {r['send_seconds']:.0f} s, with the print packs {r['seconds']:.0f} s "
        f"({r['letters'] / r['seconds']:.1f} letters/s); {r['emails']:,} emails, "
        f"{r['postal']:,} postal copies ({r['pages']:,} pages); {r['statuses']}"
    )
    print(
        f"    CPU: PDF processes {r['cpu_pdf']:.0f} s ({r['cpu_pdf'] / r['pdfs'] * 1000:.0f} ms "
        f"a PDF), this process {r['cpu_main']:.0f} s, SMTP server {r['cpu_smtp']:.0f} s; "
        f"{r['cores']} cores offered {r['cores'] * r['seconds']:.0f} s"
    )


# --------------------------------------------------------------------------- the report


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    import aiosmtplib
    import weasyprint

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gib": int(memory.group(1)) * 1024 / 2**30 if memory else 0.0,
        "python": platform.python_version(),
        "weasyprint": weasyprint.__version__,
        "aiosmtplib": aiosmtplib.__version__,
    }


def report(host: dict, pdf: dict, mail: dict, day: dict) -> str:
    pdf_ratio = pdf["ours"] / pdf["bare"]
    mail_ratio = mail["ours"] / mail["bare"]
    met = {True: "met", False: "NOT met"}
    start, end = host["load_start"], os.getloadavg()
    floor = (
        day["pdfs"]
        * pdf["bare"]
        / pdf["fixed_pages"]
        * day["pages_per_pdf"]
        / max(1, day["processes"])
    )
    cpu_floor = (day["cpu_pdf"] + day["cpu_main"] + day["cpu_smtp"]) / day["cores"]
    return f"""{SECTION}

`.venv/bin/python -m bench.letters` ({day["letters"]:,} letters), run {date.today().isoformat()}.

Machine: {host["nproc"]} cores ({host["cpu"]}), {host["ram_gib"]:.1f} GiB RAM, Python
{host["python"]}, WeasyPrint {host["weasyprint"]}, aiosmtplib {host["aiosmtplib"]}; SQLite
file on local disk; the SMTP server (aiosmtpd) on loopback in a process of its own. The
machine was shared with other work: load average (1, 5, 15 min) {_load(start)} at the start
of the run and {_load(end)} at its end.

| | ours | bare | ours / bare |
|---|---|---|---|
| (a) letters to PDF, 1 process | {1 / pdf["ours"]:.1f}/s ({pdf["ours"] * 1000:.0f} ms) \
| {1 / pdf["bare"]:.1f}/s ({pdf["bare"] * 1000:.0f} ms) | {pdf_ratio:.2f}x |
| (b) emails delivered, 1 connection | {1 / mail["ours"]:.0f}/s \
| {1 / mail["bare"]:.0f}/s | {mail_ratio:.2f}x |
| (b) our mail layer alone (pooled connection) \
| {1 / mail["mail_layer"]:.0f}/s | {1 / mail["bare"]:.0f}/s \
| {mail["mail_layer"] / mail["bare"]:.2f}x |
| (b) for reference: `sendmail` of ready bytes (the wire) \
| | {1 / mail["wire"]:.0f}/s | |

(c) A day for the LA: {day["letters"]:,} letters to pupils of {day["schools"]} schools (a
mix of each policy's routine letters, one in {LA_EVERY} an attendance return to the LA)
written, rendered, stored and delivered in **{day["send_seconds"]:.0f} s**, and with every
school's print pack **{day["seconds"]:.0f} s** ({day["letters"] / day["seconds"]:.1f}
letters/s): {day["emails"]:,} emails, {day["postal"]:,} postal copies in the packs
({day["pages"]:,} pages). Outcomes: {
        ", ".join(f"{k} {v:,}" for k, v in sorted(day["statuses"].items()))
    }.

- (a) ours: the letter drafted from the database (figures, parents, school block,
  template) and the recipient's copy rendered by WeasyPrint with one font configuration
  and the letter's stylesheet parsed once per process; bare:
  `weasyprint.HTML(string=page).write_pdf()` on a fixed page, one of our letters
  ({pdf["fixed_pages"]} page(s); ours averaged {pdf["pages"]:.1f}). Both with WeasyPrint's
  default options; the page is the layout as it is now (Liberation Sans; the lines of the
  address, the school's block, the date line and signatures broken by newlines in
  `white-space: pre-line` blocks rather than `<br>` elements), so bare gains from the
  leaner page as ours does. Medians of alternating rounds.
- (b) ours: `LetterService.deliver` of written letters whose PDFs are on disk (outbox
  row taken and released in SQL, text, HTML and PDF message with its Message-ID, the
  chronology written); bare: aiosmtplib `send_message` of one fixed message of the same
  size ({mail["message_bytes"] / 1024:.0f} KiB) over one connection. Medians of
  alternating rounds.
- (c) `LetterService.send` with {IN_FLIGHT} in flight, PDFs in {day["processes"]}
  processes, 4 SMTP connections; then `print_pack` for every school, the schools' packs
  side by side (stored PDFs bound with pypdf, envelope order, whole sheets). CPU time
  used from the start of the clock to the last pack: the PDF processes
  {day["cpu_pdf"]:.0f} s ({day["cpu_pdf"] / day["pdfs"] * 1000:.0f} ms a PDF), the
  process writing and sending the letters {day["cpu_main"]:.0f} s, the SMTP server
  {day["cpu_smtp"]:.0f} s: {day["cpu_pdf"] + day["cpu_main"] + day["cpu_smtp"]:.0f} s in
  all, where the {day["cores"]} cores offered {day["cores"] * day["seconds"]:.0f} s (the
  rest went to the other work on the machine, or idle).
- Goal (a), within {RATIO_GOAL:g}x of bare WeasyPrint: **{met[pdf_ratio <= RATIO_GOAL]}**
  ({pdf_ratio:.2f}x).
- Goal (b), within {RATIO_GOAL:g}x of bare aiosmtplib: **{met[mail_ratio <= RATIO_GOAL]}**
  ({mail_ratio:.2f}x).
- Goal (c), a day's letters for the LA in under {DAY_GOAL_SECONDS // 60} minutes:
  **{met[day["seconds"] < DAY_GOAL_SECONDS]}** ({day["seconds"]:.0f} s). At (a)'s bare
  time per page, WeasyPrint alone on {day["processes"]} processes kept busy would need about
  {floor:.0f} s for the {day["pdfs"]:,} PDFs (every distinct copy is rendered once); ours
  takes less CPU a page than bare (one font configuration and parsed stylesheet per
  process). The floor the CPU time measured above sets: {day["cores"]} cores entirely ours
  would need about {cpu_floor:.0f} s for the day, of which the PDFs alone
  {day["cpu_pdf"] / day["cores"]:.0f} s.

Where a letter's PDF time goes (cProfile of 40 of the day's letters through
`letters.pdf.html_to_pdf`): WeasyPrint's layout about half (Pango's line breaking, and the
styles it computes lazily for every box), drawing the text about a fifth, the cascade and
building the boxes about a sixth, subsetting the fonts (HarfBuzz) 3-4%, writing and
compressing the PDF about 4%, parsing the HTML 1%. A page with nothing on it costs about
11 ms, so binding several letters into one WeasyPrint document and splitting it gains
nothing (measured: 7-45% more a letter, for 4 to 24 letters a document); nor did tuning
the garbage collector, or WeasyPrint's write options (no images; the fonts are already
subset by HarfBuzz; an uncompressed PDF saves under 4% and is larger to email). What made
the page cheaper: the lines of the address, the school's block, the date line, signatures
and meeting details broken by newlines in `white-space: pre-line` blocks rather than by
`<br>` elements (each an element, a generated line break and its boxes), and Liberation
Sans, narrower than DejaVu Sans, so that fewer letters run onto a second page (1.15 pages a
letter rather than 1.35 in a sample of 60). The same 60 letters took 0.78x the CPU time
with the new layout (about 100 ms a letter rather than 125, interleaved rounds). The run
before these changes (load 5.0 at its start) took 458 s for (c).
"""


def _load(averages: tuple[float, float, float]) -> str:
    return ", ".join(f"{a:.2f}" for a in averages)


def record(section: str) -> None:
    """Write the section into RESULTS.md, replacing its previous text; other sections stay."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    body = section.rstrip("\n") + "\n\n"
    if pattern.search(old):
        new = pattern.sub(lambda _: body, old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + body
    RESULTS.write_text(new.rstrip("\n") + "\n")


if __name__ == "__main__":
    sys.exit(main())
