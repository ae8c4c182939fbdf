"""Requests that only read (GET, HEAD) get a read-only session: autocommit on Postgres (no BEGIN and
COMMIT round trips), and any write in one is refused as the bug it is."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.db import WriteInReadOnlySession, create_session_factory, read_only_factory, unit_of_work
from service.deps import SessionDep
from service.users.models import Role, User
from tests.service.factories import create_user

IDLE, INTRANS = psycopg.pq.TransactionStatus.IDLE, psycopg.pq.TransactionStatus.INTRANS


def _dbapi(session: Session) -> psycopg.Connection:
    conn = session.connection().connection.dbapi_connection
    assert isinstance(conn, psycopg.Connection)
    return conn


@pytest.fixture
def one_connection(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A factory on an engine of its own with a pool of one connection: every session reuses it."""
    from service.db import create_db_engine

    single = create_db_engine(engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0)
    yield create_session_factory(single)
    single.dispose()


def test_reads_run_in_autocommit_and_the_connection_goes_back_transactional(
    one_connection: sessionmaker[Session],
) -> None:
    read = read_only_factory(one_connection)
    with unit_of_work(read) as session:
        assert session.scalar(select(func.count()).select_from(User)) is not None
        conn = _dbapi(session)
        assert conn.autocommit and conn.info.transaction_status == IDLE  # no transaction was opened
    with unit_of_work(one_connection) as session:
        session.scalar(select(func.count()).select_from(User))
        # The same connection, back from the pool, runs the next writer in a transaction again.
        assert _dbapi(session) is conn
        assert not conn.autocommit and conn.info.transaction_status == INTRANS


def test_a_read_session_refuses_to_write_and_writes_nothing(one_connection: sessionmaker[Session]) -> None:
    read = read_only_factory(one_connection)
    with pytest.raises(WriteInReadOnlySession), unit_of_work(read) as session:
        session.add(User(student_number="ro-1", display_name="x", role=Role.student, token_hash="ro-1"))
        session.flush()
    with pytest.raises(WriteInReadOnlySession), unit_of_work(read) as session:
        session.execute(update(User).where(User.student_number == "nobody").values(display_name="y"))
    with unit_of_work(one_connection) as session:
        assert session.scalar(select(User).where(User.student_number == "ro-1")) is None


def test_get_requests_get_the_read_only_session_and_posts_the_writing_one(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    user, _ = create_user(db)

    def rename(session: SessionDep) -> dict[str, str]:
        session.execute(update(User).where(User.id == user.id).values(display_name="renamed"))
        return {"ok": "yes"}

    app.add_api_route("/_test/rename", rename, methods=["GET", "POST"])
    assert client.post("/_test/rename").json() == {"ok": "yes"}
    with pytest.raises(WriteInReadOnlySession):
        client.get("/_test/rename")


def test_a_read_session_is_closed_on_the_event_loop_and_a_writing_one_in_the_thread_pool(
    app: FastAPI, client: TestClient, db: Session
) -> None:
    # Closing a read-only session does no I/O, so it skips the trip through the thread pool; a
    # writing request's commit may block, so it takes it.
    ended: list[str] = []

    def record(*_: object) -> None:
        ended.append(threading.current_thread().name)

    def touch(session: SessionDep) -> dict[str, int]:
        return {"users": int(session.scalar(select(func.count()).select_from(User)) or 0)}

    app.add_api_route("/_test/touch", touch, methods=["GET", "POST"])
    event.listen(app.state.read_session_factory, "after_transaction_end", record)
    event.listen(app.state.session_factory, "after_transaction_end", record)
    try:
        assert client.get("/_test/touch").status_code == 200
        read_threads, ended[:] = list(ended), []
        assert client.post("/_test/touch").status_code == 200
        write_threads = list(ended)
    finally:
        event.remove(app.state.read_session_factory, "after_transaction_end", record)
        event.remove(app.state.session_factory, "after_transaction_end", record)
    assert read_threads and not any(name.startswith("AnyIO worker") for name in read_threads), read_threads
    assert write_threads and all(name.startswith("AnyIO worker") for name in write_threads), write_threads
