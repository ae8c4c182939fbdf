"""Service settings: one `Settings` object, read from `HWGRADE_*` environment variables.

With no environment at all the service runs embedded: SQLite, a filesystem broker and storage, all
under `HWGRADE_HOME` (default `./var`). Production sets `HWGRADE_ENV=prod`, a Postgres URL, a Redis
broker and a real secret; the defaults are refused there.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "dev-insecure-secret-change-me"
# How long the API keeps an idle keep-alive connection open (uvicorn's --timeout-keep-alive; compose
# and the README's command pass the same). uvicorn's own default, 5 s, is what httpx's pool keeps an
# idle connection for, too: a client that sends on a connection the server is closing at that moment
# gets "Server disconnected without sending a response" (seen under load in bench/api_load). Longer
# than the idle time of common clients' pools (httpx 5 s, aiohttp 15 s) and of proxies' upstream
# pools (nginx 60 s), so that they close first.
API_KEEP_ALIVE_S = 75

Device = Literal["auto", "cpu", "cuda"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HWGRADE_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    home: Path = Path("var")
    # Derived from `home` when unset (embedded mode).
    database_url: str = ""
    broker_url: str = ""
    storage_dir: Path | None = None
    # Hidden test sets (see grader.datasets); None lets the grader use its embedded defaults.
    data_dir: Path | None = None
    secret_key: SecretStr = SecretStr(DEFAULT_SECRET)

    # Database connections each API process keeps open. A burst of requests beyond pool + overflow waits
    # for a connection; overflow connections are closed when returned, so a pool smaller than the usual
    # concurrency means a Postgres backend started and ended per request. The default (2 API processes
    # x 20) stays well under Postgres's default max_connections = 100 with the workers' connections.
    db_pool_size: int = Field(default=16, ge=1)
    db_max_overflow: int = Field(default=4, ge=0)

    max_upload_mb: float = Field(default=50.0, gt=0)
    # Submissions per student, assignment and calendar day in `day_timezone`.
    day_timezone: str = "Asia/Shanghai"
    # On leaderboards students see their own name and a stable pseudonym for everyone else.
    pseudonyms: bool = True

    device: Device = "auto"
    # A running grading holds a lease, renewed lease_s / 3 to lease_s / 2 after the last renewal (see
    # service.submissions.tasks.LeaseKeeper); a dead worker's lease runs out.
    lease_s: float = Field(default=60.0, gt=0)
    # A queued submission whose wake-up is older than this gets a new one (the broker may have lost it).
    requeue_after_s: float = Field(default=300.0, gt=0)
    sweep_interval_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    task_soft_time_limit_s: float = Field(default=600.0, gt=0)
    task_time_limit_s: float = Field(default=660.0, gt=0)
    # How long a request waits for the broker before accepting the upload anyway (the sweeper
    # sends the wake-up later).
    broker_publish_timeout_s: float = Field(default=2.0, gt=0)

    @model_validator(mode="after")
    def _derive_and_check(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'hwgrade.sqlite3'}"
        if not self.broker_url:
            self.broker_url = "filesystem://localhost/"
        if self.storage_dir is None:
            self.storage_dir = self.home / "submissions"
        if self.task_time_limit_s <= self.task_soft_time_limit_s:
            raise ValueError("HWGRADE_TASK_TIME_LIMIT_S must be greater than HWGRADE_TASK_SOFT_TIME_LIMIT_S")
        ZoneInfo(self.day_timezone)  # fails early on a typo
        if self.env == "prod":
            problems = []
            if self.secret_key.get_secret_value() == DEFAULT_SECRET:
                problems.append("HWGRADE_SECRET_KEY is the development default")
            if self.is_sqlite:
                problems.append("HWGRADE_DATABASE_URL must point at Postgres")
            if self.broker_url.startswith("filesystem"):
                problems.append("HWGRADE_BROKER_URL must point at Redis")
            if problems:
                raise ValueError("refusing to run with HWGRADE_ENV=prod: " + "; ".join(problems))
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def blob_dir(self) -> Path:
        assert self.storage_dir is not None
        return self.storage_dir

    @property
    def broker_dir(self) -> Path:
        return self.home / "broker"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.day_timezone)

    def as_env(self) -> dict[str, str]:
        """These settings as HWGRADE_* variables, for processes this one starts (the embedded worker)."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"HWGRADE_{name.upper()}"] = str(value)
        return env

    def prepare_dirs(self) -> None:
        """Create the local directories these settings point at."""
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        if self.is_sqlite:
            self.home.mkdir(parents=True, exist_ok=True)
        if self.broker_url.startswith("filesystem"):
            for sub in ("queue", "processed", "control"):
                (self.broker_dir / sub).mkdir(parents=True, exist_ok=True)


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()


def settings_summary(settings: Settings) -> dict[str, Any]:
    """Settings safe to print (no secrets, no passwords in URLs)."""
    from kombu.utils.url import maybe_sanitize_url
    from sqlalchemy.engine import make_url

    return {
        "env": settings.env,
        "database": make_url(settings.database_url).render_as_string(hide_password=True),
        "broker": maybe_sanitize_url(settings.broker_url),
        "storage": str(settings.storage_dir),
        "data": str(settings.data_dir) if settings.data_dir else "(grader defaults)",
        "device": settings.device,
    }
