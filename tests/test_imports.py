"""Importers on a real SQLite database: MIS CSV marks, the CTF, pupils CSV and the CLI.

Every refusal is checked inside the transaction pattern the CLI uses
(`database.transaction`, rolled back when ImportRefused leaves it), by counting the rows
of every table before and after. Dates are on the calendar in conftest.py: Autumn 1 2025
starts Wed 3 Sep; 6 Nov 2026 is an INSET day; 4 May 2026 is a bank holiday.
"""

import dataclasses
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import Session, SQLModel, select
from typer.testing import CliRunner

import imports.marks
from cli.imports import app as import_app
from database import make_engine, transaction
from imports.csv_marks import (
    MappingError,
    import_marks_csv,
    load_mapping,
    mapping_from_dict,
    parse_marks_csv,
)
from imports.ctf import (
    CtfSchool,
    CtfYearData,
    ctf_pupil_from_rows,
    import_ctf,
    parse_ctf,
    write_ctf,
)
from imports.marks import ImportRefused, store_marks
from imports.pupils import import_pupils_csv
from models.tables import Contact, ImportBatch, MarkAmendment, Pupil, RegisterMark, RegisterWeek
from models.upn import make_upn
from settings import get_settings
from tests.conftest import add_school

DATA = Path(__file__).parent / "data"
UPN1, UPN2, UPN3 = (make_upn(886, 2001, 25, n) for n in (101, 102, 103))
NOT_ON_ROLL = make_upn(886, 2001, 25, 999)
HEADER = "upn,date,session,code,minutes_late,reason\n"
GOOD = f"{UPN1},2025-09-08,AM,/,,\n"


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def counts(engine) -> dict[str, int]:
    with Session(engine) as session:
        return {
            table.name: session.exec(select(func.count()).select_from(table)).one()
            for table in SQLModel.metadata.sorted_tables
        }


def codes_and_minutes(week: RegisterWeek) -> tuple[str, str]:
    """The week's codes (2 characters a session) and minutes late (3), Mon AM to Fri PM,
    from its sessions' slots (13 characters: code, minutes late, entry)."""
    slots = [week.sessions[at : at + 13] for at in range(0, 130, 13)]
    return "".join(slot[:2] for slot in slots), "".join(slot[2:5] for slot in slots)


def refused(engine, work) -> ImportRefused:
    """Run `work(session)` as the CLI does and check that it was refused and left the
    database exactly as it was."""
    before = counts(engine)
    with pytest.raises(ImportRefused) as caught, transaction(engine) as session:
        work(session)
    assert counts(engine) == before
    return caught.value


def add_pupils(session: Session, school_id: int, upns=(UPN1, UPN2, UPN3)) -> list[Pupil]:
    pupils = [
        Pupil(
            school_id=school_id,
            upn=upn,
            forename="Test",
            surname=f"Pupil{i}",
            date_of_birth=date(2018, 1, 1),
            year_group=2,
        )
        for i, upn in enumerate(upns)
    ]
    session.add_all(pupils)
    session.flush()
    return pupils


@pytest.fixture
def pupils(engine, school) -> list[Pupil]:
    with Session(engine, expire_on_commit=False) as session:
        found = add_pupils(session, school.id)
        session.commit()
        return found


def import_csv(engine, school, path, mapping="standard", **kwargs):
    with transaction(engine) as session:
        return import_marks_csv(
            session=session,
            school_id=school.id,
            path=path,
            mapping=mapping,
            recorded_by=kwargs.pop("recorded_by", "Office"),
            role=kwargs.pop("role", "attendance officer"),
            **kwargs,
        )


# --- MIS CSV marks ------------------------------------------------------------------


def test_standard_csv_stores_marks_and_the_weekly_register(engine, school, pupils, tmp_path):
    path = write(
        tmp_path,
        "marks.csv",
        HEADER
        + f"{UPN1},2025-09-08,AM,/,,\n{UPN1},2025-09-08,PM,\\,,\n"
        + f"{UPN2},2025-09-08,am,L,12,\n{UPN2},2025-09-08,Afternoon,I,,\n",
    )
    result = import_csv(engine, school, path)
    assert (result.rows, result.added, result.amended, result.unchanged) == (4, 4, 0, 0)
    with Session(engine) as session:
        marks = session.exec(
            select(RegisterMark).order_by(RegisterMark.pupil_id, RegisterMark.session)
        ).all()
        assert [(m.code, m.minutes_late, m.recorded_by) for m in marks] == [
            ("/", None, "Office"),
            ("\\", None, "Office"),
            ("L", 12, "Office"),
            ("I", None, "Office"),
        ]
        assert len(session.exec(select(RegisterWeek)).all()) == 2
        batch = session.exec(select(ImportBatch)).one()
        assert (batch.kind, batch.filename, batch.added) == ("marks-csv", "marks.csv", 4)
        # UPN2's week: Mon AM late 12 minutes, Mon PM ill; both recorded by the batch.
        week = session.exec(select(RegisterWeek).where(RegisterWeek.pupil_id == pupils[1].id)).one()
        # Each session 13 characters: code (2), minutes late (3), the batch's id (8).
        assert week.marks == "li........"
        assert week.sessions == f"L  12{batch.id:>8}I    {batch.id:>8}".ljust(130)


