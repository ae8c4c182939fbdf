from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.assignments.models import Assignment
from service.config import Settings
from service.db import create_db_engine, create_session_factory, upgrade_db
from service.errors import DailyLimitReached
from service.storage import BlobStore
from service.submissions import service
from service.submissions.models import Submission
from service.users.models import Role, User
from tests.service.factories import auth, create_assignment, create_instructor, create_user
from tests.service.helpers import fresh_database, make_zip, selects

URL = "/api/v1/assignments/activations/submissions"


@pytest.fixture
def student(db: Session) -> str:
    create_assignment(db, daily_limit=3)
    _, token = create_user(db)
    db.commit()
    return token


def _count(db: Session) -> int:
    return db.scalar(select(func.count(Submission.id))) or 0


def _stored_files(settings: Settings) -> list[Path]:
    return [p for p in settings.blob_dir.rglob("*") if p.is_file()]


def _queued_messages(celery: Celery, queue: str = "grading") -> list[dict[str, object]]:
    out = []
    with celery.connection_for_read() as conn:
        simple = conn.SimpleQueue(queue)
        while True:
            try:
                message = simple.get(block=False)
            except simple.Empty:
                break
            out.append({"task": message.headers["task"], "args": message.payload[0]})
            message.ack()
        simple.close()
    return out


def test_upload_is_accepted_stored_by_hash_and_queued(
    client: TestClient, db: Session, student: str, settings: Settings, celery_producer: Celery
) -> None:
    data = make_zip({"hw/activations.py": "import numpy as np\n"})
    with selects(db.get_bind()) as statements:
        resp = client.post(URL, files={"file": ("作业.zip", data, "application/zip")}, headers=auth(student))
    assert resp.status_code == 202, resp.text
    # A new submission has no result: the 202 says so without asking the database.
    assert not [s for s in statements if "FROM result" in s], statements
    body = resp.json()
    assert resp.headers["Location"] == f"/api/v1/submissions/{body['id']}"
    assert body["status"] == "queued" and body["result"] is None
    assert body["assignment"] == "activations" and body["original_filename"] == "作业.zip"
    assert body["size_bytes"] == len(data)

    row = db.get_one(Submission, body["id"])
    assert row.enqueued_at is not None and row.attempt == 0
    blob = BlobStore(settings.blob_dir).path(row.stored_path)
    assert blob.read_bytes() == data
    assert blob.name == f"{row.sha256}.zip"
    # The wake-up carries the id only, and it was sent (after the commit).
    assert _queued_messages(celery_producer) == [{"task": "submissions.grade", "args": [body["id"]]}]

    # The same bytes again: a new submission, the same blob.
    again = client.post(URL, files={"file": ("again.zip", data)}, headers=auth(student))
    assert again.status_code == 202
    assert len(_stored_files(settings)) == 1


@pytest.mark.parametrize(
    ("filename", "content", "status", "error", "needle"),
    [
        ("empty.zip", b"", 400, "empty_file", "empty"),
        ("hw.rar", b"Rar!\x1a\x07\x01\x00" + b"\x00" * 64, 415, "unsupported_archive", ".zip"),
        ("hw.7z", b"7z\xbc\xaf\x27\x1c" + b"\x00" * 64, 415, "unsupported_archive", "7z"),
        ("hw.tar.gz", b"\x1f\x8b\x08\x00" + b"\x00" * 64, 415, "unsupported_archive", "gzip"),
        ("hw.zip", b"print('I am not a zip')\n", 415, "not_a_zip", "not a zip"),
    ],
)
def test_bad_uploads_are_refused_with_a_clear_body_and_nothing_written(
    client: TestClient,
    db: Session,
    student: str,
    settings: Settings,
    filename: str,
    content: bytes,
    status: int,
    error: str,
    needle: str,
) -> None:
    resp = client.post(URL, files={"file": (filename, content)}, headers=auth(student))
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == error
    assert needle in body["detail"]
    assert body["detail_zh"]
    assert _count(db) == 0
    assert _stored_files(settings) == []


def test_oversized_upload_is_413_before_reading(
    client: TestClient, db: Session, student: str, settings: Settings
) -> None:
    big = make_zip({"weights.bin": b"\x00"}) + b"\x00" * (settings.max_upload_bytes + 200_000)
    resp = client.post(URL, files={"file": ("big.zip", big)}, headers=auth(student))
    assert resp.status_code == 413
    assert resp.json()["error"] == "too_large" and "1 MB" in resp.json()["detail"]
    assert "Leave datasets" in resp.json()["detail"] and "请去掉数据集" in resp.json()["detail_zh"]
    assert _count(db) == 0 and _stored_files(settings) == []


def test_upload_just_over_the_limit_is_413_after_counting(
    client: TestClient, db: Session, student: str, settings: Settings
) -> None:
    # Within the multipart allowance of the Content-Length check: the byte count catches it.
    big = b"PK\x03\x04" + b"\x00" * (settings.max_upload_bytes + 10)
    resp = client.post(URL, files={"file": ("big.zip", big)}, headers=auth(student))
    assert resp.status_code == 413
    assert _count(db) == 0 and _stored_files(settings) == []


def test_not_multipart_and_missing_field(client: TestClient, db: Session, student: str) -> None:
    resp = client.post(URL, json={"file": "hw.zip"}, headers=auth(student))
    assert resp.status_code == 415
    assert resp.json()["error"] == "expected_multipart" and "multipart/form-data" in resp.json()["detail"]
    resp = client.post(
        URL, content=b"PK\x03\x04raw", headers={**auth(student), "Content-Type": "application/zip"}
    )
    assert resp.status_code == 415
    resp = client.post(URL, files={"homework": ("hw.zip", make_zip({"a.py": ""}))}, headers=auth(student))
    assert resp.status_code == 400 and resp.json()["error"] == "missing_file"
    assert _count(db) == 0


