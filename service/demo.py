"""`hwgrade serve`: the embedded service with a demo, in one command on a fresh machine.

It migrates the database (SQLite by default), syncs the built-in assignments, creates demo users,
starts a real Celery worker process (`hwgrade worker --beat`, the production task code) and the API,
then submits every example under reference/examples/ (see reference.examples.find_examples: one
folder per example, named after its assignment) over HTTP like a student would and prints the
scores. With the default settings the broker is kombu's filesystem transport: no server needed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from grader.assignments import BUILTIN_ASSIGNMENTS
from reference.examples import EXAMPLES_DIR, Example, find_examples, zip_folder
from service.assignments.service import sync_specs
from service.config import API_KEEP_ALIVE_S, Settings, settings_summary
from service.db import create_db_engine, create_session_factory, unit_of_work, upgrade_db
from service.main import create_app
from service.report_text import format_result
from service.users import service as users_service
from service.users.models import Role
from service.users.schemas import UserCreate

DEMO_INSTRUCTOR = ("demo-teacher", "Demo Teacher 演示教师")
WORKER_RESTART_DELAY_S = 2.0
DEMO_STUDENTS = [("demo-s001", "Demo Student 1 演示学生一"), ("demo-s002", "Demo Student 2 演示学生二")]
FINAL = ("graded", "error")


def sync_builtin_assignments(settings: Settings) -> None:
    """Create the course's built-in assignments where missing (the course's own settings are kept)."""
    engine = create_db_engine(settings.database_url)
    with unit_of_work(create_session_factory(engine)) as session:
        sync_specs(session, BUILTIN_ASSIGNMENTS.values())
    engine.dispose()


def ensure_demo_users(settings: Settings) -> dict[str, str]:
    """Create the demo accounts if missing and give each a fresh token; return number -> token."""
    engine = create_db_engine(settings.database_url)
    factory = create_session_factory(engine)
    tokens: dict[str, str] = {}
    with unit_of_work(factory) as session:
        people = [(*DEMO_INSTRUCTOR, Role.instructor)] + [(n, d, Role.student) for n, d in DEMO_STUDENTS]
        for number, name, role in people:
            user = users_service.get_by_number(session, number)
            if user is None:
                _, token = users_service.create_user(
                    session, UserCreate(student_number=number, display_name=name, role=role)
                )
            else:
                token = users_service.rotate_token(session, user)
            tokens[number] = token
    engine.dispose()
    return tokens


def start_worker(settings: Settings, *, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `hwgrade worker --beat` in its own process group with these settings."""
    env = {**os.environ, **settings.as_env()}
    cmd = [sys.executable, "-m", "service.cli", "worker", "--beat", "--concurrency", "1"]
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115  (handed to the child)
    try:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if out is not None:
            out.close()