def test_a_clean_file_and_the_line_by_line_path_store_the_same_register(
    engine, school, pupils, tmp_path
):
    # The same two days into two schools: as a clean file (read column by column), and
    # mark by mark through store_marks, the path of the CTF import, the demo and any file
    # with something to report.
    lines = (
        f"{UPN1},2025-09-08,AM,/,,\n{UPN1},2025-09-08,PM,L,5,\n"
        f"{UPN2},2025-09-08,AM,N,,\n{UPN2},2025-09-08,PM,O,,\n"
        f"{UPN1},2025-09-09,AM,I,,\n{UPN1},2025-09-09,PM,I,,\n"
        f"{UPN2},2025-09-09,AM,U,40,\n{UPN3},2025-09-09,PM,#,,\n"
    )
    with Session(engine, expire_on_commit=False) as session:
        other = add_school(session, name="Other", urn="118001")
        add_pupils(session, other.id)
        session.commit()
    first = import_csv(engine, school, write(tmp_path, "a.csv", HEADER + lines))
    with transaction(engine) as session:
        rows = parse_marks_csv(write(tmp_path, "b.csv", HEADER + lines), "standard")
        second = store_marks(
            session=session,
            school_id=other.id,
            rows=rows,
            recorded_by="Office",
            role="office",
            source="b.csv",
            kind="marks-csv",
            sha256="b",
        )
    assert (first.added, second.added) == (8, 8)

    def register(school_id: int) -> list[tuple]:
        with Session(engine) as session:
            weeks = session.exec(
                select(RegisterWeek, Pupil.upn)
                .join(Pupil, Pupil.id == RegisterWeek.pupil_id)
                .where(Pupil.school_id == school_id)
                .order_by(Pupil.upn)
            ).all()
        return [
            (upn, w.week_start, w.marks, *codes_and_minutes(w), w.counts, w.late)
            for w, upn in weeks
        ]

    assert register(other.id) == register(school.id)
    # UPN1: Mon / and L (5 minutes late), Tue ill both sessions.
    codes, minutes_late = {row[0]: row for row in register(school.id)}[UPN1][3:5]
    assert (codes[:8], minutes_late) == ("/ L I I ", "     5".ljust(30))


# The week of Mon 8 Sep 2025, a day at a time: (day, AM, PM) with minutes late.
UPN1_WEEK = [
    ("2025-09-08", ("/", ""), ("N", "")),
    ("2025-09-09", ("O", ""), ("O", "")),
    ("2025-09-10", ("I", ""), ("G", "")),
    ("2025-09-11", ("N", ""), ("U", "15")),
    ("2025-09-12", ("L", "5"), ("O", "")),
]
UPN2_WEEK = [
    ("2025-09-08", ("/", ""), ("/", "")),
    ("2025-09-09", ("N", ""), ("N", "")),
    ("2025-09-10", ("O", ""), ("O", "")),
]


def day_file(tmp_path: Path, day: str) -> Path:
    lines = [
        f"{upn},{d},{session},{code},{minutes},\n"
        for upn, week in ((UPN1, UPN1_WEEK), (UPN2, UPN2_WEEK))
        for d, *sessions in week
        if d == day
        for session, (code, minutes) in zip(("AM", "PM"), sessions, strict=True)
    ]
    return write(tmp_path, f"{day}.csv", HEADER + "".join(lines))


def test_a_week_imported_a_day_at_a_time_in_any_order(engine, school, pupils, tmp_path):
    # Each day's file writes into the week its earlier days made; a day imported after a
    # later one of its week makes the same row. Counts by hand from the codes:
    # UPN1 p n g g i g n u l g: possible 10, present 2 (/ L), authorised 1 (I), ill 1,
    # unauthorised 5 (O O G U O), unexplained 2, late 2 (U L); its trailing absence
    # (N, O, G, U after the last present or authorised session) day by day 1 3 1 3 1.
    # UPN2 p p n n g g: trailing absence 0 2 4.
    def week_of(pupil: Pupil) -> RegisterWeek:
        with Session(engine) as session:
            return session.exec(select(RegisterWeek).where(RegisterWeek.pupil_id == pupil.id)).one()

    trailing = []
    for day, *_ in UPN1_WEEK:
        import_csv(engine, school, day_file(tmp_path, day))
        trailing.append((week_of(pupils[0]).trailing_absence, week_of(pupils[1]).trailing_absence))
    assert trailing == [(1, 0), (3, 2), (1, 4), (3, 4), (1, 4)]
    in_order = [week_of(pupil) for pupil in pupils[:2]]
    upn1 = in_order[0]
    assert upn1.marks == "pnggignulg"
    assert codes_and_minutes(upn1) == ("/ N O O I G N U L O ", "   " * 7 + " 15  5   ")
    assert (upn1.possible, upn1.present, upn1.authorised, upn1.illness) == (10, 2, 1, 1)
    assert (upn1.unauthorised, upn1.unexplained, upn1.late) == (5, 2, 2)
    assert upn1.breaks_absence_run
    assert (in_order[1].marks, in_order[1].trailing_absence) == ("ppnngg....", 4)

    # The same days into another school in the order Wed, Mon, Fri, Tue, Thu.
    with Session(engine, expire_on_commit=False) as session:
        other = add_school(session, name="Other", urn="118001")
        others = add_pupils(session, other.id)
        session.commit()
    for n in (2, 0, 4, 1, 3):
        import_csv(engine, other, day_file(tmp_path, UPN1_WEEK[n][0]))
    out_of_order = [week_of(pupil) for pupil in others[:2]]

    def register(week: RegisterWeek) -> tuple:  # all but who recorded each mark
        return week.model_dump(exclude={"pupil_id", "sessions"}), codes_and_minutes(week)

    assert [register(w) for w in out_of_order] == [register(w) for w in in_order]


