"""End to end against the real Postgres and a real Redis: upload over HTTP, a Celery worker process
grades with the real grader, the result lands in Postgres exactly once, whatever dies on the way.

Each test gets its own database and its own redis-server (never the shared one on 6379)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from grader.assignments import BUILTIN_ASSIGNMENTS
from reference.examples import EXAMPLES_DIR, zip_folder
from service.assignments.service import sync_specs
from service.config import API_KEEP_ALIVE_S, Settings
from service.db import create_db_engine, create_session_factory, unit_of_work
from service.main import create_app
from service.submissions.models import Result, Submission, SubmissionStatus
from service.users.models import Role
from service.users.schemas import UserCreate
from service.users.service import create_user
from tests.service.factories import auth
from tests.service.helpers import (
    REPO_ROOT,
    Process,
    RedisServer,
    free_port,
    fresh_database,
    pg_available,
    wait_for,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary"),
]

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
ACTIVATIONS = EXAMPLES_DIR / "activations"


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def db_url() -> Iterator[str]:
    if not pg_available():
        pytest.skip("Postgres at 127.0.0.1:5432 is not reachable")
    with fresh_database("hwgrade_e2e") as url:
        yield url


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = create_db_engine(db_url)
    yield create_session_factory(engine)
    engine.dispose()


@pytest.fixture
def env(tmp_path: Path, db_url: str, redis: RedisServer) -> dict[str, str]:
    """What every process of the deployment gets; short leases and sweeps so recovery is quick."""
    return {
        **os.environ,
        # `python` and `uvicorn` in the compose commands must be this interpreter's (a venv's, in CI).
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO_ROOT),
        "HWGRADE_ENV": "test",
        # As in production: nothing under the home, which no process creates in advance (the worker
        # that runs beat keeps its schedule there, and once died at start for want of it).
        "HWGRADE_HOME": str(tmp_path / "home"),
        "HWGRADE_STORAGE_DIR": str(tmp_path / "storage"),
        "HWGRADE_DATABASE_URL": db_url,
        "HWGRADE_BROKER_URL": redis.url,
        "HWGRADE_DEVICE": "cpu",
        "HWGRADE_LEASE_S": "3",
        "HWGRADE_SWEEP_INTERVAL_S": "1",
        "HWGRADE_REQUEUE_AFTER_S": "5",
        "HWGRADE_TASK_SOFT_TIME_LIMIT_S": "90",
        "HWGRADE_TASK_TIME_LIMIT_S": "100",
    }


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings.model_validate(
        {k[len("HWGRADE_") :].lower(): v for k, v in env.items() if k.startswith("HWGRADE_")}
    )


@pytest.fixture
def procs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Process]]:
    """Processes a test starts; all stopped afterwards, their logs printed if the test failed."""
    started: list[Process] = []
    yield started
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for proc in started:
        proc.stop()
        if failed:
            print(f"\n===== {' '.join(proc.cmd)} =====\n{proc.log_tail(80)}")


@pytest.fixture
def student_token(factory: sessionmaker[Session]) -> str:
    with unit_of_work(factory) as session:
        sync_specs(session, BUILTIN_ASSIGNMENTS.values())
        _, token = create_user(session, UserCreate(student_number="2024001", display_name="张三"))
        create_user(session, UserCreate(student_number="T01", display_name="李老师", role=Role.instructor))
    return token


# --- helpers -------------------------------------------------------------------------------------


def compose_command(service: str) -> list[str]:
    command = COMPOSE["services"][service]["command"]
    assert isinstance(command, list) and command, service
    return [str(part) for part in command]


def start_worker(procs: list[Process], env: dict[str, str], tmp_path: Path, name: str) -> Process:
    """The compose worker command, as a plain process (one pool process to spare the CPU)."""
    cmd = compose_command("worker")
    cmd[cmd.index("--concurrency") + 1] = "1"
    if cmd[0] == "python":
        cmd[0] = sys.executable
    proc = Process([*cmd, f"--hostname={name}@%h"], env, tmp_path / f"worker-{name}.log")
    procs.append(proc)
    return proc


def submission_row(factory: sessionmaker[Session], submission_id: int) -> Submission:
    with factory() as session:
        return session.get_one(Submission, submission_id)


def result_count(factory: sessionmaker[Session], submission_id: int) -> int:
    with factory() as session:
        return session.scalar(select(func.count(Result.id)).where(Result.submission_id == submission_id)) or 0


def wait_final(
    factory: sessionmaker[Session], submission_id: int, timeout: float, procs: list[Process]
) -> Submission:
    def final() -> Submission | None:
        row = submission_row(factory, submission_id)
        return row if row.status.is_final else None

    try:
        row = wait_for(final, timeout, f"submission {submission_id} to be graded")
        assert row is not None
        return row
    except AssertionError:
        row = submission_row(factory, submission_id)
        raise AssertionError(f"{row!r} not final; workers alive: {[p.alive() for p in procs]}") from None


def slow_activations_zip(sleep_s: float) -> bytes:
    """The reference activations, made to take a while (so a worker can be killed mid-grading)."""
    source = (ACTIVATIONS / "activations.py").read_text()
    files: dict[str, str | bytes] = {"activations.py": f"import time\ntime.sleep({sleep_s})\n" + source}
    from tests.service.helpers import make_zip

    return make_zip(files)


class KeptAlive:
    """One HTTP/1.1 connection to the API, reused as a client's keep-alive pool reuses it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def healthz(self) -> int:
        """GET /healthz on this connection; its status, or 0 if the server closed the connection."""
        try:
            self.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            while b"\r\n\r\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return 0
                self.buffer += chunk
        except ConnectionError:
            return 0
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(self.buffer) < length:
            self.buffer += self.sock.recv(65536)
        self.buffer = self.buffer[length:]
        return int(head.split()[1])

    def close(self) -> None:
        self.sock.close()


