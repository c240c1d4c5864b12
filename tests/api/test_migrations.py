"""The Alembic migrations create exactly the tables the ORM declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from core import orm  # noqa: F401
from core.db import Base, migrate


def test_schema_matches_models(client: TestClient) -> None:
    engine = client.app.state.ctx.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        assert MigrationContext.configure(conn).get_current_revision() == "0002"
    assert {"projects", "images", "annotation_revisions", "model_versions", "activations", "jobs"} <= set(
        inspect(engine).get_table_names())
    migrate(engine)  # idempotent


def test_sqlite_uses_wal(client: TestClient) -> None:
    engine = client.app.state.ctx.engine  # type: ignore[attr-defined]
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_concurrent_migrations_on_postgresql(tmp_path) -> None:  # noqa: ANN001
    """API and workers starting together on an empty database: every migrate succeeds, tables exist once."""
    import threading
    import uuid

    from sqlalchemy import text

    from core.db import make_engine
    from core.settings import Settings

    schema = f"mig_{uuid.uuid4().hex[:10]}"
    from .conftest import PG_URL

    settings = Settings(home=tmp_path, database_url=PG_URL, database_schema=schema)
    try:
        engines = [make_engine(settings) for _ in range(3)]
    except Exception as e:  # noqa: BLE001 - no server: the PostgreSQL suite is skipped likewise
        pytest.skip(f"PostgreSQL not reachable: {e}")
    errors: list[BaseException] = []

    def run(engine) -> None:  # noqa: ANN001
        try:
            migrate(engine)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        assert "jobs" in inspect(engines[0]).get_table_names()
    finally:
        with engines[0].begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        for e in engines:
            e.dispose()


def test_sqlite_migrations_take_turns(tmp_path) -> None:  # noqa: ANN001
    """``serve.sh`` starts the API and the embedded worker together on a fresh data directory, and sqlite3
    runs DDL outside transactions, so two migrating processes collided ("table projects already exists",
    seen in a fresh-clone serve). Migrations now take an exclusive lock on a file beside the database: while
    another process holds it, a migrating process waits and writes nothing; once it is free, it migrates."""
    import fcntl
    import os
    import subprocess
    import sys
    import time

    from sqlalchemy import create_engine

    code = ("import sys; from core.db import make_engine, migrate; from core.settings import Settings; "
            "migrate(make_engine(Settings(home=sys.argv[1], _env_file=None)))")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SASFORMER_DATABASE_URL")}
    db = tmp_path / "db.sqlite"
    with open(f"{db}.migrate-lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process is migrating
        proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env, stderr=subprocess.PIPE)
        time.sleep(8)  # time to import and reach the lock
        assert proc.poll() is None, proc.communicate()[1].decode()[-500:]
        assert "projects" not in inspect(create_engine(f"sqlite:///{db}")).get_table_names()
        fcntl.flock(held, fcntl.LOCK_UN)
    assert proc.wait(timeout=120) == 0, proc.communicate()[1].decode()[-500:]
    assert "jobs" in inspect(create_engine(f"sqlite:///{db}")).get_table_names()