def test_no_other_write_comes_between_what_an_import_reads_and_writes(
    engine, school, pupils, tmp_path, monkeypatch
):
    # Another process's write of the register (here: a connection of its own that will
    # not wait) is refused for as long as an import is looking at the stored weeks, so
    # that what it writes into is what it saw. Tuesday is imported after Monday, once as
    # a clean file and once with a change to Monday (the line-by-line path).
    import_csv(engine, school, write(tmp_path, "mon.csv", HEADER + GOOD))
    seen = []
    plan = imports.marks._plan

    def plan_and_try_another_write(*args, **kwargs):
        other = sqlite3.connect(engine.url.database, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            seen.append("written")
        except sqlite3.OperationalError as error:
            seen.append(str(error))
        finally:
            other.close()
        return plan(*args, **kwargs)

    monkeypatch.setattr(imports.marks, "_plan", plan_and_try_another_write)
    tue = f"{UPN1},2025-09-09,AM,/,,\n"
    import_csv(engine, school, write(tmp_path, "tue.csv", HEADER + tue))
    changed = f"{UPN1},2025-09-08,AM,L,5,late bus\n{UPN1},2025-09-09,PM,/,,\n"
    result = import_csv(engine, school, write(tmp_path, "tue-pm.csv", HEADER + changed))
    assert (result.added, result.amended) == (1, 1)
    assert seen == ["database is locked"] * 3  # a clean try, then line by line; both held


def test_a_register_stored_as_a_table_of_marks_moves_into_the_weeks(
    engine, school, pupils, tmp_path
):
    # Mon 8 Sep 2025: UPN1 present both sessions; UPN2 late 12 minutes, then ill.
    marks = (
        f"{UPN1},2025-09-08,AM,/,,\n{UPN1},2025-09-08,PM,\\,,\n"
        + f"{UPN2},2025-09-08,AM,L,12,\n{UPN2},2025-09-08,PM,I,,\n"
    )
    import_csv(engine, school, write(tmp_path, "mon.csv", HEADER + marks))
    with Session(engine) as session:
        before = [
            (m.pupil_id, m.day, m.session, m.code, m.minutes_late, m.recorded_by, m.recorded_at)
            for m in session.exec(select(RegisterMark))
        ]
    with engine.begin() as connection:  # the register as an earlier version stored it
        connection.exec_driver_sql("CREATE TABLE old_mark AS SELECT * FROM registermark")
        connection.exec_driver_sql("DROP VIEW registermark")
        connection.exec_driver_sql(
            "CREATE TABLE registermark (id INTEGER PRIMARY KEY, pupil_id INTEGER NOT NULL,"
            " day DATE NOT NULL, session VARCHAR(2) NOT NULL, code VARCHAR(2) NOT NULL,"
            " minutes_late INTEGER, recorded_by VARCHAR NOT NULL, recorded_at DATETIME NOT NULL,"
            " week_start DATE NOT NULL, slot INTEGER NOT NULL)"
        )
        connection.exec_driver_sql(
            "INSERT INTO registermark (pupil_id, day, session, code, minutes_late, recorded_by,"
            " recorded_at, week_start, slot) SELECT pupil_id, day, session, code, minutes_late,"
            " recorded_by, recorded_at, week_start, slot FROM old_mark"
        )
        connection.exec_driver_sql("DROP TABLE old_mark")
        connection.exec_driver_sql("ALTER TABLE registerweek DROP COLUMN sessions")
        for column in ("first_day", "last_day"):
            connection.exec_driver_sql(f"ALTER TABLE importbatch DROP COLUMN {column}")
    engine.dispose()

    upgraded = make_engine(str(engine.url))
    with Session(upgraded) as session:
        after = [
            (m.pupil_id, m.day, m.session, m.code, m.minutes_late, m.recorded_by, m.recorded_at)
            for m in session.exec(select(RegisterMark))
        ]
        weeks = session.exec(select(RegisterWeek).order_by(RegisterWeek.pupil_id)).all()
        moved = session.exec(select(ImportBatch).where(ImportBatch.kind == "register")).one()
    assert sorted(after) == sorted(before)
    assert len(after) == 4
    # Mon AM and PM are the first two slots: codes two characters each, minutes three.
    assert [codes_and_minutes(w)[0][:4] for w in weeks] == ["/ \\ ", "L I "]
    assert [codes_and_minutes(w)[1][:6] for w in weeks] == ["      ", " 12   "]
    assert weeks[1].sessions[:26] == f"L  12{moved.id:>8}I    {moved.id:>8}"
    assert (moved.imported_by, moved.first_day, moved.last_day) == (
        "Office",
        date(2025, 9, 8),
        date(2025, 9, 8),
    )
    # The next day's import goes on as before, into the moved weeks.
    tue = write(tmp_path, "tue.csv", HEADER + f"{UPN1},2025-09-09,AM,O,,\n")
    assert import_csv(upgraded, school, tue).added == 1
    with Session(upgraded) as session:
        week = session.exec(select(RegisterWeek).where(RegisterWeek.pupil_id == pupils[0].id)).one()
    assert (codes_and_minutes(week)[0][:6], week.present, week.unauthorised) == ("/ \\ O ", 2, 1)


def test_a_register_kept_in_three_columns_comes_together_in_sessions(
    engine, school, pupils, tmp_path
):
    # An earlier version kept each session's code, minutes late and entry in three
    # columns of their own (2, 3 and 8 characters a session).
    marks = f"{UPN2},2025-09-08,AM,L,12,\n{UPN2},2025-09-08,PM,I,,\n"
    import_csv(engine, school, write(tmp_path, "mon.csv", HEADER + marks))
    with Session(engine) as session:
        batch = session.exec(select(ImportBatch)).one()
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP VIEW registermark")
        for column, text in (
            ("codes", "L I ".ljust(20)),
            ("minutes_late", " 12".ljust(30)),
            ("entries", f"{batch.id:>8}{batch.id:>8}".ljust(80)),
        ):
            connection.exec_driver_sql(
                f"ALTER TABLE registerweek ADD COLUMN {column} VARCHAR NOT NULL DEFAULT ''"
            )
            connection.exec_driver_sql(f"UPDATE registerweek SET {column} = '{text}'")
        connection.exec_driver_sql("ALTER TABLE registerweek DROP COLUMN sessions")
    engine.dispose()

    upgraded = make_engine(str(engine.url))
    with Session(upgraded) as session:
        week = session.exec(select(RegisterWeek)).one()
        marks = session.exec(select(RegisterMark).order_by(RegisterMark.slot)).all()
    assert week.sessions == f"L  12{batch.id:>8}I    {batch.id:>8}".ljust(130)
    assert [(m.code, m.minutes_late, m.batch_id) for m in marks] == [
        ("L", 12, batch.id),
        ("I", None, batch.id),
    ]
    tue = write(tmp_path, "tue.csv", HEADER + f"{UPN2},2025-09-09,AM,O,,\n")
    assert import_csv(upgraded, school, tue).added == 1


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        (f"{UPN1},2025-09-09,AM,H,,", "line 3: 'H' is not a national attendance code"),
        (f"{NOT_ON_ROLL},2025-09-09,AM,/,,", f"line 3: UPN {NOT_ON_ROLL} is not on this school"),
        ("A886200125101,2025-09-09,AM,/,,", "line 3: UPN 'A886200125101' has check letter A"),
        (f"{UPN1},2025-09-31,AM,/,,", "line 3: date '2025-09-31' does not match the format"),
        (f"{UPN1},2025-09-08,AM,I,,", "line 3: the same pupil, day and session as line 2"),
        (f"{UPN1},2025-09-09,AM,/", "line 3: 4 fields, the header has 6"),
        (f'{UPN1},2025-09-09,AM,"/"x,,', "line 3: malformed line"),
        (f"{UPN1},2025-09-09,XX,/,,", "line 3: unknown session 'XX'"),
        (f"{UPN1},2025-09-09,AM,L,ten,", "line 3: minutes late 'ten' is not a whole number"),
        (f"{UPN1},2025-09-09,AM,L,1000,", "line 3: 1000 minutes late is more than the register"),
        (f"{UPN1},2025-09-06,AM,/,,", "line 3: 2025-09-06 is not a school day (a weekend)"),
        (f"{UPN1},2026-11-06,AM,/,,", "line 3: 2026-11-06 is not a school day (a bank holiday, IN"),
        (f"{UPN1},2026-05-04,AM,/,,", "line 3: 2026-05-04 is not a school day (a bank holiday"),
    ],
    ids=[
        "unknown-code",
        "unknown-upn",
        "bad-check-letter",
        "bad-date",
        "duplicate-session",
        "wrong-column-count",
        "bad-quoting",
        "unknown-session",
        "minutes-not-integer",
        "minutes-over-999",
        "weekend",
        "inset-day",
        "bank-holiday",
    ],
)
def test_a_bad_line_refuses_the_whole_csv(engine, school, pupils, tmp_path, bad_line, expected):
    path = write(tmp_path, "marks.csv", HEADER + GOOD + bad_line + "\n")
    error = refused(
        engine,
        lambda s: import_marks_csv(
            session=s,
            school_id=school.id,
            path=path,
            mapping="standard",
            recorded_by="Office",
            role="officer",
        ),
    )
    assert error.source == "marks.csv"
    assert any(p.startswith(expected) for p in error.problems), error.problems
    assert counts(engine)["registermark"] == 0  # not even the good line


