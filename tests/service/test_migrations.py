"""Alembic: migrations and models agree (`alembic check`), on Postgres and SQLite, up and down."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

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
