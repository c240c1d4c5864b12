"""Alembic environment: runs on the connection handed over by ``core.db.migrate`` or, from the
``alembic`` CLI, on the database of ``core.settings.Settings`` (DATABASE_URL / SASFORMER_HOME)."""

from __future__ import annotations

from alembic import context

from core import orm  # noqa: F401  (registers the tables on Base.metadata)
from core.db import Base, make_engine
from core.settings import Settings

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(Settings())
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