def test_every_problem_is_listed_with_its_line(tmp_path):
    path = write(
        tmp_path,
        "marks.csv",
        HEADER + GOOD + f"{UPN1},2025-09-09,AM,H,,\n" + "\n" + f"{UPN2},9/9/2025,PM,/,x,\n",
    )
    with pytest.raises(ImportRefused) as caught:
        parse_marks_csv(path, "standard")
    assert caught.value.problems == [
        "line 3: 'H' is not a national attendance code (2024 regulations)",
        "line 5: date '9/9/2025' does not match the format %Y-%m-%d",
        "line 5: minutes late 'x' is not a whole number",
    ]


def test_a_header_missing_a_mapped_column_is_refused(tmp_path):
    path = write(tmp_path, "marks.csv", "upn,date,session,mark,minutes_late,reason\n" + GOOD)
    with pytest.raises(ImportRefused) as caught:
        parse_marks_csv(path, "standard")
    assert caught.value.problems == [
        "line 1: the header has no column 'code' (code) [mapping standard]"
    ]


def test_the_same_file_twice_changes_nothing(engine, school, pupils, tmp_path):
    path = write(tmp_path, "marks.csv", HEADER + GOOD + f"{UPN2},2025-09-08,AM,N,,\n")
    first = import_csv(engine, school, path)
    assert first.added == 2 and not first.already_imported
    before = counts(engine)
    second = import_csv(engine, school, path)
    assert second.already_imported
    assert (second.added, second.amended) == (0, 0)
    assert counts(engine) == before


def test_a_changed_mark_is_an_amendment_keeping_the_original(engine, school, pupils, tmp_path):
    import_csv(engine, school, write(tmp_path, "day1.csv", HEADER + f"{UPN1},2025-09-08,AM,O,,\n"))
    unexplained = write(tmp_path, "day1b.csv", HEADER + f"{UPN1},2025-09-08,AM,I,,\n")
    error = refused(
        engine,
        lambda s: import_marks_csv(
            session=s,
            school_id=school.id,
            path=unexplained,
            mapping="standard",
            recorded_by="Head",
            role="headteacher",
        ),
    )
    assert "line 2: changes the stored mark O to I" in error.problems[0]
    assert "needs a reason" in error.problems[0]

    changed = write(tmp_path, "day1c.csv", HEADER + f"{UPN1},2025-09-08,AM,I,,GP letter received\n")
    result = import_csv(engine, school, changed, recorded_by="Mrs Head", role="headteacher")
    assert (result.added, result.amended, result.unchanged) == (0, 1, 0)
    with Session(engine) as session:
        amendment = session.exec(select(MarkAmendment)).one()
        assert (amendment.original_code, amendment.new_code) == ("O", "I")
        assert amendment.reason == "GP letter received"
        assert (amendment.amended_by, amendment.amended_role) == ("Mrs Head", "headteacher")
        mark = session.exec(select(RegisterMark)).one()
        assert (mark.code, mark.recorded_by) == ("I", "Mrs Head")
        week = session.exec(select(RegisterWeek)).one()
        assert (week.authorised, week.unauthorised) == (1, 0)


def test_a_default_reason_covers_lines_without_one(engine, school, pupils, tmp_path):
    import_csv(engine, school, write(tmp_path, "a.csv", HEADER + f"{UPN1},2025-09-08,AM,N,,\n"))
    result = import_csv(
        engine,
        school,
        write(tmp_path, "b.csv", HEADER + f"{UPN1},2025-09-08,AM,M,,\n"),
        default_reason="dentist appointment card seen",
    )
    assert result.amended == 1
    with Session(engine) as session:
        assert session.exec(select(MarkAmendment.reason)).one() == "dentist appointment card seen"


