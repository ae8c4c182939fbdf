"""The grading task's body against the real grader (sandboxed runs: slow)."""

from __future__ import annotations

import io

import pytest
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from reference.examples import EXAMPLES_DIR, zip_folder
from service.config import Settings
from service.submissions import service
from service.submissions.models import Result, Submission, SubmissionStatus
from service.submissions.tasks import grade_one, resolve_device, sweep_once
from tests.service.factories import create_assignment, create_user
from tests.service.helpers import make_zip


def _submit(db: Session, settings: Settings, data: bytes, slug: str = "activations") -> Submission:
    assignment = create_assignment(db, slug)
    owner, _ = create_user(db)
    sub = service.create_submission(
        db, owner=owner, assignment=assignment, filename="hw.zip", stream=io.BytesIO(data), settings=settings
    )
    db.commit()
    return sub


@pytest.mark.slow
def test_grade_one_grades_the_reference_solution_once(
    db: Session, db_factory: sessionmaker[Session], settings: Settings
) -> None:
    sub = _submit(db, settings, zip_folder(EXAMPLES_DIR / "activations"))
    assert grade_one(db_factory, settings, sub.id, "w@test") == "graded"
    assert grade_one(db_factory, settings, sub.id, "w@test") == "skipped"
    db.refresh(sub)
    assert sub.status == SubmissionStatus.graded
    assert sub.result is not None and sub.result.passed and sub.result.score == pytest.approx(1.0)
    assert sub.result.checks and sub.result.sandbox
    assert db.scalar(select(func.count(Result.id)).where(Result.submission_id == sub.id)) == 1


@pytest.mark.slow
def test_a_broken_submission_is_an_error_result_not_a_lost_one(
    db: Session, db_factory: sessionmaker[Session], settings: Settings
) -> None:
    sub = _submit(db, settings, make_zip({"readme.txt": "I forgot the code"}))
    assert grade_one(db_factory, settings, sub.id, "w@test") == "error"
    db.refresh(sub)
    assert sub.status == SubmissionStatus.error
    assert sub.result is not None and sub.result.error_code not in (None, "internal")
    assert sub.result.error_message and sub.result.error_message_zh


def test_missing_blob_is_an_internal_error(
    db: Session, db_factory: sessionmaker[Session], settings: Settings
) -> None:
    sub = _submit(db, settings, make_zip({"activations.py": ""}))
    (settings.blob_dir / sub.stored_path).unlink()
    assert grade_one(db_factory, settings, sub.id, "w@test") == "error"
    db.refresh(sub)
    assert sub.result is not None and sub.result.error_code == "internal"


def test_an_unavailable_sandbox_writes_no_result_and_leaves_the_row_for_another_attempt(
    db: Session, db_factory: sessionmaker[Session], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grader import sandbox

    def unavailable(*args: object, **kwargs: object) -> None:
        raise sandbox.SandboxUnavailable("bubblewrap missing on this worker")

    monkeypatch.setattr(sandbox, "run_job", unavailable)
    sub = _submit(db, settings, zip_folder(EXAMPLES_DIR / "activations"))
    assert grade_one(db_factory, settings, sub.id, "w@test") == "retry"
    db.refresh(sub)
    assert sub.status == SubmissionStatus.running and sub.attempt == 1
    assert db.scalar(select(func.count(Result.id)).where(Result.submission_id == sub.id)) == 0


def test_sweep_once_sends_wakeups_for_lost_messages(
    db: Session, db_factory: sessionmaker[Session], settings: Settings, celery_producer: Celery
) -> None:
    sub = _submit(db, settings, make_zip({"activations.py": ""}))
    service.mark_not_enqueued(db, sub.id)
    db.commit()
    assert sweep_once(db_factory, settings, celery_producer) == 1
    db.refresh(sub)
    assert sub.enqueued_at is not None
    with celery_producer.connection_for_read() as conn:
        message = conn.SimpleQueue("grading").get(block=False)
        assert message.headers["task"] == "submissions.grade" and message.payload[0] == [sub.id]


def test_device_choice() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")


def test_a_database_blink_when_the_result_is_written_keeps_the_grading(
    db: Session, db_factory: sessionmaker[Session], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first two writes of the result fail as a restarting Postgres makes them fail (the driver's
    # OperationalError, raised where the statement is sent); the grading must not be thrown away.
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    from service.submissions import tasks

    monkeypatch.setattr(tasks, "RECORD_RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    sub = _submit(db, settings, make_zip({"activations.py": "def relu(x):\n    return x\n"}))
    failures = []
    engine = db.get_bind().engine

    def blink(conn: object, cursor: object, statement: str, *args: object) -> None:
        # record_report's UPDATE (the final status and finished_at, under the lease)
        if (
            statement.startswith("UPDATE submission SET status")
            and "finished_at" in statement
            and len(failures) < 2
        ):
            failures.append(statement)
            raise OperationalError(statement, {}, Exception("server closed the connection unexpectedly"))

    event.listen(engine, "before_cursor_execute", blink)
    try:
        assert grade_one(db_factory, settings, sub.id, "w@test") == "graded"
    finally:
        event.remove(engine, "before_cursor_execute", blink)
    assert len(failures) == 2
    db.refresh(sub)
    assert sub.status == SubmissionStatus.graded and sub.attempt == 1  # graded once, on its first attempt
    assert sub.result is not None and sub.result.attempt == 1
