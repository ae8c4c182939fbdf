"""Course rules on upload: the late policy after the deadline, and the daily limit per student and
assignment in the course timezone, where gradings that failed on our side, and zips that intake
refused, never count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from service.assignments.models import Assignment, LatePolicy
from service.config import Settings
from service.db import alembic_config, create_db_engine, upgrade_db
from service.errors import DailyLimitReached, DeadlinePassed
from service.submissions import service as submissions
from service.submissions.models import Result, Submission
from tests.service.factories import auth, create_assignment, create_instructor, create_user
from tests.service.helpers import fresh_database, make_zip, selects
from tests.service.test_leaderboards import grade, submit

ZIP = make_zip({"activations.py": "def relu(x):\n    return x\n"})


def _upload(client: TestClient, token: str, slug: str = "activations") -> tuple[int, dict[str, object]]:
    resp = client.post(
        f"/api/v1/assignments/{slug}/submissions", files={"file": ("hw.zip", ZIP)}, headers=auth(token)
    )
    return resp.status_code, resp.json()


def _count(db: Session) -> int:
    return db.scalar(select(func.count(Submission.id))) or 0


def test_refuse_policy_refuses_students_after_the_deadline(
    client: TestClient, db: Session, settings: Settings
) -> None:
    # 2026-03-01 15:59:00 UTC is 23:59 in Beijing.
    create_assignment(db, deadline=datetime(2026, 3, 1, 15, 59, tzinfo=UTC), late_policy=LatePolicy.refuse)
    _, student = create_user(db)
    _, teacher = create_instructor(db)
    db.commit()

    status, body = _upload(client, student)
    assert status == 403 and body["error"] == "deadline_passed"
    assert "2026-03-01 23:59 (Asia/Shanghai)" in str(body["detail"])
    assert "2026-03-01 23:59" in str(body["detail_zh"]) and "截止" in str(body["detail_zh"])
    assert "ask your instructor" in body["detail"] and "联系教师" in body["detail_zh"]
    assert _count(db) == 0
    assert list((settings.blob_dir).rglob("*.zip")) == []  # refused before the body was stored

    status, body = _upload(client, teacher)  # instructors are never refused, but the flag is honest
    assert status == 202 and body["late"] is True


def test_a_deadline_with_seconds_is_shown_with_them(client: TestClient, db: Session) -> None:
    """A 09:45:26 deadline was shown as "09:45", so an upload at 09:45:10 seemed on time."""
    create_assignment(db, deadline=datetime(2026, 3, 1, 1, 45, 26, tzinfo=UTC), late_policy=LatePolicy.refuse)
    _, student = create_user(db)
    db.commit()
    status, body = _upload(client, student)
    assert status == 403 and "2026-03-01 09:45:26 (Asia/Shanghai)" in body["detail"]


def test_refuse_policy_still_accepts_before_the_deadline(db: Session, settings: Settings) -> None:
    deadline = datetime(2026, 3, 1, 15, 59, tzinfo=UTC)
    a = create_assignment(db, deadline=deadline, late_policy=LatePolicy.refuse)
    student, _ = create_user(db)
    assert submit(db, settings, student, a, deadline).late is False  # at the deadline: in time
    with pytest.raises(DeadlinePassed):
        submit(db, settings, student, a, deadline + timedelta(seconds=1))


def test_accept_marked_policy_accepts_and_marks_late(
    client: TestClient, db: Session, settings: Settings
) -> None:
    a = create_assignment(db, deadline=datetime.now(UTC) - timedelta(hours=1))
    assert a.late_policy == LatePolicy.accept_marked  # the default
    student, token = create_user(db)
    _, teacher = create_instructor(db)
    early = submit(db, settings, student, a, datetime.now(UTC) - timedelta(hours=2))
    grade(db, early, 0.5)
    db.commit()

    status, body = _upload(client, token)
    assert status == 202 and body["late"] is True and early.late is False
    late = db.get_one(Submission, body["id"])
    grade(db, late, 0.75)
    db.commit()
    entry = client.get("/api/v1/assignments/activations/leaderboard", headers=auth(teacher)).json()[
        "entries"
    ][0]
    assert entry["submission_id"] == late.id and entry["late"] is True  # late ones rank, marked


def test_instructors_set_the_late_policy(client: TestClient, db: Session) -> None:
    create_assignment(db)
    _, teacher = create_instructor(db)
    _, student = create_user(db)
    db.commit()
    url = "/api/v1/assignments/activations"
    assert client.get(url, headers=auth(student)).json()["late_policy"] == "accept_marked"
    resp = client.patch(url, json={"late_policy": "refuse"}, headers=auth(teacher))
    assert resp.status_code == 200 and resp.json()["late_policy"] == "refuse"
    assert client.get(url, headers=auth(student)).json()["late_policy"] == "refuse"
    assert client.patch(url, json={"late_policy": "sometimes"}, headers=auth(teacher)).status_code == 422
    assert client.patch(url, json={"late_policy": "accept_marked"}, headers=auth(student)).status_code == 403


def test_daily_limit_counts_per_assignment(client: TestClient, db: Session) -> None:
    create_assignment(db, "activations", daily_limit=2)
    create_assignment(db, "backprop", daily_limit=2)
    _, token = create_user(db)
    _, other = create_user(db)
    db.commit()
    assert [_upload(client, token)[0] for _ in range(3)] == [202, 202, 429]
    assert _upload(client, token, "backprop")[0] == 202  # another assignment has its own count
    assert _upload(client, other)[0] == 202  # and another student


def test_a_students_upload_says_how_many_submissions_are_left_today(client: TestClient, db: Session) -> None:
    create_assignment(db, "activations", daily_limit=3)
    student, token = create_user(db)
    _, teacher = create_instructor(db)
    db.commit()
    url = "/api/v1/assignments/activations/submissions"

    def left(tok: str) -> str | None:
        resp = client.post(url, files={"file": ("hw.zip", ZIP)}, headers=auth(tok))
        assert resp.status_code == 202
        return resp.headers.get("X-Submissions-Left-Today")

    with selects(db.get_bind()) as statements:
        assert left(token) == "2"
    # Counted once, under the lock that checks the limit (the header's count was a second query).
    assert len([q for q in statements if "count(submission.id)" in q]) == 1, statements
    # A grading that failed on our side is given back, and the header says so.
    sub = db.scalars(select(Submission).where(Submission.owner_id == student.id)).one()
    grade(db, sub, 0.0, error="internal")
    db.commit()
    assert [left(token), left(token), left(token)] == ["2", "1", "0"]
    assert left(teacher) is None  # instructors have no limit


def test_the_daily_limit_message_names_the_course_timezone_and_a_closed_assignment(
    settings: Settings,
) -> None:
    a = Assignment(slug="activations", daily_limit=3)
    assert "midnight (China time)" in submissions.daily_limit_error(a, settings).detail
    elsewhere = settings.model_copy(update={"day_timezone": "Europe/Berlin"})
    refused = submissions.daily_limit_error(a, elsewhere)
    assert "midnight (Europe/Berlin)" in refused.detail and "Europe/Berlin 时间零点" in refused.detail_zh
    closed = submissions.daily_limit_error(Assignment(slug="activations", daily_limit=0), settings)
    assert "not taking submissions" in closed.detail and "used all 0" not in closed.detail
    assert "不接受提交" in closed.detail_zh


def test_daily_limit_resets_at_midnight_in_the_course_timezone(db: Session, settings: Settings) -> None:
    a = create_assignment(db, daily_limit=2)
    student, _ = create_user(db)
    # 23:58 and 23:59 on 1 March in Beijing (15:58/15:59 UTC): the day's two.
    submit(db, settings, student, a, datetime(2026, 3, 1, 15, 58, tzinfo=UTC))
    submit(db, settings, student, a, datetime(2026, 3, 1, 15, 59, tzinfo=UTC))
    with pytest.raises(DailyLimitReached) as refused:
        submit(db, settings, student, a, datetime(2026, 3, 1, 15, 59, 59, tzinfo=UTC))
    assert "北京时间零点" in refused.value.detail_zh
    # 00:01 on 2 March in Beijing is still 1 March in UTC, but a new day for the course.
    submit(db, settings, student, a, datetime(2026, 3, 1, 16, 1, tzinfo=UTC))
    assert submissions.count_today(db, student, a, settings, datetime(2026, 3, 1, 16, 2, tzinfo=UTC)) == 1
    assert (
        submissions.count_today(db, student, a, settings, datetime(2026, 3, 1, 15, 59, 59, tzinfo=UTC)) == 2
    )


def test_daily_limit_follows_the_configured_timezone(db: Session, settings: Settings) -> None:
    a = create_assignment(db, daily_limit=5)
    student, _ = create_user(db)
    submit(db, settings, student, a, datetime(2026, 3, 1, 15, 59, tzinfo=UTC))  # 1 March, both zones
    at = datetime(2026, 3, 1, 16, 1, tzinfo=UTC)
    assert submissions.count_today(db, student, a, settings, at) == 0  # 2 March in Beijing
    utc = settings.model_copy(update={"day_timezone": "UTC"})
    assert submissions.count_today(db, student, a, utc, at) == 1  # still 1 March in UTC


def test_platform_failures_do_not_use_up_the_daily_limit(db: Session, settings: Settings) -> None:
    a = create_assignment(db, daily_limit=2)
    student, _ = create_user(db)
    at = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    grade(db, submit(db, settings, student, a, at), 0.0, error="internal")
    grade(db, submit(db, settings, student, a, at), 0.0, error="sandbox_unavailable")
    assert submissions.count_today(db, student, a, settings, at) == 0
    # The student's own failures (a crash, a timeout) count, and so do pending ones.
    grade(db, submit(db, settings, student, a, at), 0.0, error="crashed")
    submit(db, settings, student, a, at)
    assert submissions.count_today(db, student, a, settings, at) == 2
    with pytest.raises(DailyLimitReached):
        submit(db, settings, student, a, at)


def test_zips_refused_by_intake_do_not_use_up_the_daily_limit(db: Session, settings: Settings) -> None:
    # A broken, unsafe or oversized zip ran no code: re-packing it must not cost one of the day's tries.
    a = create_assignment(db, daily_limit=1)
    student, _ = create_user(db)
    at = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    for code in ("not_a_zip", "unsafe_archive", "too_large"):
        refused = grade(db, submit(db, settings, student, a, at), 0.0, error=code)
        db.refresh(refused)
        assert refused.result is not None and refused.result.error_message is not None
        # ... and the report says so (the grader's message knows no daily limit).
        assert refused.result.error_message.endswith("does not count against today's submissions.")
        assert refused.result.error_message_zh is not None
        assert refused.result.error_message_zh.endswith("不计入今天的提交次数。")
    assert submissions.count_today(db, student, a, settings, at) == 0
    # Errors of the student's code after intake still count (bad_output: it ran on the hidden inputs).
    counted = grade(db, submit(db, settings, student, a, at), 0.0, error="bad_output")
    db.refresh(counted)
    assert counted.result is not None and "today's submissions" not in (counted.result.error_message or "")
    with pytest.raises(DailyLimitReached):
        submit(db, settings, student, a, at)


def test_instructor_uploads_have_no_limit_and_no_deadline(db: Session, settings: Settings) -> None:
    a = create_assignment(
        db, daily_limit=1, deadline=datetime(2026, 1, 1, tzinfo=UTC), late_policy=LatePolicy.refuse
    )
    teacher, _ = create_instructor(db)
    at = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
    assert [submit(db, settings, teacher, a, at).late for _ in range(3)] == [True, True, True]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migration_0003_backfills_board_scores(backend: str, tmp_path: Path, pg_url: str) -> None:
    if backend == "sqlite":
        _check_backfill(f"sqlite:///{tmp_path / 'mig.sqlite3'}")
    else:
        with fresh_database("hwgrade_test_0003", migrate=False) as url:
            _check_backfill(url)


def _check_backfill(url: str) -> None:
    from alembic import command

    upgrade_db(url, "0002")
    engine = create_db_engine(url)
    now = "2026-03-01 04:00:00+00:00"
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO assignment (id, slug, title, title_zh, kind, spec, daily_limit, pass_threshold, "
                    "queue, created_at, updated_at) VALUES (7, 'mnist', 'm', 'm', 'mnist', '{}', 10, 0.9, "
                    "'grading', :now, :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    'INSERT INTO "user" (id, role, student_number, display_name, token_hash, created_at) '
                    "VALUES (5, 'student', '2024001', '张三', 'h', :now)"
                ),
                {"now": now},
            )
            for sid, status in ((1, "graded"), (2, "graded"), (3, "error")):
                conn.execute(
                    text(
                        "INSERT INTO submission (id, owner_id, assignment_id, original_filename, sha256, size_bytes, "
                        "stored_path, status, attempt, created_at) VALUES (:id, 5, 7, 'hw.zip', 's', 1, 'p', "
                        ":status, 1, :at)"
                    ),
                    {"id": sid, "status": status, "at": f"2026-03-01 04:0{sid}:00+00:00"},
                )
            metrics = (
                '{"accuracy": 0.9, "public_accuracy": 0.95, "private_accuracy": 0.85}',
                '{"checks_passed": 3}',
                "{}",
            )
            for sid, (score, m) in enumerate(zip((0.9, 0.7, 0.0), metrics, strict=True), start=1):
                conn.execute(
                    text(
                        "INSERT INTO result (id, submission_id, score, passed, metrics, checks, hints, logs_tail, "
                        "timings, sandbox, details, attempt, created_at) VALUES (:id, :id, :score, :passed, :m, "
                        "'[]', '[]', '', '{}', '', '{}', 1, :now)"
                    ),
                    {"id": sid, "score": score, "passed": score > 0.8, "m": m, "now": now},
                )
        upgrade_db(url)
        command.check(alembic_config(url))
        with Session(engine) as db:
            results = {r.submission_id: r for r in db.scalars(select(Result))}
            assert (results[1].public_score, results[1].private_score) == (0.95, 0.85)
            assert (results[2].public_score, results[2].private_score) == (0.7, 0.7)  # no split: the score
            assert (results[3].public_score, results[3].private_score) == (None, None)  # errors never rank
            assert {(r.assignment_id, r.owner_id) for r in results.values()} == {(7, 5)}
            assert results[2].submitted_at == datetime(2026, 3, 1, 4, 2, tzinfo=UTC)
            assert db.get_one(Submission, 1).late is False
    finally:
        engine.dispose()