STANDARD = (
    HEADER
    + f"{UPN1},2025-09-08,AM,/,,\n{UPN1},2025-09-08,PM,\\,,\n"
    + f"{UPN2},2025-09-08,AM,L,12,Bus late\n{UPN2},2025-09-08,PM,C1,,Bus late\n"
    + f"{UPN3},2025-09-09,PM,Y1,,\n"
)
SIMS = (
    '"UPN","Legal Surname","Legal Forename","Date","Session","Mark","Minutes Late","Comment"\n'
    f'"{UPN1}","Pupil0","Test","08/09/2025","AM","/","",""\n'
    f'"{UPN1}","Pupil0","Test","08/09/2025","PM","\\","",""\n'
    f'"{UPN2}","Pupil1","Test","08/09/2025","AM","L","12","Bus late"\n'
    f'"{UPN2}","Pupil1","Test","08/09/2025","PM","C1","","Bus late"\n'
    f'"{UPN3}","Pupil2","Test","09/09/2025","PM","Y1","",""\n'
)
ARBOR = (
    "UPN,First Name,Last Name,Date,AM Mark,PM Mark,AM Minutes Late,PM Minutes Late,Note\n"
    f"{UPN1},Test,Pupil0,08 Sep 2025,/,\\,,,\n"
    f"{UPN2},Test,Pupil1,08 Sep 2025,L,C1,12,,Bus late\n"
    f"{UPN3},Test,Pupil2,09 Sep 2025,,Y1,,,\n"
)


def test_the_three_presets_read_equivalent_files_alike(tmp_path):
    def marks(name: str, text: str) -> list[tuple]:
        rows = parse_marks_csv(write(tmp_path, f"{name}.csv", text), name)
        return sorted(dataclasses.astuple(dataclasses.replace(r, line=0)) for r in rows)

    standard = marks("standard", STANDARD)
    assert len(standard) == 5
    assert standard == marks("sims", SIMS) == marks("arbor", ARBOR)
    arbor = parse_marks_csv(tmp_path / "arbor.csv", "arbor")
    assert [r.line for r in arbor] == [2, 2, 3, 3, 4]  # two sessions per line


def test_byte_order_mark_and_header_case_are_accepted(tmp_path):
    text = "UPN,Date,Session,Code,Minutes_Late,Reason\n" + GOOD
    rows = parse_marks_csv(write(tmp_path, "bom.csv", text, encoding="utf-8-sig"), "standard")
    assert [(r.line, r.upn, r.code) for r in rows] == [(2, UPN1, "/")]


def test_text_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + GOOD + f"{UPN2},2025-09-08,AM,/,,caf\xe9\n").encode("latin-1"))
    with pytest.raises(ImportRefused) as caught:
        parse_marks_csv(path, "standard")
    assert caught.value.problems == ["line 3: not UTF-8 text (export the file as UTF-8 CSV)"]


