from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from service.submissions.models import Submission
from tests.service.factories import auth, create_assignment, create_instructor, create_user
from tests.service.helpers import make_zip


def _upload(client: TestClient, token: str, slug: str = "activations") -> int:
    resp = client.post(
        f"/api/v1/assignments/{slug}/submissions",
        files={"file": ("hw.zip", make_zip({"activations.py": "x = 1\n"}))},
        headers=auth(token),
    )
    assert resp.status_code == 202, resp.text
    return int(resp.json()["id"])


def test_no_token_is_401_with_bearer_challenge(client: TestClient, db: Session) -> None:
    create_assignment(db)
    db.commit()
    for method, path in [
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/assignments"),
        ("GET", "/api/v1/me/submissions"),
        ("GET", "/api/v1/submissions/1"),
        ("POST", "/api/v1/assignments/activations/submissions"),
    ]:
        resp = client.request(method, path)
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.json()["error"] == "unauthorized"
        assert resp.json()["detail_zh"]
        assert resp.headers["WWW-Authenticate"] == "Bearer"


def test_wrong_token_and_wrong_scheme_are_401(client: TestClient, db: Session) -> None:
    _, token = create_user(db)
    db.commit()
    wrong = client.get("/api/v1/me", headers=auth(token + "x"))
    assert wrong.status_code == 401
    assert "copied the whole token" in wrong.json()["detail"] and "完整复制" in wrong.json()["detail_zh"]
    assert client.get("/api/v1/me", headers={"Authorization": f"Basic {token}"}).status_code == 401
    me = client.get("/api/v1/me", headers=auth(token))
    assert me.status_code == 200
    assert me.json()["role"] == "student"


def test_tokens_are_stored_hashed(db: Session) -> None:
    user, token = create_user(db)
    assert token.startswith("hwg_") and len(token) > 40
    assert token not in user.token_hash and len(user.token_hash) == 64


def test_other_students_submission_is_404_owner_and_instructor_see_it(
    client: TestClient, db: Session
) -> None:
    create_assignment(db)
    _, alice = create_user(db)
    _, bob = create_user(db)
    _, teacher = create_instructor(db)
    db.commit()
    sub_id = _upload(client, alice)

    assert client.get(f"/api/v1/submissions/{sub_id}", headers=auth(alice)).status_code == 200
    resp = client.get(f"/api/v1/submissions/{sub_id}", headers=auth(bob))
    assert resp.status_code == 404
    assert resp.json()["error"] == "not_found"
    # Same answer as for an id that does not exist: ids reveal nothing.
    assert client.get("/api/v1/submissions/999999", headers=auth(bob)).json()["error"] == "not_found"
    assert client.get(f"/api/v1/submissions/{sub_id}", headers=auth(teacher)).status_code == 200
    assert client.get("/api/v1/me/submissions", headers=auth(bob)).json() == []


def test_student_on_instructor_routes_is_403(client: TestClient, db: Session) -> None:
    create_assignment(db)
    _, student = create_user(db)
    _, teacher = create_instructor(db)
    db.commit()
    for method, path, body in [
        ("GET", "/api/v1/users", None),
        ("GET", "/api/v1/assignments/activations/submissions", None),
        ("PATCH", "/api/v1/assignments/activations", {"daily_limit": 99}),
    ]:
        resp = client.request(method, path, json=body, headers=auth(student))
        assert resp.status_code == 403, (path, resp.text)
        assert resp.json()["error"] == "forbidden"
        assert client.request(method, path, json=body, headers=auth(teacher)).status_code == 200, path


def test_instructor_updates_course_rules(client: TestClient, db: Session) -> None:
    assignment = create_assignment(db, "phone-price")
    _, teacher = create_instructor(db)
    db.commit()
    resp = client.patch(
        "/api/v1/assignments/phone-price",
        json={"daily_limit": 3, "pass_threshold": 0.9, "deadline": "2026-12-01T23:59:00+08:00"},
        headers=auth(teacher),
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["daily_limit"] == 3 and body["pass_threshold"] == 0.9
    assert body["deadline"].startswith("2026-12-01T15:59:00")  # stored and shown in UTC
    db.refresh(assignment)
    assert assignment.grading_spec().pass_threshold == 0.9
    # A limit the INTEGER column cannot hold is a 422 that says so, not a 500 from the database.
    huge = client.patch("/api/v1/assignments/phone-price", json={"daily_limit": 2**31}, headers=auth(teacher))
    assert huge.status_code == 422, huge.text
    assert "daily_limit" in huge.json()["detail"] and "1000000" in huge.json()["detail"]


def test_submission_listing_by_instructor_shows_owner(client: TestClient, db: Session) -> None:
    create_assignment(db)
    alice_user, alice = create_user(db)
    _, teacher = create_instructor(db)
    db.commit()
    sub_id = _upload(client, alice)
    rows = client.get("/api/v1/assignments/activations/submissions", headers=auth(teacher)).json()
    assert [(r["id"], r["owner"]) for r in rows] == [(sub_id, alice_user.student_number)]
    assert db.get(Submission, sub_id) is not None


def test_ids_beyond_any_row_are_404_and_a_page_from_beyond_them_is_the_first(
    client: TestClient, db: Session
) -> None:
    # An id no integer column holds (2**63 and up overflow SQLite's INTEGER and Postgres' bigint)
    # is a JSON 404 like any id that does not exist, not a 500 from the database driver.
    create_assignment(db)
    _, alice = create_user(db)
    db.commit()
    sub_id = _upload(client, alice)
    for huge in (2**31, 2**63 - 1, 2**63, 10**30):
        resp = client.get(f"/api/v1/submissions/{huge}", headers=auth(alice))
        assert resp.status_code == 404, (huge, resp.text)
        assert resp.json()["error"] == "not_found" and resp.json()["detail_zh"]
        page = client.get(f"/api/v1/me/submissions?before_id={huge}", headers=auth(alice))
        assert page.status_code == 200, (huge, page.text)
        assert [row["id"] for row in page.json()] == [sub_id]


def test_framework_errors_speak_chinese_too(client: TestClient, db: Session) -> None:
    create_assignment(db)
    _, alice = create_user(db)
    db.commit()
    for query, zh in (
        ("limit=0", "应大于或等于 1"),
        ("limit=201", "应小于或等于 200"),
        ("limit=abc", "应为整数"),
    ):
        resp = client.get(f"/api/v1/me/submissions?{query}", headers=auth(alice))
        assert resp.status_code == 422, resp.text
        assert resp.json()["detail_zh"] == f"请求格式不正确：query.limit：{zh}", resp.json()
    unknown = client.get("/api/v1/nope", headers=auth(alice))
    assert unknown.status_code == 404 and "/docs" in unknown.json()["detail_zh"]
    wrong = client.delete("/api/v1/me", headers=auth(alice))
    assert wrong.status_code == 405 and "请求方法" in wrong.json()["detail_zh"]
    # A file name of thousands of characters is more than the multipart parser takes.
    long = client.post(
        "/api/v1/assignments/activations/submissions",
        files={"file": ("作" * 5000 + ".zip", make_zip({"activations.py": "x = 1\n"}))},
        headers=auth(alice),
    )
    assert long.status_code == 400, long.text
    assert "rename the file" in long.json()["detail"] and "请重命名文件" in long.json()["detail_zh"]
