"""Alembic: migrations and models agree (`alembic check`), on Postgres and SQLite, up and down."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from service.db import alembic_config, create_db_engine, upgrade_db
from tests.service.helpers import fresh_database


def test_models_match_migrations_on_postgres(pg_url: str) -> None:
    command.check(alembic_config(pg_url))  # raises if autogenerate would produce any operation


def test_upgrade_check_downgrade_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    upgrade_db(url)
    command.check(alembic_config(url))
    command.downgrade(alembic_config(url), "base")
    engine = create_db_engine(url)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    engine.dispose()
    upgrade_db(url)


def test_downgrade_and_upgrade_again_on_postgres(pg_url: str) -> None:
    with fresh_database("hwgrade_test_mig") as url:
        command.downgrade(alembic_config(url), "base")
        upgrade_db(url)
        engine = create_db_engine(url)
        assert {"user", "assignment", "submission", "result"} <= set(inspect(engine).get_table_names())
        engine.dispose()


def test_one_linear_history() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


def test_existing_assignments_get_a_random_board_tag_each(tmp_path: Path) -> None:
    """0006 adds assignment.board_tag: rows already there get distinct random tags, not a shared 0
    that a cache could take for another database's."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    command.upgrade(alembic_config(url), "0005")
    engine = create_db_engine(url)
    with engine.begin() as conn:
        for slug in ("a", "b", "c"):
            conn.execute(
                text(
                    "INSERT INTO assignment (slug, title, title_zh, kind, spec, daily_limit, pass_threshold,"
                    " queue, late_policy, created_at, updated_at)"
                    " VALUES (:slug, 't', '', 'functions', '{}', 10, 0.5, 'grading', 'accept_marked',"
                    " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                ),
                {"slug": slug},
            )
    upgrade_db(url)
    with engine.connect() as conn:
        tags = [t for (t,) in conn.execute(text("SELECT board_tag FROM assignment"))]
    engine.dispose()
    assert len(set(tags)) == 3 and 0 not in tags


def test_a_function_assignments_stored_lower_pass_mark_goes_back_to_every_check(tmp_path: Path) -> None:
    """0008: a lower mark on a function assignment was shown as its pass line and passed nobody."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    command.upgrade(alembic_config(url), "0007")
    engine = create_db_engine(url)
    with engine.begin() as conn:
        for slug, kind, mark in (
            ("act", "activations", 0.9),
            ("bp", "backprop", 1.0),
            ("pp", "phone-price", 0.9),
        ):
            conn.execute(
                text(
                    "INSERT INTO assignment (slug, title, title_zh, kind, spec, daily_limit, pass_threshold,"
                    " queue, late_policy, created_at, updated_at, board_tag)"
                    " VALUES (:slug, 't', '', :kind, '{}', 10, :mark, 'grading', 'accept_marked',"
                    " '2026-01-01 00:00:00', '2026-01-01 00:00:00', 1)"
                ),
                {"slug": slug, "kind": kind, "mark": mark},
            )
    upgrade_db(url)
    with engine.connect() as conn:
        marks = dict(conn.execute(text("SELECT slug, pass_threshold FROM assignment")).all())
    engine.dispose()
    assert marks == {"act": 1.0, "bp": 1.0, "pp": 0.9}  # a model assignment keeps its own


def test_healthz_fails_until_the_database_is_at_the_codes_head(pg_url: str, tmp_path: Path) -> None:
    # It said 200 on a database never migrated, while every request then failed on a missing table.
    from fastapi.testclient import TestClient

    from service.config import Settings
    from service.db import schema_head
    from service.main import create_app

    head = schema_head()
    previous = ScriptDirectory.from_config(alembic_config(pg_url)).get_revision(head).down_revision
    assert isinstance(previous, str)
    with fresh_database("hwgrade_test_health", migrate=False) as url:
        settings = Settings(env="test", home=tmp_path, database_url=url, broker_url="memory://")
        app = create_app(settings)
        with TestClient(app) as client:
            empty = client.get("/healthz")
            assert empty.status_code == 503 and empty.json()["status"] == "schema_outdated"
            assert (
                "run `hwgrade db upgrade`" in empty.json()["detail"]
                and "hwgrade db upgrade" in empty.json()["detail_zh"]
            )
            upgrade_db(url, previous)
            behind = client.get("/healthz").json()
            assert f"revision {previous}, this code expects {head}" in behind["detail"]
            upgrade_db(url)
            ok = client.get("/healthz")
            assert ok.status_code == 200 and ok.json()["status"] == "ok"
        app.state.session_factory.kw["bind"].dispose()