def test_a_school_mapping_file_with_aliases(tmp_path):
    mapping = write(
        tmp_path,
        "bromcom.yaml",
        "layout: long\ndate_format: '%d-%m-%Y'\ndelimiter: ';'\n"
        "columns: {upn: Pupil UPN, date: Day, session: Half, code: Code}\n"
        "session_values: {AM: [M], PM: [A]}\ncode_values: {PRES: /}\n",
    )
    path = write(tmp_path, "b.csv", f"Pupil UPN;Day;Half;Code\n{UPN1};08-09-2025;M;pres\n")
    [row] = parse_marks_csv(path, mapping)
    assert (row.day, row.session, row.code) == (date(2025, 9, 8), "AM", "/")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"date_format": "%Y-%m-%d", "columns": {"upn": "u", "date": "d"}}, "columns.session"),
        (
            {
                "date_format": "%Y",
                "columns": {"upn": "u", "date": "d", "code": "c"},
                "session_columns": {"AM": "a"},
            },
            "not `columns.code`",
        ),
        ({"columns": {"upn": "u", "date": "d", "session": "s", "code": "c"}}, "date_format"),
        ({"colums": {}}, "unknown key(s) colums"),
    ],
)
def test_bad_mapping_files_say_which_key(raw, message):
    with pytest.raises(MappingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        mapping_from_dict(raw)


def test_presets_load_and_an_unknown_mapping_is_an_error():
    assert load_mapping("arbor").wide and not load_mapping("sims").wide
    with pytest.raises(MappingError, match="no mapping 'bromcom'"):
        load_mapping("bromcom")


# --- the Common Transfer File -------------------------------------------------------


def marks_of(year) -> list[tuple[date, str, str]]:
    return [(m.day, str(m.session), m.code) for m in year.marks]


def test_the_fixture_reads_the_same_marks_in_both_formats():
    ctf = parse_ctf(DATA / "ctf_two_formats.xml")
    assert ctf.header.version == "24.0" and ctf.warnings == []
    assert (ctf.header.source.lea, ctf.header.source.estab) == ("886", "3005")
    old, new = (p.years[-1] for p in ctf.pupils)
    assert marks_of(old) == marks_of(new)
    assert len(old.marks) == 16  # 20 sessions less two '#' and two '-'
    assert marks_of(old)[:3] == [
        (date(2025, 9, 8), "AM", "/"),
        (date(2025, 9, 8), "PM", "\\"),
        (date(2025, 9, 9), "AM", "/"),
    ]
    # Monday to Friday only: the second week starts on Monday 15 September.
    assert marks_of(old)[10] == (date(2025, 9, 15), "AM", "/")
    assert date(2025, 9, 16) not in {day for day, _, _ in marks_of(old)}  # '#', '#'


def test_importing_the_fixture_adds_pupils_contacts_and_only_our_marks(engine, school):
    path = DATA / "ctf_two_formats.xml"
    with transaction(engine) as session:
        result = import_ctf(
            session=session, school_id=school.id, path=path, recorded_by="Office", role="office"
        )
    assert (result.pupils_added, result.contacts_added) == (2, 2)
    assert (result.rows, result.added) == (32, 32)
    with Session(engine) as session:
        days = set(session.exec(select(RegisterMark.day)).all())
        assert date(2025, 9, 3) not in days  # the other school's marks are not stored
        pupil = session.exec(select(Pupil).where(Pupil.upn == UPN2)).one()
        assert (pupil.year_group, pupil.sex, pupil.date_of_birth) == (3, "M", date(2017, 11, 2))
        mother = session.exec(select(Contact).join(Pupil).where(Pupil.upn == UPN1)).one()
        assert (mother.relationship, mother.phone, mother.preferred_channel) == (
            "Mother",
            "07700 900001",
            "email",
        )
        assert (mother.address, mother.postcode) == ("1 Station Road\nAshford", "TN23 1AA")
        father = session.exec(select(Contact).join(Pupil).where(Pupil.upn == UPN2)).one()
        assert (father.address, father.preferred_channel) == ("22 Mill Lane\nAshford", "post")

    before = counts(engine)
    with transaction(engine) as session:
        again = import_ctf(
            session=session, school_id=school.id, path=path, recorded_by="Office", role="office"
        )
    assert again.already_imported
    assert counts(engine) == before


def test_an_existing_pupil_is_updated_in_place(engine, school, pupils):
    with transaction(engine) as session:
        result = import_ctf(
            session=session,
            school_id=school.id,
            path=DATA / "ctf_two_formats.xml",
            recorded_by="Office",
            role="office",
        )
    assert (result.pupils_added, result.pupils_amended) == (0, 2)
    with Session(engine) as session:
        pupil = session.get(Pupil, pupils[1].id)
        assert (pupil.upn, pupil.year_group, pupil.surname) == (UPN2, 3, "Sample")


def our_school() -> CtfSchool:
    return CtfSchool(lea="886", estab="2001", urn="118000", name="St Barnabas'")


def one_pupil(marks, **year) -> list:
    pupil = Pupil(
        upn=UPN1,
        school_id=0,
        forename="Amy",
        surname="Example",
        date_of_birth=date(2018, 3, 14),
        year_group=2,
        sex="F",
    )
    data = CtfYearData.from_marks(year="2025", lea="886", estab="2001", marks=marks)
    for name, value in year.items():
        setattr(data, name, value)
    return [ctf_pupil_from_rows(pupil, years=[data])]


MARKS = [
    (date(2025, 9, 8), "AM", "/"),
    (date(2025, 9, 8), "PM", "C1"),
    (date(2025, 9, 9), "AM", "Y1"),
    (date(2025, 9, 12), "PM", "G"),
    (date(2025, 9, 15), "AM", "J1"),
]


def test_written_files_read_back_in_either_mark_format(tmp_path):
    comma = write_ctf(tmp_path / "c.xml", source=our_school(), pupils=one_pupil(MARKS))
    assert "/,C1,Y1,-,-,-,-,-,-,G,J1" in comma.read_text()
    assert marks_of(parse_ctf(comma).pupils[0].years[0]) == MARKS
    single = [(d, s, c) for d, s, c in MARKS if len(c) == 1]
    chars = write_ctf(
        tmp_path / "s.xml", source=our_school(), pupils=one_pupil(single), comma_marks=False
    )
    assert "<AttendanceMarks>/--------G</AttendanceMarks>" in chars.read_text()
    assert marks_of(parse_ctf(chars).pupils[0].years[0]) == single


@pytest.mark.parametrize("tag", ["CTFversion", "CTFVersion"])
def test_both_spellings_of_the_version_are_read(tmp_path, tag):
    path = write_ctf(
        tmp_path / "v.xml", source=our_school(), pupils=one_pupil(MARKS), version_tag=tag
    )
    ctf = parse_ctf(path)
    assert (ctf.header.version, ctf.warnings) == ("25.0", [])


def test_an_old_version_is_read_with_a_warning(tmp_path):
    path = write_ctf(
        tmp_path / "v.xml", source=our_school(), pupils=one_pupil(MARKS), version="22.0"
    )
    ctf = parse_ctf(path)
    assert len(ctf.pupils) == 1
    assert ctf.warnings == [
        "CTF version 22.0 is not one this importer expects (25 or 24): check the imported data"
    ]


def import_file(school, path):
    return lambda session: import_ctf(
        session=session, school_id=school.id, path=path, recorded_by="Office", role="office"
    )


def test_marks_that_do_not_add_up_to_the_totals_are_refused(engine, school, tmp_path):
    path = write_ctf(
        tmp_path / "t.xml",
        source=our_school(),
        pupils=one_pupil(MARKS, sessions_possible=5, sessions_unauthorised=0),
    )
    error = refused(engine, import_file(school, path))
    [problem] = error.problems
    assert problem.startswith(f"pupil 1 (UPN {UPN1}, line 20), year 2025 at 886/2001 (line 41)")
    assert "the marks do not add up to the year totals" in problem
    assert "possible 4 (the file says 5)" in problem
    assert "unauthorised 1 (the file says 0)" in problem
    assert "Example" not in problem and "2018" not in problem


def test_a_mark_on_an_inset_day_refuses_the_ctf_and_adds_no_pupil(engine, school, tmp_path):
    marks = [(date(2026, 11, 5), "AM", "/"), (date(2026, 11, 6), "AM", "/")]
    path = write_ctf(tmp_path / "i.xml", source=our_school(), pupils=one_pupil(marks))
    error = refused(engine, import_file(school, path))
    assert error.problems == [
        "line 41: 2026-11-06 is not a school day (a bank holiday, INSET day or closure)"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<Root><Header/></Root>", "line 1: the root element is Root; a CTF's root is CTfile"),
        ("this is not XML", "line 1: not well-formed XML (syntax error)"),
        (
            "<CTfile><Header><DocumentName>CTF</DocumentName></Header></CTfile>",
            "line 1: DocumentName is 'CTF', not 'Common Transfer File'",
        ),
        (
            '<!DOCTYPE x [<!ENTITY a "aaaa">]><CTfile/>',
            "the file declares XML entities; a CTF has none",
        ),
    ],
    ids=["wrong-root", "not-xml", "document-name", "entities"],
)
def test_a_file_that_is_not_a_ctf_is_refused(engine, school, tmp_path, text, expected):
    path = write(tmp_path, "x.xml", text)
    error = refused(engine, import_file(school, path))
    assert error.problems == [expected]


