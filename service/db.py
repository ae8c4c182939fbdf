"""Database plumbing: the declarative Base, engines, sessions and the unit-of-work helper."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic.config import Config as AlembicConfig
from fastapi import Request
from fastapi.concurrency import contextmanager_in_threadpool
from sqlalchemy import JSON, DateTime, Dialect, MetaData, create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The id columns are INTEGER: int4 in Postgres, where a larger value bound to them is an error
# ("integer out of range"), not a row that does not exist. Ids from a URL are checked against it.
ID_MAX = 2**31 - 1


def is_row_id(n: int) -> bool:
    """Whether `n` could be the id of a row (1..ID_MAX); any other is an id that does not exist."""
    return 0 < n <= ID_MAX


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the offset, this restores it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use service.db.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def create_db_engine(url: str, **kw: Any) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout (API and worker share it)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kw)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **kw)


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the current unit of work has committed (never if it rolls back)."""
    session.info.setdefault("after_commit", []).append(callback)


def run_after_commit(session: Session) -> None:
    callbacks: list[Callable[[], None]] = session.info.pop("after_commit", [])
    for callback in callbacks:
        callback()


@contextmanager
def unit_of_work(factory: Callable[[], Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error, then run the after-commit callbacks."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            session.info.pop("after_commit", None)
            raise
        run_after_commit(session)


READ_METHODS = frozenset({"GET", "HEAD"})


class WriteInReadOnlySession(RuntimeError):
    """A request that only reads (GET, HEAD) tried to write: a bug in the endpoint, never the user's."""


def _refuse_dml(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise WriteInReadOnlySession(f"a GET or HEAD request may not write: {state.statement}")


def _refuse_flush(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise WriteInReadOnlySession("a GET or HEAD request may not write (the session has changes to flush)")


def read_only_factory(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions for requests that only read (READ_METHODS), which refuse to write. On Postgres each
    statement runs in autocommit instead of one transaction per request: a read is then the pool's
    ping and its SELECTs, without BEGIN and COMMIT (two of the ~5 round trips of a GET). The reads of
    one request may see different snapshots; each of them is consistent, and none writes."""
    bind = factory.kw.get("bind")
    kw = dict(factory.kw)
    if isinstance(bind, Engine) and bind.dialect.name == "postgresql":
        kw["bind"] = bind.execution_options(isolation_level="AUTOCOMMIT")
    read: sessionmaker[Session] = sessionmaker(**kw)
    event.listen(read, "do_orm_execute", _refuse_dml)
    event.listen(read, "before_flush", _refuse_flush)
    return read


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session: a request that writes is one transaction (see deps.SessionDep); one
    that only reads (GET, HEAD) gets a read-only session (read_only_factory).

    A read-only session is opened and closed here, on the event loop, instead of in two trips through
    the thread pool (~150 us of CPU each on a slow 2-core machine): neither does any I/O. The session
    checks out its connection at its first query, in the endpoint's thread; its commit and the pool's
    reset on return have no transaction to end (autocommit on Postgres; on SQLite a read opens none).
    A writing request's session commits in the thread pool."""
    state = request.app.state
    if request.method in READ_METHODS:
        with unit_of_work(state.read_session_factory) as session:
            yield session
        return
    async with contextmanager_in_threadpool(unit_of_work(state.session_factory)) as session:
        yield session


MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> AlembicConfig:
    """Alembic's config, built in code (the repository keeps no alembic.ini): migrations/ + this URL."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade_db(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision` (what `hwgrade db upgrade` runs)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


@functools.cache
def schema_head() -> str:
    """The revision the code expects: the head of migrations/ (read once per process)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("")).get_current_head() or ""


def schema_problem(session: Session) -> tuple[str, str] | None:
    """Why the database's schema is not the one this code expects, in English and Chinese (None if it
    is): never migrated, or at another revision than migrations/ head (an upgrade not run after a
    deploy, or a database newer than the code)."""
    if not inspect(session.connection()).has_table("alembic_version"):
        return (
            "The database has no schema yet: run `hwgrade db upgrade`.",
            "数据库还没有建表：请运行 `hwgrade db upgrade`。",
        )
    current = session.scalar(text("SELECT version_num FROM alembic_version")) or "none"
    head = schema_head()
    if current == head:
        return None
    return (
        f"The database is at schema revision {current}, this code expects {head}: run `hwgrade db upgrade` "
        "(or deploy the code that matches the database).",
        f"数据库的结构版本是 {current}，而当前代码需要 {head}：请运行 `hwgrade db upgrade`（或部署与数据库一致的代码）。",
    )
