"""Grades out: per-assignment scores.csv and the course grade book as Excel-ready CSV (UTF-8 with a
BOM, CRLF, Chinese names), and exam eligibility at the 80% edge."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from grader.assignments import BUILTIN_ASSIGNMENTS
from service.assignments.models import Assignment
from service.assignments.service import create_from_spec
from service.config import Settings
from service.leaderboards import service as boards
from service.users.models import User
from tests.service.factories import auth, create_assignment, create_instructor, create_user
from tests.service.test_leaderboards import T0, graded, submit

BOM = b"\xef\xbb\xbf"


def _rows(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"), newline="")))


def test_scores_csv(client: TestClient, db: Session, settings: Settings) -> None:
    a = create_assignment(db, "phone-price", daily_limit=100)
    zhang, _ = create_user(db, display_name="张三", student_number="2024001")
    li, student_token = create_user(db, display_name="李四", student_number="2024002")
    create_user(db, display_name="王五", student_number="2024003")  # never submitted
    _, teacher = create_instructor(db)
    graded(db, settings, zhang, a, 0.90, 0, public=0.9, private=0.9)
    best = graded(db, settings, zhang, a, 0.97, 1, public=0.96, private=0.98)
    graded(db, settings, zhang, a, 0.97, 2, public=0.97, private=0.97)  # equal, later: not the best
    graded(db, settings, li, a, 0.5, 3, error="timeout")
    db.commit()

    resp = client.get("/api/v1/assignments/phone-price/scores.csv", headers=auth(teacher))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv")
    assert resp.headers["content-disposition"] == 'attachment; filename="phone-price-scores.csv"'
    content = resp.content
    assert content.startswith(BOM) and b"\r\n" in content and b"\n" not in content.replace(b"\r\n", b"")
    assert "张三".encode() in content
    rows = _rows(content)
    assert list(rows[0]) == [
        "student_number",
        "display_name",
        "best_score",
        "passed",
        "submissions",
        "best_submission_id",
        "best_submitted_at",
        "late",
    ]
    assert rows[0] == {
        "student_number": "2024001",
        "display_name": "张三",
        "best_score": "0.97",
        "passed": "1",
        "submissions": "3",
        "best_submission_id": str(best.id),
        "best_submitted_at": "2026-03-02 10:01:00",  # Beijing time
        "late": "0",
    }
    assert rows[1]["display_name"] == "李四" and rows[1]["best_score"] == "" and rows[1]["passed"] == "0"
    assert rows[1]["submissions"] == "1"
    assert rows[2] == {
        "student_number": "2024003",
        "display_name": "王五",
        "best_score": "",
        "passed": "0",
        "submissions": "0",
        "best_submission_id": "",
        "best_submitted_at": "",
        "late": "",
    }
    assert (
        client.get("/api/v1/assignments/phone-price/scores.csv", headers=auth(student_token)).status_code
        == 403
    )


def test_gradebook_csv(client: TestClient, db: Session, settings: Settings) -> None:
    assignments = [create_assignment(db, slug, daily_limit=100) for slug in BUILTIN_ASSIGNMENTS]
    zhang, _ = create_user(db, display_name="张三", student_number="2024001")
    create_user(db, display_name="李四", student_number="2024002")
    _, teacher = create_instructor(db)
    for i, a in enumerate(assignments[:4]):
        graded(db, settings, zhang, a, 1.0, i, passed=True)
    graded(db, settings, zhang, assignments[4], 0.25, 9, passed=False)
    db.commit()

    resp = client.get("/api/v1/gradebook.csv", headers=auth(teacher))
    assert resp.status_code == 200 and resp.content.startswith(BOM)
    assert resp.headers["content-disposition"] == 'attachment; filename="gradebook.csv"'
    header, *lines = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"), newline="")))
    slugs = list(BUILTIN_ASSIGNMENTS)
    assert header == [
        "student_number",
        "display_name",
        *[col for slug in slugs for col in (f"{slug} score", f"{slug} passed", f"{slug} passed late")],
        "passed",
        "total",
        "eligible",
    ]
    zhang_row = dict(zip(header, lines[0], strict=True))
    assert zhang_row["display_name"] == "张三"
    assert [zhang_row[f"{s} passed"] for s in slugs] == ["1", "1", "1", "1", "0"]
    assert zhang_row[f"{slugs[4]} score"] == "0.25"
    assert (zhang_row["passed"], zhang_row["total"], zhang_row["eligible"]) == ("4", "5", "1")
    assert [zhang_row[f"{s} passed late"] for s in slugs] == ["0", "0", "0", "0", "0"]
    li_row = dict(zip(header, lines[1], strict=True))
    assert li_row[f"{slugs[0]} score"] == "" and (li_row["passed"], li_row["eligible"]) == ("0", "0")
    _, student = create_user(db)
    db.commit()
    assert client.get("/api/v1/gradebook.csv", headers=auth(student)).status_code == 403


def test_gradebook_says_which_passes_came_only_after_the_deadline(
    client: TestClient, db: Session, settings: Settings
) -> None:
    a = create_assignment(db, "activations", daily_limit=100, deadline=T0 + timedelta(minutes=5))
    late_only, _ = create_user(db)
    both, _ = create_user(db)
    _, teacher = create_instructor(db)
    graded(db, settings, late_only, a, 0.5, 1, passed=False)
    graded(db, settings, late_only, a, 1.0, 10, passed=True)  # after the deadline
    graded(db, settings, both, a, 1.0, 1, passed=True)
    graded(db, settings, both, a, 1.0, 10, passed=True)
    db.commit()
    body = client.get("/api/v1/gradebook.csv", headers=auth(teacher)).content.decode("utf-8-sig")
    rows = {r["student_number"]: r for r in csv.DictReader(io.StringIO(body))}
    assert (
        rows[late_only.student_number]["activations passed"],
        rows[late_only.student_number]["activations passed late"],
    ) == ("1", "1")
    assert (
        rows[both.student_number]["activations passed"],
        rows[both.student_number]["activations passed late"],
    ) == ("1", "0")


def test_csv_cells_cannot_become_excel_formulas(client: TestClient, db: Session) -> None:
    create_assignment(db)
    create_user(db, display_name='=HYPERLINK("http://x","点我")', student_number="+2024")
    _, teacher = create_instructor(db)
    db.commit()
    row = _rows(client.get("/api/v1/assignments/activations/scores.csv", headers=auth(teacher)).content)[0]
    assert row["display_name"] == '\'=HYPERLINK("http://x","点我")' and row["student_number"] == "'+2024"


def _course(db: Session, n: int) -> list[Assignment]:
    """n assignments: the built-ins, then copies of activations under new slugs."""
    out = [create_assignment(db, slug) for slug in list(BUILTIN_ASSIGNMENTS)[:n]]
    for i in range(n - len(out)):
        out.append(
            create_from_spec(db, BUILTIN_ASSIGNMENTS["activations"].model_copy(update={"slug": f"extra-{i}"}))
        )
    return out


def _pass(db: Session, settings: Settings, user: User, assignments: list[Assignment]) -> None:
    for i, a in enumerate(assignments):
        graded(db, settings, user, a, 1.0, i, passed=True)


@pytest.mark.parametrize(
    ("total", "passed", "eligible"),
    [(5, 4, True), (5, 3, False), (5, 5, True), (9, 7, False), (9, 8, True), (10, 8, True), (0, 0, False)],
)
def test_eligibility_edge(total: int, passed: int, eligible: bool) -> None:
    assert boards.is_eligible(passed, total) is eligible


def test_eligibility_api(client: TestClient, db: Session, settings: Settings) -> None:
    assignments = _course(db, 5)
    four, token = create_user(db, student_number="2024004")
    three, _ = create_user(db, student_number="2024003")
    create_user(db, student_number="2024000")  # nothing submitted
    _, teacher = create_instructor(db)
    _pass(db, settings, four, assignments[:4])
    _pass(db, settings, three, assignments[:3])
    # Failing, erroring or passing the same assignment twice adds nothing.
    graded(db, settings, three, assignments[3], 0.5, 20, passed=False)
    graded(db, settings, three, assignments[4], 0.0, 21, error="crashed")
    graded(db, settings, three, assignments[0], 1.0, 22, passed=True)
    submit(db, settings, three, assignments[4], T0)
    db.commit()

    resp = client.get("/api/v1/eligibility", headers=auth(teacher))
    assert resp.status_code == 200
    got = {r["student_number"]: r for r in resp.json()}
    assert set(got) == {"2024000", "2024003", "2024004"}  # students only
    assert got["2024004"] == {
        "student_number": "2024004",
        "display_name": four.display_name,
        "passed": 4,
        "total": 5,
        "ratio": 0.8,
        "eligible": True,
    }
    assert (got["2024003"]["passed"], got["2024003"]["eligible"]) == (3, False)
    assert (got["2024000"]["passed"], got["2024000"]["ratio"], got["2024000"]["eligible"]) == (0, 0.0, False)
    assert client.get("/api/v1/eligibility", headers=auth(token)).status_code == 403


def test_eligibility_with_nine_assignments(db: Session, settings: Settings) -> None:
    assignments = _course(db, 9)
    seven, _ = create_user(db)
    eight, _ = create_user(db)
    _pass(db, settings, seven, assignments[:7])
    _pass(db, settings, eight, assignments[:8])
    got: dict[int, Any] = {r.user_id: r for r in boards.eligibility(db)}
    assert (got[seven.id].passed, got[seven.id].total, got[seven.id].eligible) == (7, 9, False)
    assert round(got[seven.id].ratio, 2) == 0.78
    assert (got[eight.id].passed, got[eight.id].eligible) == (8, True)