def test_pupil_problems_name_position_and_upn_never_personal_data(engine, school, tmp_path):
    text = (DATA / "ctf_two_formats.xml").read_text()
    text = text.replace("<UPN>P886200125101</UPN>", "<UPN>A886200125101</UPN>")
    text = text.replace("<DOB>2017-11-02</DOB>", "<DOB>02/11/2017</DOB>")
    text = text.replace("IINOL", "IIHOL").replace(",N,O,", ",N,F,")
    error = refused(engine, import_file(school, write(tmp_path, "p.xml", text)))
    assert error.problems == [
        "pupil 1 (line 26): UPN 'A886200125101' has check letter A, expected P",
        "pupil 1 (line 26), year 2025 at 886/2001 (line 81): mark 7 (2025-09-11 AM) 'H' is not "
        "a national attendance code (2024 regulations)",
        f"pupil 2 (UPN {UPN2}, line 86): DOB is missing or not a date (YYYY-MM-DD)",
        f"pupil 2 (UPN {UPN2}, line 86), year 2025 at 886/2001 (line 146): mark 8 "
        "(2025-09-11 PM) 'F' is not a national attendance code (2024 regulations)",
    ]
    assert not any("Sample" in p or "Example" in p or "11/2017" in p for p in error.problems)


def test_a_ctf_of_our_own_marks_keeps_their_minutes_late(engine, school, pupils, tmp_path):
    import_csv(engine, school, write(tmp_path, "m.csv", HEADER + f"{UPN1},2025-09-08,AM,L,12,\n"))
    path = write_ctf(
        tmp_path / "own.xml", source=our_school(), pupils=one_pupil([MARKS[0][:2] + ("L",)])
    )
    with transaction(engine) as session:
        result = import_file(school, path)(session)
    assert (result.added, result.amended, result.unchanged) == (0, 0, 1)
    with Session(engine) as session:
        assert session.exec(select(RegisterMark.minutes_late)).one() == 12


def test_a_written_ctf_moves_a_register_to_another_database(engine, school, pupils, tmp_path):
    path = write(
        tmp_path,
        "m.csv",
        HEADER
        + "".join(
            f"{UPN1},2025-09-{d:02},{s},{c},,\n"
            for d, s, c in [
                (8, "AM", "/"),
                (8, "PM", "I"),
                (9, "AM", "L"),
                (10, "PM", "N"),
                (15, "AM", "/"),
            ]
        ),
    )
    import_csv(engine, school, path)
    with Session(engine) as session:
        pupil = session.get(Pupil, pupils[0].id)
        stored = session.exec(select(RegisterMark).where(RegisterMark.pupil_id == pupil.id)).all()
        year = CtfYearData.from_marks(
            year="2025",
            lea="886",
            estab="2001",
            marks=[(m.day, m.session, m.code) for m in stored],
        )
        ctf = write_ctf(
            tmp_path / "out.xml",
            source=our_school(),
            pupils=[ctf_pupil_from_rows(pupil, [], [year])],
        )

    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with transaction(other) as session:
        school2 = add_school(session)
        result = import_ctf(
            session=session, school_id=school2.id, path=ctf, recorded_by="Office", role="office"
        )
    assert (result.pupils_added, result.added) == (1, 5)
    with Session(other) as session:
        moved = session.exec(
            select(RegisterMark.day, RegisterMark.session, RegisterMark.code)
        ).all()
    assert sorted(moved) == sorted((m.day, m.session, m.code) for m in stored)


# --- pupils and contacts CSV --------------------------------------------------------

PUPILS = (
    "upn,forename,surname,date_of_birth,year_group,sex,fsm,send,looked_after,"
    "contact1_title,contact1_forename,contact1_surname,contact1_relationship,"
    "contact1_phone,contact1_email,contact1_address,contact1_postcode,contact1_preferred_channel,"
    "contact2_forename,contact2_surname,contact2_relationship,contact2_parental_responsibility,"
    "contact2_address,contact2_postcode\n"
    f"{UPN1},Amy,Example,2018-03-14,2,F,Y,N,false,Mrs,Jane,Example,Mother,07700 900001,"
    "jane@example.org,,,email,,,,,,\n"
    f'{UPN2},Ben,Sample,02/11/2017,R,M,n,yes,TRUE,,Tom,Sample,Father,,,"22 Mill Lane;Ashford",'
    "tn24 2bb,post,Sue,Sample,Grandmother,N,22 Mill Lane,TN24 2BB\n"
)


def import_pupils(engine, school, path, contacts=None):
    with transaction(engine) as session:
        return import_pupils_csv(
            session=session, school_id=school.id, path=path, contacts_path=contacts
        )


def test_pupils_and_contacts_are_added_then_updated_in_place(engine, school, tmp_path):
    path = write(tmp_path, "pupils.csv", PUPILS)
    result = import_pupils(engine, school, path)
    assert (result.rows, result.added, result.amended, result.unchanged) == (5, 5, 0, 0)
    with Session(engine) as session:
        ben = session.exec(select(Pupil).where(Pupil.upn == UPN2)).one()
        assert (ben.year_group, ben.date_of_birth, ben.send, ben.looked_after, ben.fsm) == (
            0,
            date(2017, 11, 2),
            True,
            True,
            False,
        )
        contacts = session.exec(
            select(Contact).where(Contact.pupil_id == ben.id).order_by(Contact.priority)
        ).all()
        assert [(c.priority, c.relationship, c.parental_responsibility) for c in contacts] == [
            (1, "Father", True),
            (2, "Grandmother", False),
        ]
        assert (contacts[0].address, contacts[0].postcode) == ("22 Mill Lane\nAshford", "TN24 2BB")
        ben_id = ben.id

    before = counts(engine)
    assert import_pupils(engine, school, path).already_imported
    assert counts(engine) == before

    changed = write(tmp_path, "pupils2.csv", PUPILS.replace("02/11/2017,R,", "02/11/2017,1,"))
    result = import_pupils(engine, school, changed)
    assert (result.added, result.amended, result.unchanged) == (0, 1, 4)
    with Session(engine) as session:
        ben = session.exec(select(Pupil).where(Pupil.upn == UPN2)).one()
        assert (ben.id, ben.year_group) == (ben_id, 1)


