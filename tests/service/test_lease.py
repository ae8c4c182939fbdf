"""The lease protocol in service.submissions.service: exactly one result per submission."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from grader.report import GradeReport
from service.config import Settings
from service.submissions import service
from service.submissions.models import Result, Submission, SubmissionStatus
from service.submissions.tasks import LeaseKeeper, _renewer
from tests.service.factories import create_assignment, create_user
from tests.service.helpers import make_zip, selects


@pytest.fixture
def submission(db: Session, settings: Settings) -> Submission:
    assignment = create_assignment(db)
    owner, _ = create_user(db)
    import io

    sub = service.create_submission(
        db,
        owner=owner,
        assignment=assignment,
        filename="hw.zip",
        stream=io.BytesIO(make_zip({"activations.py": ""})),
        settings=settings,
    )
    db.commit()
    return sub


def _report(score: float = 0.5) -> GradeReport:
    return GradeReport(
        status="graded",
        assignment="activations",
        score=score,
        passed=score >= 1.0,
        metrics={"checks_passed": 3},
        logs_tail="hello",
    )


def _claim(db: Session, sub: Submission, lease_s: float = 60) -> service.Claim | None:
    claim = service.claim(db, sub.id, lease_s=lease_s, max_attempts=3, worker="w1@test")
    db.commit()
    return claim


def _results(db: Session, sub: Submission) -> int:
    return db.scalar(select(func.count(Result.id)).where(Result.submission_id == sub.id)) or 0


def _expire_lease(db: Session, sub: Submission) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    db.execute(update(Submission).where(Submission.id == sub.id).values(lease_expires_at=past))
    db.commit()


def test_claim_takes_the_lease_once(db: Session, submission: Submission) -> None:
    claim = _claim(db, submission)
    assert claim is not None and claim.attempt == 1
    assert claim.spec["slug"] == "activations" and claim.stored_path == submission.stored_path
    db.refresh(submission)
    assert submission.status == SubmissionStatus.running and submission.started_at is not None
    assert submission.worker == "w1@test"
    # A duplicate delivery while the lease is live gets nothing.
    assert _claim(db, submission) is None


def test_claim_reads_only_the_assignment(
    db: Session, db_factory: sessionmaker[Session], submission: Submission
) -> None:
    # The claim's UPDATE returns what the grading needs; the one SELECT is the assignment's spec
    # (not the submission again with its owner, nor its result, which cannot exist yet). A fresh
    # session, as the worker's: nothing is in its identity map.
    db.commit()
    with db_factory() as fresh, selects(db.get_bind()) as statements:
        claim = _claim(fresh, submission)
    assert claim is not None and claim.attempt == 1
    assert len(statements) == 1 and "FROM assignment" in statements[0], statements
    assert "result" not in statements[0] and '"user"' not in statements[0]
    assert claim.spec["slug"] == "activations" and claim.assignment_slug == "activations"


def test_result_is_written_once(db: Session, submission: Submission) -> None:
    claim = _claim(db, submission)
    assert claim is not None
    assert service.record_report(db, submission.id, claim.attempt, _report(0.75))
    db.commit()
    assert not service.record_report(db, submission.id, claim.attempt, _report(1.0))
    db.commit()
    db.refresh(submission)
    assert submission.status == SubmissionStatus.graded and submission.finished_at is not None
    assert submission.result is not None and submission.result.score == 0.75
    assert submission.result.attempt == 1 and submission.result.logs_tail == "hello"
    assert _results(db, submission) == 1
    assert _claim(db, submission) is None  # a graded submission is never claimed again


def test_a_stale_attempt_cannot_write_after_the_lease_moved_on(
    db: Session, submission: Submission, settings: Settings
) -> None:
    first = _claim(db, submission)
    assert first is not None
    _expire_lease(db, submission)
    assert not service.renew_lease(db, submission.id, first.attempt + 1, 60)
    second = _claim(db, submission)  # a redelivery after the lease ran out
    assert second is not None and second.attempt == 2
    assert not service.renew_lease(db, submission.id, first.attempt, 60)
    assert not service.record_report(db, submission.id, first.attempt, _report(0.1))
    assert service.record_report(db, submission.id, second.attempt, _report(0.9))
    db.commit()
    assert _results(db, submission) == 1
    db.refresh(submission)
    assert submission.result is not None and submission.result.attempt == 2


def _renewals(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What each renewal of a LeaseKeeper returned, in order (the real renew_lease runs)."""
    calls: list[bool] = []
    real = service.renew_lease

    def counting(*args: Any, **kwargs: Any) -> bool:
        held = real(*args, **kwargs)
        calls.append(held)
        return held

    monkeypatch.setattr(service, "renew_lease", counting)
    return calls


def _claimed_with_renewals(
    db: Session, sub: Submission, monkeypatch: pytest.MonkeyPatch, lease_s: float
) -> tuple[service.Claim, list[bool]]:
    renewals = _renewals(monkeypatch)
    claim = _claim(db, sub, lease_s=lease_s)
    assert claim is not None
    return claim, renewals


def _lease_left_s(db_factory: sessionmaker[Session], sub: Submission) -> float:
    with db_factory() as session:
        row = session.get_one(Submission, sub.id)
        assert row.lease_expires_at is not None
        until = row.lease_expires_at
    until = until if until.tzinfo else until.replace(tzinfo=UTC)
    return (until - datetime.now(UTC)).total_seconds()


