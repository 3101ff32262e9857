"""The SQL engine and sessions. SQLite by default, PostgreSQL by DATABASE_URL."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Executable, event, inspect, text
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlmodel import Session, SQLModel, create_engine

import models.tables  # noqa: F401  (registers the tables)
from figures.register_week import (
    CODE_WIDTH,
    EMPTY_SESSION,
    EMPTY_SESSIONS,
    ENTRY_WIDTH,
    MINUTES_WIDTH,
    SLOTS,
    packed_counts_sql,
    register_mark_view_sql,
)

SessionFactory = Callable[[], Session]


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA cache_size=-262144")
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.close()

    create_tables(engine)
    return engine


def create_tables(engine: Engine) -> None:
    """Every table that is missing, the `registermark` view, and what a database made by
    an earlier version lacks."""
    SQLModel.metadata.create_all(
        engine, tables=[t for t in SQLModel.metadata.sorted_tables if not t.info.get("view")]
    )
    with engine.begin() as connection:
        _add_packed_week_counts(connection)
        _add_register_columns(connection)
        kind = _relation_kind(connection, "registermark")
        if kind == "table":
            _move_marks_into_weeks(connection)
        if kind != "view":
            connection.execute(text(register_mark_view_sql(engine.dialect.name)))


def _add_packed_week_counts(connection: Connection) -> None:
    """A database made before RegisterWeek.counts existed gets it, filled from each week's
    own count columns."""
    if "counts" in {c["name"] for c in inspect(connection).get_columns("registerweek")}:
        return
    connection.execute(text("ALTER TABLE registerweek ADD COLUMN counts BIGINT NOT NULL DEFAULT 0"))
    connection.execute(text(f"UPDATE registerweek SET counts = {packed_counts_sql()}"))


def _add_register_columns(connection: Connection) -> None:
    """A database made when the register was a table of its own gets the weekly
    register's `sessions`, and ImportBatch its days. One made when the sessions' codes,
    minutes late and entries were three columns gets them put together in `sessions`."""
    have = {c["name"] for c in inspect(connection).get_columns("registerweek")}
    if "sessions" not in have:
        connection.execute(
            text(
                "ALTER TABLE registerweek ADD COLUMN sessions VARCHAR NOT NULL"
                f" DEFAULT '{EMPTY_SESSIONS}'"
            )
        )
    three = ("codes", "minutes_late", "entries")
    if set(three) <= have:
        slots = " || ".join(
            f"substr(codes, {slot * CODE_WIDTH + 1}, {CODE_WIDTH})"
            f" || substr(minutes_late, {slot * MINUTES_WIDTH + 1}, {MINUTES_WIDTH})"
            f" || substr(entries, {slot * ENTRY_WIDTH + 1}, {ENTRY_WIDTH})"
            for slot in range(SLOTS)
        )
        connection.execute(text(f"UPDATE registerweek SET sessions = {slots}"))
        connection.execute(text("DROP VIEW IF EXISTS registermark"))  # made again after
        for column in three:
            connection.execute(text(f"ALTER TABLE registerweek DROP COLUMN {column}"))
    have = {c["name"] for c in inspect(connection).get_columns("importbatch")}
    for column in ("first_day", "last_day"):
        if column not in have:
            connection.execute(text(f"ALTER TABLE importbatch ADD COLUMN {column} DATE"))


def _relation_kind(connection: Connection, name: str) -> str | None:
    inspector = inspect(connection)
    if name in inspector.get_view_names():
        return "view"
    return "table" if name in inspector.get_table_names() else None


def _move_marks_into_weeks(connection: Connection) -> None:
    """Move the marks of the old `registermark` table into the weekly register. Each
    distinct author and time of the old marks becomes an ImportBatch (kind `register`),
    the entry its marks point to; then the old table goes."""
    connection.execute(
        text(
            "INSERT INTO importbatch (school_id, kind, filename, sha256, imported_at,"
            " imported_by, rows, added, amended, unchanged, first_day, last_day)"
            " SELECT p.school_id, 'register', 'marks recorded before the weekly register',"
            " '', m.recorded_at, m.recorded_by, COUNT(*), COUNT(*), 0, 0, MIN(m.day),"
            " MAX(m.day)"
            " FROM registermark m JOIN pupil p ON p.id = m.pupil_id"
            " GROUP BY p.school_id, m.recorded_by, m.recorded_at"
        )
    )

    def padded(value: str, width: int, right: bool) -> str:
        """`value` padded to `width`, to the right for numbers."""
        if connection.dialect.name == "postgresql":
            return f"{'lpad' if right else 'rpad'}({value}, {width})"
        if right:
            return f"substr('{' ' * width}' || {value}, -{width}, {width})"
        return f"substr({value} || '{' ' * width}', 1, {width})"

    slot = (  # a mark's slot of `sessions`: code, minutes late, entry
        padded("m.code", CODE_WIDTH, right=False)
        + " || "
        + padded("COALESCE(CAST(m.minutes_late AS TEXT), '')", MINUTES_WIDTH, right=True)
        + " || "
        + padded("CAST(b.id AS TEXT)", ENTRY_WIDTH, right=True)
    )
    sessions = " || ".join(
        f"COALESCE(MAX(CASE WHEN m.slot = {n} THEN {slot} END), '{EMPTY_SESSION}')"
        for n in range(SLOTS)
    )
    connection.execute(
        text(
            "CREATE TEMPORARY TABLE moved_week AS"
            " SELECT m.pupil_id AS pupil_id, m.week_start AS week_start,"
            f" {sessions} AS sessions"
            " FROM registermark m JOIN pupil p ON p.id = m.pupil_id"
            " JOIN importbatch b ON b.kind = 'register' AND b.school_id = p.school_id"
            " AND b.imported_by = m.recorded_by AND b.imported_at = m.recorded_at"
            " GROUP BY m.week_start, m.pupil_id"
        )
    )
    connection.execute(
        text(
            "UPDATE registerweek SET sessions = moved_week.sessions"
            " FROM moved_week WHERE registerweek.pupil_id = moved_week.pupil_id"
            " AND registerweek.week_start = moved_week.week_start"
        )
    )
    connection.execute(text("DROP TABLE moved_week"))
    connection.execute(text("DROP TABLE registermark"))
    if (
        connection.dialect.name == "sqlite"
        and connection.execute(
            text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
        ).first()
    ):  # the old table's index statistics
        connection.execute(text("DELETE FROM sqlite_stat1 WHERE tbl = 'registermark'"))


def driver_rows(connection: Connection, statement: Executable, **params) -> list[tuple]:
    """Run a module-level statement on the driver's own cursor, in the connection's
    transaction; rows come back as the driver gives them (SQLite: a date as text). For
    reads made once per file of a local authority's day, where SQLAlchemy's work per
    statement and per row costs more than the index look-ups themselves."""
    sql, order = _compiled(statement, connection.dialect)
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, params if order is None else tuple(params[key] for key in order))
        return cursor.fetchall()
    finally:
        cursor.close()


@lru_cache(maxsize=64)
def _compiled(statement: Executable, dialect: Dialect) -> tuple[str, tuple | None]:
    """The statement in the driver's parameter style, and for a positional style the
    names of its parameters in order."""
    compiled = statement.compile(dialect=dialect)
    return compiled.string, tuple(compiled.positiontup) if compiled.positional else None


def session_factory(engine: Engine) -> SessionFactory:
    def new_session() -> Session:
        return Session(engine, expire_on_commit=False)

    return new_session


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: everything commits together or nothing does."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
