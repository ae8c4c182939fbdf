"""Service fixtures: a private Postgres database per test session, each test in a rolled-back
transaction, the API in-process with a broker that needs no server (kombu's in-memory transport)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from service.cli import main
from service.config import Settings, get_settings
from service.db import create_db_engine
from service.main import create_app
from service.worker import QUEUES, create_celery
from tests.service.helpers import fresh_database, pg_available


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A migrated database of our own on the shared Postgres (others test there at the same time)."""
    if not pg_available():
        pytest.skip("Postgres at 127.0.0.1:5432 is not reachable")
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def engine(pg_url: str) -> Iterator[Engine]:
    engine = create_db_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions inside one outer transaction that is rolled back after the test; their commits
    only release savepoints."""
    with engine.connect() as conn:
        outer = conn.begin()
        yield sessionmaker(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
        outer.rollback()


@pytest.fixture
def db(db_factory: sessionmaker[Session]) -> Iterator[Session]:
    with db_factory() as session:
        yield session


@pytest.fixture
def settings(tmp_path: Path, pg_url: str) -> Settings:
    return Settings(
        env="test",
        home=tmp_path / "home",
        database_url=pg_url,
        broker_url="memory://",
        max_upload_mb=1,
        device="cpu",
    )


@pytest.fixture
def celery_producer(settings: Settings) -> Celery:
    """The API's Celery app on kombu's in-memory transport (process-global: emptied first)."""
    celery = create_celery(settings)
    with celery.connection_for_write() as conn:
        for queue in QUEUES:
            conn.default_channel.queue_purge(queue)
    return celery


@pytest.fixture
def app(settings: Settings, db_factory: sessionmaker[Session], celery_producer: Celery) -> FastAPI:
    return create_app(settings, session_factory=db_factory, celery=celery_producer)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# What the test transaction's savepoints add (see db_factory): a read session bound to an Engine
# runs in autocommit and ends with no statement at all.
_SAVEPOINT_STATEMENTS = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


@pytest.fixture
def client(app: FastAPI, engine: Engine) -> Iterator[TestClient]:
    """The app in-process; a test fails if a request ran SQL on the event loop, where a query would
    stall every other request of the process (queries belong in `def` dependencies and endpoints,
    which FastAPI runs in its thread pool; see service/deps.py)."""
    on_loop: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if _on_event_loop() and not statement.lstrip().upper().startswith(_SAVEPOINT_STATEMENTS):
            on_loop.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert not on_loop, f"SQL ran on the event loop: {on_loop[:3]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Lets fixtures see whether the test failed (to print the logs of the processes it started).
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """HWGRADE_* for the embedded default (SQLite, the folder broker) in a fresh, migrated home, for
    the `hwgrade` command run in-process."""
    monkeypatch.setenv("HWGRADE_HOME", str(tmp_path))
    monkeypatch.setenv("HWGRADE_DEVICE", "cpu")
    monkeypatch.delenv("HWGRADE_DATABASE_URL", raising=False)
    monkeypatch.delenv("HWGRADE_DATA_DIR", raising=False)
    monkeypatch.delenv("HWGRADE_BROKER_URL", raising=False)  # the embedded default's folder broker
    get_settings.cache_clear()
    assert main(["db", "upgrade"]) == 0
    yield tmp_path
    get_settings.cache_clear()
