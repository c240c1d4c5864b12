"""``core.db.transact``: the worker's must-not-drop writes wait out a busy database, and only that.

A second connection holds SQLite's write lock (``BEGIN IMMEDIATE``) the way another process does on a
loaded machine; the engine under test has a 0.1 s busy timeout so the lock error comes at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from core.db import is_transient, make_sessionmaker, transact


@pytest.fixture()
def db(tmp_path: Path) -> Engine:
    path = tmp_path / "t.sqlite"
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    return create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})


def hold_write_lock(engine: Engine, seconds: float) -> threading.Thread:
    """Take the database's write lock from another connection for ``seconds`` (returns once it is held)."""
    held = threading.Event()

    def run() -> None:
        c = sqlite3.connect(engine.url.database or "", isolation_level=None)
        c.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        c.execute("COMMIT")
        c.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert held.wait(5)
    return t


def insert(s: Session) -> int:
    s.execute(text("INSERT INTO t (v) VALUES ('x')"))
    return int(s.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_waits_out_a_held_write_lock(db: Engine) -> None:
    holder = hold_write_lock(db, 1.0)
    t0 = time.monotonic()
    assert transact(make_sessionmaker(db), insert, retry_s=20, what="test") == 1
    assert time.monotonic() - t0 >= 0.8  # it did wait for the lock
    holder.join()


def test_gives_up_after_retry_s_with_the_database_error(db: Engine) -> None:
    holder = hold_write_lock(db, 2.0)
    t0 = time.monotonic()
    with pytest.raises(OperationalError, match="locked"):
        transact(make_sessionmaker(db), insert, retry_s=0.5, what="test")
    assert time.monotonic() - t0 < 1.9
    holder.join()
    with db.connect() as c:  # the failed attempts were rolled back: nothing half-written
        assert c.execute(text("SELECT count(*) FROM t")).scalar_one() == 0


def test_does_not_retry_errors_that_would_fail_again(db: Engine) -> None:
    calls = []

    def duplicate(s: Session) -> None:
        calls.append(1)
        s.execute(text("INSERT INTO t (id, v) VALUES (1, 'a')"))
        s.execute(text("INSERT INTO t (id, v) VALUES (1, 'b')"))

    with pytest.raises(IntegrityError):
        transact(make_sessionmaker(db), duplicate, retry_s=20, what="test")
    assert calls == [1]


def test_transient_classification(db: Engine) -> None:
    holder = hold_write_lock(db, 0.5)
    with pytest.raises(OperationalError) as locked, db.begin() as c:
        c.execute(text("INSERT INTO t (v) VALUES ('x')"))
    holder.join()
    assert is_transient(locked.value)
    with pytest.raises(OperationalError) as missing, db.connect() as c:
        c.execute(text("SELECT * FROM no_such_table"))
    assert not is_transient(missing.value)


def test_after_commit_runs_once_after_commit_and_never_after_rollback(db: Engine) -> None:
    from core.db import after_commit, session_scope

    sessions = make_sessionmaker(db)
    seen: list[str] = []
    with session_scope(sessions) as s:
        s.execute(text("INSERT INTO t (v) VALUES ('a')"))
        after_commit(s, lambda: seen.append(str(s.bind.connect().execute(text("SELECT v FROM t")).scalar())))
        assert seen == []  # not before the commit
    assert seen == ["a"]  # after it, and the row is visible to another connection
    with pytest.raises(RuntimeError), session_scope(sessions) as s:
        after_commit(s, lambda: seen.append("rolled back"))
        raise RuntimeError("the request failed")
    with session_scope(sessions) as s:  # a later commit of the same factory does not run the dropped hook
        s.execute(text("INSERT INTO t (v) VALUES ('b')"))
    with session_scope(sessions) as s:
        after_commit(s, lambda: 1 / 0)  # a failing hook is logged; the commit stands
        s.execute(text("INSERT INTO t (v) VALUES ('c')"))
    assert seen == ["a"] and db.connect().execute(text("SELECT count(*) FROM t")).scalar() == 3