def test_contacts_from_a_second_file(engine, school, pupils, tmp_path):
    path = write(
        tmp_path,
        "p.csv",
        f"upn,forename,surname,date_of_birth,year_group\n{UPN3},Test,Pupil2,2018-01-01,2\n",
    )
    contacts = write(
        tmp_path,
        "c.csv",
        "upn,priority,forename,surname,relationship,email\n"
        f"{UPN1},2,Ann,Pupil0,Aunt,ann@example.org\n{UPN1},1,Bob,Pupil0,Father,bob@example.org\n",
    )
    result = import_pupils(engine, school, path, contacts)
    assert (result.added, result.amended, result.unchanged) == (2, 0, 1)
    with Session(engine) as session:
        found = session.exec(
            select(Contact.priority, Contact.relationship).order_by(Contact.priority)
        ).all()
    assert found == [(1, "Father"), (2, "Aunt")]


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("upn", "A886200125101", "line 3: UPN 'A886200125101' has check letter A, expected P"),
        (
            "date_of_birth",
            "31/02/2018",
            f"line 3 (UPN {UPN1}): date_of_birth is not a date (YYYY-MM-DD or DD/MM/YYYY)",
        ),
        ("year_group", "N2", f"line 3 (UPN {UPN1}): year_group 'N2' is not R or 1 to 13"),
        ("fsm", "maybe", f"line 3 (UPN {UPN1}): fsm 'maybe' is not Y/N or true/false"),
        ("upn", UPN2, f"line 3: UPN {UPN2} is also on line 2"),
        (
            "contact1_preferred_channel",
            "text",
            f"line 3 (UPN {UPN1}) contact1: preferred_channel 'text' is not email, post or both",
        ),
    ],
    ids=[
        "bad-check-letter",
        "bad-date",
        "unknown-year-group",
        "bad-flag",
        "duplicate-upn",
        "bad-channel",
    ],
)
def test_a_bad_pupil_line_refuses_the_file(engine, school, tmp_path, column, value, expected):
    header = (
        "upn,forename,surname,date_of_birth,year_group,fsm,"
        "contact1_surname,contact1_email,contact1_preferred_channel"
    )
    names = header.split(",")
    good = [UPN2, "Ben", "Sample", "2017-11-02", "3", "N", "Sample", "t@example.org", "email"]
    bad = [UPN1, "Amy", "Example", "2018-03-14", "2", "Y", "Example", "j@example.org", "email"]
    bad[names.index(column)] = value
    path = write(tmp_path, "p.csv", "\n".join([header, ",".join(good), ",".join(bad)]) + "\n")
    error = refused(engine, lambda s: import_pupils_csv(session=s, school_id=school.id, path=path))
    assert error.problems == [expected]
    assert not any("Amy" in p or "Example" in p or "2018" in p for p in error.problems)


def test_an_unknown_column_is_refused(tmp_path, engine, school):
    path = write(
        tmp_path,
        "p.csv",
        f"upn,forename,surname,date_of_birth,year_group,looked_afer\n{UPN1},A,B,2018-01-01,2,Y\n",
    )
    error = refused(engine, lambda s: import_pupils_csv(session=s, school_id=school.id, path=path))
    assert error.problems == ["line 1: unknown column 'looked_afer'"]


# --- the command line ---------------------------------------------------------------


@pytest.fixture
def cli_database(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'attend.db'}")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_prints_problems_to_stderr_and_exits_1(engine, school, pupils, tmp_path, cli_database):
    path = write(tmp_path, "marks.csv", HEADER + GOOD + f"{UPN1},2025-09-06,AM,/,,\n")
    before = counts(engine)
    result = CliRunner().invoke(
        import_app,
        ["marks", str(path), "--school", school.urn, "--by", "Office", "--role", "officer"],
    )
    assert result.exit_code == 1
    assert "marks.csv: refused, nothing was stored (1 problem(s))" in result.stderr
    assert "line 3: 2025-09-06 is not a school day (a weekend)" in result.stderr
    assert result.stdout == ""
    assert counts(engine) == before


def test_cli_imports_and_prints_the_counts(engine, school, pupils, tmp_path, cli_database):
    path = write(tmp_path, "sims.csv", SIMS)
    args = ["marks", str(path), "--school", school.urn, "--mapping", "sims"]
    result = CliRunner().invoke(import_app, [*args, "--by", "Office", "--role", "officer"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "sims.csv: 5 marks: 5 added, 0 amended, 0 unchanged\n"
    result = CliRunner().invoke(import_app, [*args, "--by", "Office", "--role", "officer"])
    assert result.stdout == "sims.csv: already imported; nothing changed\n"

    # The CTF disagrees with two of those marks: refused without a reason, then amended.
    ctf = ["ctf", str(DATA / "ctf_two_formats.xml"), "--school", school.urn]
    result = CliRunner().invoke(import_app, [*ctf, "--by", "Office", "--role", "officer"])
    assert result.exit_code == 1
    assert "line 146: changes the stored mark L to / for 2025-09-08 AM" in result.stderr
    result = CliRunner().invoke(
        import_app,
        [*ctf, "--by", "Mrs Head", "--role", "headteacher", "--reason", "CTF from Hill Top"],
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "ctf_two_formats.xml: pupils 0 added, 2 amended, 0 unchanged; "
        "contacts 2 added, 0 amended, 0 unchanged",
        "ctf_two_formats.xml: 32 marks: 28 added, 2 amended, 2 unchanged",
    ]


def test_cli_unknown_school(engine, school, tmp_path, cli_database):
    path = write(tmp_path, "p.csv", "upn,forename,surname,date_of_birth,year_group\n")
    result = CliRunner().invoke(import_app, ["pupils", str(path), "--school", "999999"])
    assert result.exit_code == 1
    assert "no school with URN 999999" in result.stderr