def in_process_api(settings: Settings) -> TestClient:
    """The API in this process; its uploads still go through the real broker to real workers."""
    return TestClient(create_app(settings))


# --- tests ---------------------------------------------------------------------------------------


def test_upload_is_graded_end_to_end_with_the_compose_commands(
    env: dict[str, str], factory: sessionmaker[Session], procs: list[Process], tmp_path: Path
) -> None:
    # migrate: the one-shot compose service, as a plain command.
    migrate = subprocess.run(
        compose_command("migrate"), env=env, cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "activations" in migrate.stdout

    added = subprocess.run(
        [sys.executable, "-m", "service", "users", "add", "2024007", "王五"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    token = re.search(r"hwg_[\w-]+", added.stdout)
    assert token is not None, added.stdout

    port = free_port()
    api_cmd = compose_command("api")
    api_cmd[api_cmd.index("--host") + 1] = "127.0.0.1"
    api_cmd[api_cmd.index("--port") + 1] = str(port)
    # Several API processes, as compose runs them (uvicorn takes --workers from WEB_CONCURRENCY).
    api = Process(api_cmd, {**env, "WEB_CONCURRENCY": "2"}, tmp_path / "api.log")
    procs.append(api)
    runs = tmp_path / "runs"
    runs.mkdir()
    worker = start_worker(procs, {**env, "HWGRADE_SANDBOX_RUN_DIR": str(runs)}, tmp_path, "w1")
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 30, "the API to answer /healthz")
    assert "Started parent process" in api.log_tail(), api.log_tail()
    # A connection left idle longer than httpx's pool keeps one (5 s, uvicorn's default too) still
    # serves: the API is not the side that closes it (checked after the grading below).
    assert api_cmd[api_cmd.index("--timeout-keep-alive") + 1] == str(API_KEEP_ALIVE_S)
    kept = KeptAlive(port)
    assert kept.healthz() == 200
    idle_from = time.monotonic()

    zip_path = tmp_path / "activations.zip"
    zip_path.write_bytes(zip_folder(ACTIVATIONS))
    submit = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "submit",
            str(zip_path),
            "--assignment",
            "activations",
            "--server",
            base,
            "--token",
            token.group(0),
            "--timeout",
            "120",
            "--poll",
            "0.5",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr
    assert "Score 得分: 1.0000" in submit.stdout and "PASSED" in submit.stdout
    assert "Submissions left today for activations: 9" in submit.stdout  # of the default 10
    time.sleep(max(0.0, 7.0 - (time.monotonic() - idle_from)))
    assert kept.healthz() == 200, "the API closed a connection idle for 7 s"
    kept.close()

    with factory() as session:
        rows = session.scalars(select(Submission)).all()
        assert len(rows) == 1
        sub = rows[0]
        assert sub.status == SubmissionStatus.graded and sub.attempt == 1
        assert sub.result is not None and sub.result.score == 1.0 and sub.result.passed
        assert sub.result.sandbox and sub.result.checks
    assert result_count(factory, sub.id) == 1
    # The workers' healthcheck, as compose runs it (sh, for $HOSTNAME), naming this worker's node.
    check = COMPOSE["services"]["worker"]["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL" and COMPOSE["services"]["worker-gpu"]["healthcheck"]["test"] == check
    check_cmd = check[1].replace("celery@$$HOSTNAME", f"w1@{socket.gethostname()}")
    assert "celery@" not in check_cmd

    def healthcheck() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", check_cmd], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )

    alive = healthcheck()
    assert alive.returncode == 0, alive.stdout + alive.stderr

    # A worker stopped as compose stops it (SIGTERM) stops its pool processes' sandbox pools, which
    # release their last evaluation's uid slot and remove its run directory.
    worker.stop(timeout=30)
    assert worker.popen.returncode == 0, worker.log_tail()
    assert list(runs.iterdir()) == [], worker.log_tail()
    gone = healthcheck()
    assert gone.returncode != 0, gone.stdout + gone.stderr


def test_worker_killed_mid_grading_is_graded_exactly_once_after_restart(
    env: dict[str, str],
    settings: Settings,
    factory: sessionmaker[Session],
    student_token: str,
    procs: list[Process],
    tmp_path: Path,
) -> None:
    worker_a = start_worker(procs, env, tmp_path, "a")
    with in_process_api(settings) as api:
        resp = api.post(
            "/api/v1/assignments/activations/submissions",
            files={"file": ("slow.zip", slow_activations_zip(6))},
            headers=auth(student_token),
        )
    assert resp.status_code == 202, resp.text
    sub_id = resp.json()["id"]

    wait_for(
        lambda: submission_row(factory, sub_id).status == SubmissionStatus.running,
        60,
        "worker A to start grading",
    )
    worker_a.kill9()  # the machine dies: worker, pool process and sandbox, no goodbye
    row = submission_row(factory, sub_id)
    assert row.status == SubmissionStatus.running and row.attempt == 1
    assert result_count(factory, sub_id) == 0

    start_worker(procs, env, tmp_path, "b")
    row = wait_final(factory, sub_id, 120, procs)
    assert row.status == SubmissionStatus.graded
    assert row.attempt == 2  # A's attempt lost its lease; B's wrote the result
    assert result_count(factory, sub_id) == 1
    with factory() as session:
        result = session.scalars(select(Result).where(Result.submission_id == sub_id)).one()
        assert result.attempt == 2 and result.score == 1.0


def test_redis_down_during_upload_loses_nothing(
    env: dict[str, str],
    settings: Settings,
    factory: sessionmaker[Session],
    redis: RedisServer,
    student_token: str,
    procs: list[Process],
    tmp_path: Path,
) -> None:
    start_worker(procs, env, tmp_path, "w1")
    with in_process_api(settings) as api:
        redis.stop()
        resp = api.post(
            "/api/v1/assignments/activations/submissions",
            files={"file": ("hw.zip", zip_folder(ACTIVATIONS))},
            headers=auth(student_token),
        )
        assert resp.status_code in (202, 503), resp.text
        body: dict[str, Any] = resp.json()
        if resp.status_code == 503:  # a clean refusal is allowed too, if nothing was half-written
            assert body["error"] == "unavailable"
            with factory() as session:
                assert session.scalar(select(func.count(Submission.id))) == 0
            return
        assert body["status"] == "queued"
        sub_id = body["id"]
        row = submission_row(factory, sub_id)
        # Accepted and committed; the wake-up could not be sent, so the sweeper owes one.
        assert row.status == SubmissionStatus.queued and row.enqueued_at is None

        redis.start()  # the same port, empty: whatever it held is gone
        row = wait_final(factory, sub_id, 120, procs)
        assert row.status == SubmissionStatus.graded
        assert result_count(factory, sub_id) == 1
        assert api.get(f"/api/v1/submissions/{sub_id}", headers=auth(student_token)).json()["result"][
            "passed"
        ]


def test_an_upload_is_accepted_while_redis_hangs(
    settings: Settings, factory: sessionmaker[Session], redis: RedisServer, student_token: str
) -> None:
    # A Redis that accepts the connection and never answers (stopped, swapped out, a dead link)
    # must not hold an upload: it is committed and acknowledged, and the sweeper sends the wake-up.
    # It held the request with no limit: the publish had a connect timeout and no read timeout.
    with in_process_api(settings) as api:
        first = api.post(
            "/api/v1/assignments/activations/submissions",
            files={"file": ("hw.zip", zip_folder(ACTIVATIONS))},
            headers=auth(student_token),
        )
        assert first.status_code == 202, first.text  # the producer's connection is now open
        assert redis.proc is not None
        os.kill(redis.proc.pid, signal.SIGSTOP)
        try:
            answer: list[Any] = []
            upload = threading.Thread(
                target=lambda: answer.append(
                    api.post(
                        "/api/v1/assignments/activations/submissions",
                        files={"file": ("hw.zip", zip_folder(ACTIVATIONS))},
                        headers=auth(student_token),
                    )
                ),
                daemon=True,
            )
            upload.start()
            upload.join(60)
            assert answer, "the upload still waited for Redis after 60 s"
        finally:
            os.kill(redis.proc.pid, signal.SIGCONT)
    resp = answer[0]
    assert resp.status_code == 202, resp.text
    row = submission_row(factory, resp.json()["id"])
    assert row.status == SubmissionStatus.queued and row.enqueued_at is None  # the sweeper owes it


def test_embedded_serve_runs_the_demo_without_any_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWGRADE_")}
    env.update(PYTHONPATH=str(REPO_ROOT), HWGRADE_HOME=str(tmp_path / "home"), HWGRADE_DEVICE="cpu")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "serve",
            "--port",
            "0",
            "--exit-after-demo",
            "--demo-timeout",
            "240",
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=590,
    )
    worker_log = (tmp_path / "home" / "worker.log").read_text(errors="replace")[-3000:]
    assert run.returncode == 0, run.stdout + run.stderr + worker_log
    out = run.stdout
    assert "sqlite" in out and "filesystem://" in out
    assert re.search(r"activations\s+activations\s+graded\s+score 1\.0000\s+passed", out), out
    for slug in ("backprop", "optimizers"):
        assert re.search(rf"{slug}\s+{slug}\s+graded", out), out
    assert "API at http://127.0.0.1:" in out
    assert (tmp_path / "home" / "hwgrade.sqlite3").is_file()


def test_embedded_serve_restarts_a_worker_that_ended_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWGRADE_")}
    env.update(PYTHONPATH=str(REPO_ROOT), HWGRADE_HOME=str(tmp_path / "home"), HWGRADE_DEVICE="cpu")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", "0", "--no-demo"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker_pid = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if m := re.search(r"Worker started \(pid (\d+)\)", line):
                worker_pid = int(m.group(1))
            if "Demo tokens" in line:
                raise AssertionError("--no-demo made demo users")
            if "Serving at" in line:
                break
        assert worker_pid is not None
        # The course's assignments are there without the demo too (uploads to them were 404s).
        with contextlib.closing(sqlite3.connect(tmp_path / "home" / "hwgrade.sqlite3")) as db:
            slugs = {slug for (slug,) in db.execute("SELECT slug FROM assignment")}
        assert slugs == set(BUILTIN_ASSIGNMENTS)
        # A worker that ends (it once died of an unreadable broker message) is started again.
        os.killpg(worker_pid, signal.SIGKILL)
        first_pid = worker_pid
        for line in proc.stdout:
            if m := re.search(r"Worker started \(pid (\d+)\)", line):
                worker_pid = int(m.group(1))
                break
        assert worker_pid != first_pid
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{worker_pid}").exists():
            time.sleep(0.2)
        assert not Path(f"/proc/{worker_pid}").exists(), "hwgrade serve left its worker running"
    finally:
        if proc.poll() is None:
            proc.kill()
        if worker_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker_pid, signal.SIGKILL)
