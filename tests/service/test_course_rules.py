"""An instructor changes an assignment's rules after students have submitted: results and submissions
follow the new pass mark and the new deadline everywhere (reports, me/scores, boards, CSV exports,
eligibility), and the PATCH refuses what it cannot apply instead of answering 200 or 500."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from grader.assignments import BUILTIN_ASSIGNMENTS
from grader.evaluators.models import EVALUATOR as MODELS
from grader.report import GradeReport
from service.config import Settings
from service.submissions import service as submissions
from service.submissions.models import Submission
from tests.service.factories import auth, create_assignment, create_instructor, create_user
from tests.service.test_leaderboards import T0, submit


def record_accuracy(db: Session, submission: Submission, correct: int, n: int = 1000) -> None:
    """Record a phone-price report as the grader writes it (its check from the evaluator's verdict)."""
    claim = submissions.claim(db, submission.id, lease_s=60, max_attempts=3, worker="test")
    assert claim is not None
    acc = correct / n
    metrics = {"accuracy": acc, "public_accuracy": acc, "private_accuracy": acc, "n": n, "correct": correct}
    spec = submission.assignment.grading_spec()
    passed, checks = MODELS.verdict(spec, acc, metrics, [])
    report = GradeReport(
        status="graded", assignment="phone-price", score=acc, passed=passed, metrics=metrics, checks=checks
    )
    assert submissions.record_report(db, submission.id, claim.attempt, report)


def patch(client: TestClient, token: str, body: dict[str, Any], slug: str = "phone-price") -> Any:
    return client.patch(f"/api/v1/assignments/{slug}", json=body, headers=auth(token))


def my_score(client: TestClient, token: str, slug: str = "phone-price") -> dict[str, Any]:
    rows = client.get("/api/v1/me/scores", headers=auth(token)).json()
    return next(r for r in rows if r["assignment"] == slug)


def csv_passed(client: TestClient, token: str) -> dict[str, str]:
    body = client.get("/api/v1/assignments/phone-price/scores.csv", headers=auth(token)).content
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    return {r["student_number"]: r["passed"] for r in rows}


def test_a_new_pass_mark_judges_every_graded_result_again(
    client: TestClient, db: Session, settings: Settings
) -> None:
    assert BUILTIN_ASSIGNMENTS["phone-price"].pass_threshold == 0.9625
    a = create_assignment(db, "phone-price", daily_limit=100)
    (sa, ta), (sb, tb) = create_user(db), create_user(db)
    _, teacher = create_instructor(db)
    first = submit(db, settings, sa, a, T0)
    record_accuracy(db, first, 957)  # the course's tuned example on the embedded set
    record_accuracy(db, submit(db, settings, sb, a, T0 + timedelta(minutes=1)), 900)
    db.commit()
    assert my_score(client, ta)["passed"] is False
    assert client.get("/api/v1/eligibility", headers=auth(teacher)).status_code == 200

    resp = patch(client, teacher, {"pass_threshold": 0.95})
    assert resp.status_code == 200, resp.text
    assert my_score(client, ta)["passed"] is True
    assert my_score(client, tb)["passed"] is False
    assert csv_passed(client, teacher) == {sa.student_number: "1", sb.student_number: "0"}
    report = client.get(f"/api/v1/submissions/{first.id}", headers=auth(ta)).json()["result"]
    assert report["passed"] is True
    assert report["checks"][0]["passed"] is True
    assert "the pass mark is 0.9500" in report["checks"][0]["message"]
    assert "及格线为 0.9500" in report["checks"][0]["message_zh"]
    passed = {
        r["student_number"]: r["passed"]
        for r in client.get("/api/v1/eligibility", headers=auth(teacher)).json()
    }
    assert passed[sa.student_number] == 1 and passed[sb.student_number] == 0

    assert patch(client, teacher, {"pass_threshold": 0.96}).status_code == 200
    assert my_score(client, ta)["passed"] is False
    assert csv_passed(client, teacher) == {sa.student_number: "0", sb.student_number: "0"}


def test_a_function_assignments_pass_mark_is_every_check(client: TestClient, db: Session) -> None:
    """HOMEWORK.md: "Passing means all checks pass". A lower mark was stored, shown to students as the
    assignment's pass_threshold, and passed nobody; the PATCH now refuses it and says why."""
    create_assignment(db, "activations", daily_limit=100)
    _, teacher = create_instructor(db)
    db.commit()
    resp = patch(client, teacher, {"pass_threshold": 0.9}, slug="activations")
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"] == "invalid_request" and "every check passes" in body["detail"]
    assert "所有检查都通过" in body["detail_zh"]
    read = client.get("/api/v1/assignments/activations", headers=auth(teacher)).json()
    assert read["pass_threshold"] == 1.0
    assert patch(client, teacher, {"pass_threshold": 1.0}, slug="activations").status_code == 200
    assert patch(client, teacher, {"daily_limit": 5}, slug="activations").status_code == 200


def test_a_new_deadline_marks_submissions_late_by_it(
    client: TestClient, db: Session, settings: Settings
) -> None:
    a = create_assignment(db, "activations", daily_limit=100, deadline=T0 + timedelta(minutes=5))
    sa, ta = create_user(db)
    _, teacher = create_instructor(db)
    early = submit(db, settings, sa, a, T0)
    late = submit(db, settings, sa, a, T0 + timedelta(minutes=10))
    db.commit()

    def marks() -> tuple[bool, bool]:
        return tuple(  # type: ignore[return-value]
            client.get(f"/api/v1/submissions/{s.id}", headers=auth(ta)).json()["late"] for s in (early, late)
        )

    assert marks() == (False, True)
    later = (T0 + timedelta(minutes=20)).isoformat()
    assert patch(client, teacher, {"deadline": later}, "activations").status_code == 200
    assert marks() == (False, False)
    earlier = (T0 - timedelta(minutes=1)).isoformat()
    assert patch(client, teacher, {"deadline": earlier}, "activations").status_code == 200
    assert marks() == (True, True)
    assert patch(client, teacher, {"deadline": None}, "activations").status_code == 200
    assert marks() == (False, False)


def test_the_patch_refuses_unknown_fields_and_deadlines_out_of_range(client: TestClient, db: Session) -> None:
    create_assignment(db, "phone-price")
    _, teacher = create_instructor(db)
    db.commit()
    resp = patch(client, teacher, {"pass_mark": 0.9})
    assert resp.status_code == 422, resp.text
    assert "pass_mark" in resp.json()["detail"] and "检查拼写" in resp.json()["detail_zh"]
    for deadline in ("0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-12:00"):
        resp = patch(client, teacher, {"deadline": deadline, "daily_limit": 3})
        assert resp.status_code == 422, resp.text
        assert "2000" in resp.json()["detail_zh"]
    body = client.get("/api/v1/assignments/phone-price", headers=auth(teacher)).json()
    assert body["daily_limit"] != 3 and body["queue"] == "grading"
    assert patch(client, teacher, {"queue": "gpu"}).json()["queue"] == "gpu"