def test_a_grading_longer_than_its_lease_keeps_it(
    db: Session, db_factory: sessionmaker[Session], submission: Submission, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim, renewals = _claimed_with_renewals(db, submission, monkeypatch, lease_s=0.9)
    with LeaseKeeper(db_factory, submission.id, claim.attempt, lease_s=0.9):
        time.sleep(2.4)  # the lease, never renewed, would have run out 1.5 s ago
        assert _lease_left_s(db_factory, submission) > 0
    assert len(renewals) >= 3 and all(renewals)
    ended = len(renewals)
    time.sleep(1.0)
    assert len(renewals) == ended  # nothing renews a lease whose grading has ended
    assert service.record_report(db, submission.id, claim.attempt, _report())
    db.commit()


def test_a_shorter_lease_is_kept_while_the_renewer_sleeps_a_longer_tick(
    db: Session, db_factory: sessionmaker[Session], submission: Submission, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh renewer whose first lease was the default 60 s sleeps 10 s between looks; a 0.9 s lease
    added meanwhile must wake it (it used to be renewed only after that sleep, its lease long gone)."""
    _renewer.cache_clear()  # a renewer of this test's own, whose shortest lease so far is 60 s
    claim, renewals = _claimed_with_renewals(db, submission, monkeypatch, lease_s=0.9)
    long_grading = LeaseKeeper(db_factory, submission.id + 1, 1, lease_s=60)  # never due in this test
    with long_grading:
        time.sleep(0.2)  # the renewer thread is now in its 10 s sleep
        with LeaseKeeper(db_factory, submission.id, claim.attempt, lease_s=0.9):
            time.sleep(1.8)  # the lease, never renewed, would have run out 0.9 s ago
            assert _lease_left_s(db_factory, submission) > 0
    assert len(renewals) >= 2 and all(renewals)


def test_a_lost_lease_is_not_renewed_again(
    db: Session, db_factory: sessionmaker[Session], submission: Submission, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim, renewals = _claimed_with_renewals(db, submission, monkeypatch, lease_s=0.6)
    # Another attempt took the submission over (this one's lease had run out, say).
    db.execute(update(Submission).where(Submission.id == submission.id).values(attempt=claim.attempt + 1))
    db.commit()
    with LeaseKeeper(db_factory, submission.id, claim.attempt, lease_s=0.6):
        time.sleep(1.5)
    assert renewals == [False]


def test_error_report_sets_status_error_with_code(db: Session, submission: Submission) -> None:
    claim = _claim(db, submission)
    assert claim is not None
    report = service.internal_error_report("activations", "boom", "炸了")
    assert service.record_report(db, submission.id, claim.attempt, report)
    db.commit()
    db.refresh(submission)
    assert submission.status == SubmissionStatus.error
    assert submission.result is not None
    assert submission.result.error == {"code": "internal", "message": "boom", "message_zh": "炸了"}
    assert submission.result.score == 0.0 and not submission.result.passed


def test_sweep_requeues_expired_leases_and_lost_wakeups(
    db: Session, submission: Submission, settings: Settings
) -> None:
    assert service.sweep(db, settings) == []  # freshly queued: its wake-up is on its way
    service.mark_not_enqueued(db, submission.id)
    db.commit()
    assert [w.submission_id for w in service.sweep(db, settings)] == [submission.id]
    db.commit()
    assert service.sweep(db, settings) == []  # woken once per requeue_after_s, not every sweep

    claim = _claim(db, submission)
    assert claim is not None
    assert service.sweep(db, settings) == []  # running with a live lease: left alone
    _expire_lease(db, submission)
    wakeups = service.sweep(db, settings)
    db.commit()
    assert [(w.submission_id, w.queue) for w in wakeups] == [(submission.id, "grading")]
    db.refresh(submission)
    assert submission.status == SubmissionStatus.queued and submission.attempt == 1
    assert not service.record_report(db, submission.id, claim.attempt, _report())


def test_sweep_gives_up_after_max_attempts(db: Session, submission: Submission, settings: Settings) -> None:
    for _ in range(settings.max_attempts):
        assert _claim(db, submission) is not None
        _expire_lease(db, submission)
    wakeups = service.sweep(db, settings)
    db.commit()
    assert wakeups == []
    db.refresh(submission)
    assert submission.status == SubmissionStatus.error
    assert submission.result is not None and submission.result.error_code == "internal"
    message, message_zh = submission.result.error_message or "", submission.result.error_message_zh or ""
    assert "kept" in message and "does not count against today's submissions" in message
    # Both languages give the same count of tries (the English said "1 times", the Chinese no more).
    assert (
        f"on each of {settings.max_attempts} tries" in message
        and f"共尝试 {settings.max_attempts} 次" in message_zh
    )
    assert "graded again" in message and "重新评测" in message_zh
    assert _results(db, submission) == 1


def test_result_per_submission_is_unique_in_the_schema(db: Session, submission: Submission) -> None:
    from sqlalchemy.exc import IntegrityError

    now = datetime.now(UTC)
    db.add(service.result_from_report(submission.id, 1, _report(), now))
    db.flush()
    db.add(service.result_from_report(submission.id, 2, _report(), now))
    with pytest.raises(IntegrityError):
        db.flush()
    db.rollback()


def test_day_start_uses_the_course_timezone(settings: Settings) -> None:
    # 2026-03-01 17:30 UTC is already 2026-03-02 01:30 in Beijing.
    start = service.day_start(datetime(2026, 3, 1, 17, 30, tzinfo=UTC), settings)
    assert start.astimezone(UTC) == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)


def test_blob_paths_cannot_escape_the_store(tmp_path: Path) -> None:
    from service.storage import BlobStore

    with pytest.raises(ValueError):
        BlobStore(tmp_path).path("../../etc/passwd")
