"""`regrade`: finished submissions back in the queue, results removed, boards derived again."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.cli import main
from service.config import Settings
from service.db import create_db_engine, create_session_factory, unit_of_work
from service.submissions import service
from service.submissions.models import Result, Submission, SubmissionStatus
from tests.service.factories import auth, create_assignment, create_user
from tests.service.test_leaderboards import T0, board_entries, grade, graded, submit
from tests.service.test_lease import _expire_lease, _report


def _give_up(db: Session, settings: Settings, sub: Submission) -> None:
    """What a worker that keeps dying leaves: the sweep's final `internal` after max_attempts."""
    for _ in range(settings.max_attempts):
        assert (
            service.claim(db, sub.id, lease_s=60, max_attempts=settings.max_attempts, worker="w") is not None
        )
        _expire_lease(db, sub)
    assert service.sweep(db, settings) == []
    db.flush()


def _given_up(db: Session, settings: Settings) -> Submission:
    """A student's activations submission that the sweep gave up on."""
    a = create_assignment(db, "activations", daily_limit=10)
    student, _ = create_user(db)
    sub = submit(db, settings, student, a, T0)
    _give_up(db, settings, sub)
    return sub


def test_a_submission_given_up_on_is_graded_again_with_fresh_attempts(
    db: Session, settings: Settings
) -> None:
    sub = _given_up(db, settings)
    db.refresh(sub)
    assert sub.status == SubmissionStatus.error and sub.attempt == settings.max_attempts
    # Without the regrade no worker may take it again.
    assert service.claim(db, sub.id, lease_s=60, max_attempts=settings.max_attempts, worker="w") is None

    regraded = service.regrade(db, [sub.id])
    db.commit()
    assert [(w.submission_id, w.queue) for w in regraded.wakeups] == [(sub.id, "grading")]
    assert regraded.skipped == {}
    db.refresh(sub)
    assert sub.status == SubmissionStatus.queued and sub.grading_attempt == 0 and sub.result is None
    assert sub.finished_at is None and sub.enqueued_at is not None
    grade(db, sub, 0.7)
    db.commit()
    db.refresh(sub)
    assert sub.status == SubmissionStatus.graded and sub.grading_attempt == 1
    assert sub.attempt == settings.max_attempts + 1  # the lease's count never goes back
    assert sub.result is not None and sub.result.score == 0.7 and sub.result.error_code is None


def test_a_regraded_submission_that_keeps_failing_is_given_up_after_its_own_tries(
    db: Session, settings: Settings
) -> None:
    sub = _given_up(db, settings)
    service.regrade(db, [sub.id])
    db.flush()
    _give_up(db, settings, sub)  # max_attempts claims again, each one's worker dying
    db.refresh(sub)
    assert sub.status == SubmissionStatus.error and sub.attempt == 2 * settings.max_attempts
    assert sub.result is not None and sub.result.error_code == "internal"
    assert f"on each of {settings.max_attempts} tries" in sub.result.error_message


def test_a_worker_still_on_an_attempt_from_before_the_regrade_cannot_write_the_result(
    client: TestClient, db: Session, settings: Settings
) -> None:
    """Attempt 1 lost its lease (a worker stopped for a while, say), attempt 2 graded the submission,
    and then an instructor regraded it. Attempt 1's worker comes back: its write must be refused, as
    it was before the regrade, and the regrade's own attempt must be the one that writes."""
    a = create_assignment(db, "activations", daily_limit=10)
    student, token = create_user(db)
    sub = submit(db, settings, student, a, T0)
    stale = service.claim(db, sub.id, lease_s=60, max_attempts=3, worker="w-stopped")
    assert stale is not None and stale.attempt == 1
    _expire_lease(db, sub)
    grade(db, sub, 0.4)  # attempt 2
    service.regrade(db, [sub.id])
    db.flush()
    fresh = service.claim(db, sub.id, lease_s=60, max_attempts=3, worker="w-new")
    assert fresh is not None and fresh.attempt != stale.attempt
    assert not service.record_report(db, sub.id, stale.attempt, _report(1.0))
    assert service.record_report(db, sub.id, fresh.attempt, _report(0.8))
    db.flush()
    db.refresh(sub)
    assert sub.status == SubmissionStatus.graded and sub.grading_attempt == 1
    assert sub.result is not None and sub.result.score == 0.8 and sub.result.attempt == fresh.attempt
    db.commit()
    # What the student reads counts this grading's tries, not the lease's.
    assert client.get(f"/api/v1/submissions/{sub.id}", headers=auth(token)).json()["attempt"] == 1


