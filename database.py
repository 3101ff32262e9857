"""The SQL engine and sessions. SQLite by default, PostgreSQL by DATABASE_URL."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, SQLModel, create_engine

import models.tables  # noqa: F401  (registers the tables)
from figures.register_week import packed_counts_sql

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

    SQLModel.metadata.create_all(engine)
    with engine.begin() as connection:
        _add_packed_week_counts(connection)
        if engine.dialect.name == "sqlite":
            _sqlite_index_stats(connection)
        elif engine.dialect.name == "postgresql":
            connection.execute(
                text(
                    "CREATE INDEX IF NOT EXISTS ix_registermark_pupil_day "
                    "ON registermark (pupil_id, day)"
                )
            )
    return engine


def _add_packed_week_counts(connection: Connection) -> None:
    """A database made before RegisterWeek.counts existed gets it, filled from each week's
    own count columns."""
    if "counts" in {c["name"] for c in inspect(connection).get_columns("registerweek")}:
        return
    connection.execute(text("ALTER TABLE registerweek ADD COLUMN counts BIGINT NOT NULL DEFAULT 0"))
    connection.execute(text(f"UPDATE registerweek SET counts = {packed_counts_sql()}"))


# What SQLite's planner is told about indexes whose statistics ANALYZE has not measured
# yet: as ANALYZE writes them (rows; then rows per distinct value of the first column, of
# the first two, ...), for a register of a million marks. With them it finds a pupil's
# marks through registermark's week-led unique index by skipping from week to week
# (https://sqlite.org/optoverview.html#skipscan) rather than reading the whole table; a
# later ANALYZE replaces them with measured figures, which lead to the same plans.
SQLITE_INDEX_STATS = {
    ("registermark", "ux_registermark_week"): "1000000 25000 10 2 1",
}


def _sqlite_index_stats(connection: Connection) -> None:
    """Give SQLite the statistics in SQLITE_INDEX_STATS of any index that has none."""
    have_stats = connection.execute(
        text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'")
    ).first()
    if not have_stats:
        connection.execute(text("ANALYZE sqlite_schema"))  # creates sqlite_stat1, cheaply
    known = set(connection.execute(text("SELECT tbl, idx FROM sqlite_stat1")).all())
    missing = [key for key in SQLITE_INDEX_STATS if key not in known]
    for table, index in missing:
        connection.execute(
            text("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (:tbl, :idx, :stat)"),
            {"tbl": table, "idx": index, "stat": SQLITE_INDEX_STATS[table, index]},
        )
    if missing:
        connection.execute(text("ANALYZE sqlite_schema"))  # this connection reads them too


def session_factory(engine: Engine) -> SessionFactory:
    def new_session() -> Session:
        return Session(engine, expire_on_commit=False)

    return new_session


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: everything commits together or nothing does."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        yield session