def test_unknown_assignment_is_404(client: TestClient, student: str) -> None:
    resp = client.post(
        "/api/v1/assignments/nope/submissions",
        files={"file": ("a.zip", b"PK\x03\x04")},
        headers=auth(student),
    )
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"


def test_daily_limit_is_enforced_before_queueing(
    client: TestClient, db: Session, student: str, settings: Settings
) -> None:
    data = make_zip({"activations.py": "x = 1\n"})
    for _ in range(3):
        assert client.post(URL, files={"file": ("a.zip", data)}, headers=auth(student)).status_code == 202
    resp = client.post(URL, files={"file": ("a.zip", make_zip({"other.py": ""}))}, headers=auth(student))
    assert resp.status_code == 429
    assert resp.json()["error"] == "daily_limit" and "3" in resp.json()["detail"]
    assert _count(db) == 3
    assert len(_stored_files(settings)) == 1  # the refused upload left nothing behind


def test_instructors_have_no_daily_limit(client: TestClient, db: Session) -> None:
    create_assignment(db, daily_limit=1)
    _, teacher = create_instructor(db)
    db.commit()
    for _ in range(3):
        resp = client.post(URL, files={"file": ("a.zip", make_zip({"a.py": ""}))}, headers=auth(teacher))
        assert resp.status_code == 202


def test_no_content_length_is_411(client: TestClient, student: str) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.zip"\r\n\r\nPK\x03\x04\r\n--b--\r\n'

    resp = client.post(
        URL, content=chunks(), headers={**auth(student), "Content-Type": "multipart/form-data; boundary=b"}
    )
    assert resp.status_code == 411
    assert resp.json()["error"] == "length_required"


@pytest.fixture
def full_disk(settings: Settings) -> Iterator[Path]:
    """The blob store on a 64 KB tmpfs: a real full disk (ENOSPC), where this runs as root."""
    import subprocess

    settings.blob_dir.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(settings.blob_dir)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield settings.blob_dir
    finally:
        subprocess.run(["umount", "-l", str(settings.blob_dir)], check=True)


def test_an_upload_the_full_disk_cannot_hold_is_a_clear_503_and_costs_nothing(
    client: TestClient, db: Session, student: str, settings: Settings, full_disk: Path
) -> None:
    data = make_zip({"hw/activations.py": "import numpy as np\n", "hw/w.bin": os.urandom(200_000)})
    resp = client.post(URL, files={"file": ("hw.zip", data)}, headers=auth(student))
    assert resp.status_code == 503, resp.text  # was a plain-text 500 "Internal Server Error"
    body = resp.json()
    assert body["error"] == "unavailable"
    assert "could not save your upload" in body["detail"] and "不计入今天的提交次数" in body["detail_zh"]
    assert _count(db) == 0
    assert _stored_files(settings) == []  # the partial file was removed, so the disk is not left full
    small = client.post(
        URL, files={"file": ("hw.zip", make_zip({"hw/activations.py": "x = 1\n"}))}, headers=auth(student)
    )
    assert small.status_code == 202, small.text


def test_an_unexpected_error_is_the_apis_json_not_plain_text(
    app: FastAPI, student: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.submissions import service

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "list_summaries_for_owner", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        resp = client.get("/api/v1/me/submissions", headers=auth(student))
    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert (
        body["error"] == "internal"
        and "tell your instructor" in body["detail"]
        and "请重试" in body["detail_zh"]
    )
    assert "a bug" not in resp.text


def _parallel_uploads(factory: sessionmaker[Session], settings: Settings, n: int) -> list[str]:
    """`n` uploads by one student at once, each in its own session and thread (as the API's threads)."""
    with factory() as db:
        assignment = db.scalar(select(Assignment).where(Assignment.slug == "activations"))
        owner = db.scalar(select(User).where(User.role == Role.student))
        assert assignment is not None and owner is not None
        db.expunge_all()
    start = threading.Barrier(n)
    outcomes: list[str] = []

    def upload(i: int) -> None:
        with factory() as session:
            start.wait()
            try:
                service.accept_upload(
                    session,
                    owner=session.merge(owner, load=False),
                    assignment=session.merge(assignment, load=False),
                    filename="hw.zip",
                    stream=io.BytesIO(make_zip({"activations.py": f"# {i}"})),
                    settings=settings,
                )
                session.commit()
                outcomes.append("accepted")
            except DailyLimitReached:
                session.rollback()
                outcomes.append("refused")

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return sorted(outcomes)


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_parallel_uploads_cannot_pass_the_daily_limit_together(
    database: str, settings: Settings, tmp_path: Path
) -> None:
    """On SQLite, the embedded default, FOR UPDATE is ignored: 8 uploads at once against a limit of
    1 were three 202s (Postgres' row lock gave one)."""
    with contextlib.ExitStack() as stack:
        if database == "sqlite":
            url = f"sqlite:///{tmp_path / 'limit.sqlite3'}"
            upgrade_db(url)
        else:
            url = stack.enter_context(fresh_database("hwgrade_test_limit"))
        engine = create_db_engine(url)
        stack.callback(engine.dispose)
        factory = create_session_factory(engine)
        with factory() as db:
            create_assignment(db, daily_limit=1)
            create_user(db)
            db.commit()
        outcomes = _parallel_uploads(factory, settings.model_copy(update={"database_url": url}), 8)
        assert outcomes == ["accepted"] + ["refused"] * 7
