from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from service.config import Settings


def test_embedded_defaults_live_under_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    assert s.database_url == f"sqlite:///{tmp_path / 'hwgrade.sqlite3'}"
    assert s.broker_url == "filesystem://localhost/"
    assert s.storage_dir == tmp_path / "submissions"
    assert s.data_dir is None


def test_env_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HWGRADE_HOME", str(tmp_path))
    monkeypatch.setenv("HWGRADE_MAX_UPLOAD_MB", "5")
    monkeypatch.setenv("HWGRADE_DEVICE", "cuda")
    s = Settings()
    assert s.home == tmp_path and s.max_upload_bytes == 5 * 1024 * 1024 and s.device == "cuda"


def test_prod_refuses_default_secret_and_embedded_backends() -> None:
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(env="prod", database_url="postgresql+psycopg://u:p@db/hw", broker_url="redis://r:6379/0")
    with pytest.raises(ValidationError, match="Postgres"):
        Settings(env="prod", secret_key=SecretStr("s3cret-from-the-vault"))
    ok = Settings(
        env="prod",
        secret_key=SecretStr("s3cret-from-the-vault"),
        database_url="postgresql+psycopg://u:p@db/hw",
        broker_url="redis://r:6379/0",
    )
    assert ok.env == "prod"


def test_time_limits_must_be_ordered() -> None:
    with pytest.raises(ValidationError):
        Settings(task_soft_time_limit_s=100, task_time_limit_s=50)


def test_as_env_round_trips(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, lease_s=7, secret_key=SecretStr("abc"))
    env = s.as_env()
    assert env["HWGRADE_LEASE_S"] == "7.0" and env["HWGRADE_SECRET_KEY"] == "abc"
    assert "HWGRADE_DATA_DIR" not in env


def test_summary_hides_passwords() -> None:
    from service.config import settings_summary

    s = Settings(database_url="postgresql+psycopg://hw:pw1@db/hw", broker_url="redis://:pw2@redis:6379/0")
    text = str(settings_summary(s))
    assert "pw1" not in text and "pw2" not in text and "redis:6379" in text