def test_regrading_a_graded_submission_takes_it_off_the_boards_until_it_is_graded_again(
    db: Session, settings: Settings
) -> None:
    a = create_assignment(db, "activations", daily_limit=10)
    student, _ = create_user(db)
    best = graded(db, settings, student, a, 0.9, 0)
    graded(db, settings, student, a, 0.6, 1)
    db.flush()
    assert {e[3:5] for e in board_entries(db)} == {(best.id, 0.9)}
    service.regrade(db, [best.id])
    db.flush()
    # The student's other result now leads; the regraded one ranks again once its new score is in.
    assert {e[4] for e in board_entries(db)} == {0.6}
    grade(db, db.get_one(Submission, best.id), 0.95)
    db.flush()
    assert {e[3:5] for e in board_entries(db)} == {(best.id, 0.95)}


def test_queued_running_and_unknown_submissions_are_skipped_with_the_reason(
    db: Session, settings: Settings
) -> None:
    a = create_assignment(db, "activations", daily_limit=10)
    student, _ = create_user(db)
    queued = submit(db, settings, student, a, T0)
    running = submit(db, settings, student, a, T0)
    assert service.claim(db, running.id, lease_s=60, max_attempts=3, worker="w") is not None
    done = graded(db, settings, student, a, 0.5, 2)
    regraded = service.regrade(db, [queued.id, running.id, 999_999, done.id])
    assert [w.submission_id for w in regraded.wakeups] == [done.id]
    assert regraded.skipped == {
        queued.id: "still queued: it will be graded anyway",
        running.id: "still running: it will be graded anyway",
        999_999: "no such submission",
    }
    db.refresh(running)
    assert running.status == SubmissionStatus.running and running.attempt == 1


def test_failed_on_our_side_selects_only_platform_failures(db: Session, settings: Settings) -> None:
    a = create_assignment(db, "activations", daily_limit=10)
    b = create_assignment(db, "optimizers", daily_limit=10)
    student, _ = create_user(db)
    ours = grade(db, submit(db, settings, student, a, T0), 0.0, error="internal")
    sandbox = grade(db, submit(db, settings, student, a, T0), 0.0, error="sandbox_unavailable")
    grade(db, submit(db, settings, student, a, T0), 0.0, error="crashed")  # the student's: not ours
    graded(db, settings, student, a, 0.8, 3)
    other = grade(db, submit(db, settings, student, b, T0), 0.0, error="internal")
    assert service.failed_on_our_side(db) == [ours.id, sandbox.id, other.id]
    assert service.failed_on_our_side(db, a) == [ours.id, sandbox.id]


def test_the_regrade_command_queues_failed_gradings_and_wakes_a_worker(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(home=home)
    engine = create_db_engine(settings.database_url)
    try:
        with unit_of_work(create_session_factory(engine)) as session:
            a = create_assignment(session, "activations", daily_limit=10)
            student, _ = create_user(session)
            failed = grade(session, submit(session, settings, student, a, T0), 0.0, error="internal")
            crashed = grade(session, submit(session, settings, student, a, T0), 0.0, error="crashed")
            ids = (failed.id, crashed.id)
        queue = settings.broker_dir / "queue"
        before = set(queue.iterdir()) if queue.exists() else set()
        assert main(["regrade", "--failed"]) == 0
        assert "1 submission(s) queued to be graded again" in capsys.readouterr().out
        assert len(set(queue.iterdir()) - before) == 1  # the wake-up, in the embedded broker's folder
        with unit_of_work(create_session_factory(engine)) as session:
            rows = session.execute(select(Submission.id, Submission.status).where(Submission.id.in_(ids)))
            statuses = {sub_id: status for sub_id, status in rows}
            assert statuses == {ids[0]: SubmissionStatus.queued, ids[1]: SubmissionStatus.error}
            assert session.scalar(select(Result.id).where(Result.submission_id == ids[0])) is None
        assert main(["regrade", str(ids[1]), "999999"]) == 0
        out = capsys.readouterr().out
        assert "skipped 999999: no such submission" in out and "1 submission(s) queued" in out
        assert main(["regrade"]) == 2
        assert main(["regrade", "--failed", "--assignment", "nope"]) == 1
    finally:
        engine.dispose()
