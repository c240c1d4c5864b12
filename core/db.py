"""Database engine and sessions (SQLAlchemy 2): SQLite in WAL mode by default, PostgreSQL by URL.

The schema is owned by the Alembic migrations in ``core/migrations``; ``migrate`` brings any
database to the latest revision at start-up, so a fresh data directory just works.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, Dialect, Engine, TypeDecorator, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from .settings import Settings

log = logging.getLogger("sasformer.db")
T = TypeVar("T")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores no offset; PostgreSQL does)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    connect_args: dict[str, str] = {}
    schema = settings.database_schema
    if schema:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
            raise ValueError(f"database_schema must be a plain SQL identifier, got {schema!r}")
        connect_args["options"] = f"-csearch_path={schema}"
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, connect_args=connect_args)
    if schema:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return engine


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """SQLite: one process migrates at a time (an exclusive lock on a file beside the database).

    Why: ``serve.sh`` starts the API and the embedded worker together on a fresh data directory, and both
    migrate; Python's sqlite3 runs each ``CREATE TABLE`` outside a transaction, so without a lock the
    second process fails with "table projects already exists". The second waits, then finds the head.
    """
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        yield
        return
    import fcntl

    with open(f"{path}.migrate-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest Alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _sqlite_migration_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # API and workers may start together on an empty database: one migrates, the others wait
            # for its transaction (the lock is released at commit) and then find nothing to do.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(724201)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the session's current transaction has committed (never if it rolls back).

    For work that must see the committed rows and must not hold the transaction open: queueing a job
    after a label save, refitting a live head. A failing ``fn`` is logged; the commit stands.
    """
    session.info.setdefault("after_commit", []).append(fn)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for fn in session.info.pop("after_commit", []):
        try:
            fn()
        except Exception:
            log.exception("after-commit hook %r failed", fn)


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# Messages of errors that a later attempt of the same transaction can get past: SQLite's write lock held
# by another process past the busy timeout, a PostgreSQL server restarting or a dropped connection.
_TRANSIENT = ("database is locked", "database is busy", "database table is locked", "could not connect",
              "server closed the connection", "terminating connection", "connection refused",
              "the database system is starting up", "the database system is shutting down")


def is_transient(e: BaseException) -> bool:
    """Whether ``e`` is a database error worth retrying (the transaction was rolled back, nothing is lost)."""
    if isinstance(e, DBAPIError) and e.connection_invalidated:
        return True
    return isinstance(e, OperationalError) and any(m in str(e.orig).lower() for m in _TRANSIENT)


def transact(factory: sessionmaker[Session], work: Callable[[Session], T], retry_s: float, what: str) -> T:
    """Run ``work`` in one unit of work, again (backing off) while the database is busy, for ``retry_s``.

    For the worker's writes that must not be dropped: a claim that fails leaves a delivered job queued
    with no broker message left to run it. ``work`` must only touch the database (it may run twice).
    """
    deadline = time.monotonic() + retry_s
    delay = 0.25
    while True:
        try:
            with session_scope(factory) as session:
                return work(session)
        except DBAPIError as e:
            if not is_transient(e) or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: database busy (%s); retrying in %.2f s", what, str(e.orig).strip(), delay)
            time.sleep(delay)
            delay = min(2 * delay, 5.0)