def stop_process_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Warm shutdown (SIGTERM to the leader, which stops its children), then SIGKILL the whole group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group (pool children, sandboxes)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def submit_and_wait(
    client: httpx.Client, token: str, slug: str, filename: str, data: bytes, timeout: float
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    resp = client.post(
        f"/api/v1/assignments/{slug}/submissions",
        files={"file": (filename, data, "application/zip")},
        headers=headers,
    )
    if resp.status_code != 202:
        return {"status": "refused", "http": resp.status_code, "body": resp.json()}
    location = resp.headers["Location"]
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = resp.json()
    while body["status"] not in FINAL and time.monotonic() < deadline:
        time.sleep(1.0)
        body = client.get(location, headers=headers).json()
    return body


def run_demo(base_url: str, tokens: dict[str, str], examples: list[Example], timeout: float) -> bool:
    """Submit every example as a demo student; print one line each and the failures' details."""
    if not examples:
        print(f"No examples found under {EXAMPLES_DIR}; nothing to submit.")
        return True
    print(f"Submitting {len(examples)} example(s) from {EXAMPLES_DIR} ...", flush=True)
    students = [number for number, _ in DEMO_STUDENTS]
    ok = True
    rows = []
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        for i, example in enumerate(examples):
            number = students[i % len(students)]
            body = submit_and_wait(
                client,
                tokens[number],
                example.slug,
                f"{example.name}.zip",
                zip_folder(example.folder),
                timeout,
            )
            rows.append((example, number, body))
            result = body.get("result") or {}
            status = body.get("status")
            if status not in FINAL:
                ok = False
            score = f"{result['score']:.4f}" if "score" in result else "-"
            error = (result.get("error") or {}).get("code", "") or (body.get("body") or {}).get("error", "")
            passed = "passed" if result.get("passed") else "not passed"
            print(
                f"  #{body.get('id', '-'):<4} {example.name:<28} {example.slug:<12} {status:<8} "
                f"score {score}  {passed}  {error}",
                flush=True,
            )
    for example, _number, body in rows:
        result = body.get("result")
        if result and (result.get("error") or not result.get("passed")):
            print()
            print(format_result(result, title=f"--- {example.name} ({example.slug})", show_logs=False))
    return ok


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def serve(
    settings: Settings, *, host: str, port: int, demo: bool, exit_after_demo: bool, demo_timeout: float
) -> int:
    """Run the embedded service; returns the process exit code."""
    settings.prepare_dirs()
    print("hwgrade embedded service:", ", ".join(f"{k}={v}" for k, v in settings_summary(settings).items()))
    upgrade_db(settings.database_url)
    # With --no-demo too: without them every upload and board is a 404 "No assignment".
    sync_builtin_assignments(settings)
    # With --no-demo, no demo users either: they would be students in the grade book and the
    # eligibility list of the course the embedded service then serves.
    tokens = ensure_demo_users(settings) if demo else {}
    log_path = settings.home / "worker.log"
    workers = [start_worker(settings, log_path=log_path)]
    print(f"Worker started (pid {workers[0].pid}); its log: {log_path}", flush=True)
    config = uvicorn.Config(
        create_app(settings), host=host, port=port, log_level="warning", timeout_keep_alive=API_KEEP_ALIVE_S
    )
    server = uvicorn.Server(config)
    outcome = {"ok": True}

    def _demo() -> None:
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.1)
        bound_port = server.servers[0].sockets[0].getsockname()[1]
        base_url = f"http://{host}:{bound_port}"
        print(f"API at {base_url}  (docs: {base_url}/docs; instructor pages: {base_url}/ui/)", flush=True)
        if tokens:
            print("Demo tokens (new on every start):")
            for number, token in tokens.items():
                print(f"  {number:<14} {token}")
        else:
            print(
                "No demo users (--no-demo): add yours with `hwgrade users add` or `hwgrade users import-roster`.",
                flush=True,
            )
        try:
            if demo:
                outcome["ok"] = run_demo(base_url, tokens, find_examples(), demo_timeout)
        except Exception as exc:
            outcome["ok"] = False
            print(f"Demo failed: {exc!r}", flush=True)
        if exit_after_demo:
            server.should_exit = True
        else:
            print(f"Serving at {base_url}; press Ctrl-C to stop.", flush=True)

    starting = threading.Lock()

    def _watch() -> None:
        """Start the worker again if it ends while the service runs: uploads would otherwise stay
        queued with nothing to say why (what is queued is graded once it is back: the sweeper)."""
        while not server.should_exit:
            code = workers[-1].poll()
            if code is not None and not server.should_exit:
                print(f"The worker ended (exit code {code}; see {log_path}); starting it again.", flush=True)
                time.sleep(WORKER_RESTART_DELAY_S)
                with starting:  # not while the service stops its workers
                    if server.should_exit:
                        return
                    workers.append(start_worker(settings, log_path=log_path))
                print(f"Worker started (pid {workers[-1].pid}).", flush=True)
            time.sleep(1.0)

    thread = threading.Thread(target=_demo, name="demo", daemon=True)
    thread.start()
    threading.Thread(target=_watch, name="worker-watch", daemon=True).start()
    # uvicorn shuts down on SIGTERM and then re-raises it under the handler it found: make that one
    # unwind the stack, so the `finally` below stops the worker instead of leaving it orphaned.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.run()
    finally:
        with starting:
            server.should_exit = True  # the watch starts no new worker now
        for worker in workers:
            stop_process_group(worker)
    thread.join(timeout=5)
    return 0 if outcome["ok"] else 1
