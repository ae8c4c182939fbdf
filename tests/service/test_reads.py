from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from grader.report import CheckResult, GradeReport, Message
from service.assignments.models import Assignment
from service.config import Settings
from service.submissions import service
from service.users.models import User
from tests.service.factories import auth, create_assignment, create_user
from tests.service.helpers import make_zip, selects
from tests.service.test_leaderboards import submit


def test_graded_submission_shows_its_result(client: TestClient, db: Session, settings: Settings) -> None:
    assignment = create_assignment(db)
    owner, token = create_user(db)
    sub = service.create_submission(
        db,
        owner=owner,
        assignment=assignment,
        filename="hw.zip",
        stream=io.BytesIO(make_zip({"activations.py": ""})),
        settings=settings,
    )
    claim = service.claim(db, sub.id, lease_s=60, max_attempts=3, worker="w")
    assert claim is not None
    report = GradeReport(
        status="graded",
        assignment="activations",
        score=0.5,
        passed=False,
        metrics={"checks_passed": 1, "checks_total": 2},
        checks=[
            CheckResult(
                name="relu_grad(0)",
                passed=False,
                expected=0.0,
                got=1.0,
                message="relu_grad(0) must be 0",
                message_zh="relu_grad(0) 应为 0",
            ),
            CheckResult(name="sigmoid", passed=True),
        ],
        hints=[Message(en="Use the left derivative at 0.", zh="在 0 处取左导数。")],
        sandbox="bwrap",
    )
    assert service.record_report(db, sub.id, claim.attempt, report)
    db.commit()

    with selects(db.get_bind()) as statements:
        body = client.get(f"/api/v1/submissions/{sub.id}", headers=auth(token)).json()
    # The user by token, then the submission joined to its owner, assignment and result: no second
    # round trip for the result.
    assert len(statements) == 2, statements
    assert body["status"] == "graded" and body["attempt"] == 1 and body["finished_at"]
    result = body["result"]
    assert result["score"] == 0.5 and result["passed"] is False and result["error"] is None
    assert result["checks"][0]["expected"] == 0.0 and result["checks"][0]["got"] == 1.0
    assert result["hints"] == [{"en": "Use the left derivative at 0.", "zh": "在 0 处取左导数。"}]
    assert result["metrics"]["checks_total"] == 2 and result["sandbox"] == "bwrap"

    mine = client.get("/api/v1/me/submissions", headers=auth(token)).json()
    # One summary line per submission; the report (checks, logs, metrics) stays at /submissions/{id}.
    assert mine == [
        {
            "id": sub.id,
            "assignment": "activations",
            "status": "graded",
            "late": False,
            "created_at": body["created_at"],
            "finished_at": body["finished_at"],
            "score": 0.5,
            "passed": False,
            "error_code": None,
        }
    ]
    filtered = client.get("/api/v1/me/submissions?assignment=activations", headers=auth(token)).json()
    assert [s["id"] for s in filtered] == [sub.id]
    assert client.get("/api/v1/me/submissions?assignment=nope", headers=auth(token)).status_code == 404


def test_assignments_are_listed(client: TestClient, db: Session) -> None:
    create_assignment(db, "phone-price")
    create_assignment(db, "mnist")
    _, token = create_user(db)
    db.commit()
    listed = client.get("/api/v1/assignments", headers=auth(token)).json()
    assert [a["slug"] for a in listed] == ["phone-price", "mnist"]
    one = client.get("/api/v1/assignments/phone-price", headers=auth(token)).json()
    assert one["pass_threshold"] == 0.9625 and one["title_zh"] == "手机价格分类" and one["daily_limit"] == 10
    assert client.get("/api/v1/assignments/nope", headers=auth(token)).status_code == 404


def test_healthz_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/api/v1/assignments/{slug}/submissions" in spec["paths"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_the_api_documents_the_error_shape_it_answers(client: TestClient, db: Session) -> None:
    """OpenAPI said every 422 was FastAPI's {"detail": [{loc, msg, type}]}, and named no 401/403/404:
    a client generated from it mis-read every error."""
    from service.errors import ErrorBody

    doc = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    operations = [
        (path, method, op)
        for path, item in doc["paths"].items()
        if path.startswith("/api/v1/")
        for method, op in item.items()
    ]
    assert len(operations) > 10
    for path, method, op in operations:
        for code in ("401", "404", "422", "500"):
            schema = op["responses"][code]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, method, code)
    upload = doc["paths"]["/api/v1/assignments/{slug}/submissions"]["post"]["responses"]
    assert upload["429"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    # ... and what the API answers is that shape.
    _, token = create_user(db)
    db.commit()
    for resp in (
        client.get("/api/v1/me/scores"),
        client.get("/api/v1/assignments/nope", headers=auth(token)),
        client.get("/api/v1/me/submissions?limit=0", headers=auth(token)),
    ):
        assert resp.status_code in (401, 404, 422)
        ErrorBody.model_validate(resp.json(), strict=True)


def test_unknown_route_uses_the_error_shape(client: TestClient) -> None:
    resp = client.get("/api/v1/nothing-here")
    assert resp.status_code == 404 and resp.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/assignments/%00",
        "/api/v1/assignments/a%00b/leaderboard",
        "/api/v1/me/submissions?assignment=%00",
        "/api/v1/submissions/99999999999999999",
    ],
)
def test_a_value_the_database_cannot_hold_is_the_clients_error(
    client: TestClient, db: Session, url: str
) -> None:
    """Postgres text cannot hold a NUL, nor its integer a number this big: these were 500 `internal`
    ("a fault on its side, not yours"); on SQLite the same requests were 404s."""
    _, token = create_user(db)
    db.commit()
    resp = client.get(url, headers=auth(token))
    assert resp.status_code in (400, 404), resp.text
    body = resp.json()
    assert body["error"] in ("invalid_request", "not_found") and body["detail_zh"]


def test_a_mistyped_assignment_names_the_courses_assignments(client: TestClient, db: Session) -> None:
    create_assignment(db)
    create_assignment(db, "backprop")
    _, token = create_user(db)
    db.commit()
    for url in ("/api/v1/assignments/activation/submissions", "/api/v1/me/submissions?assignment=activation"):
        resp = (client.post if "me/" not in url else client.get)(url, headers=auth(token))
        assert resp.status_code == 404, resp.text
        body = resp.json()
        assert (
            "No assignment 'activation'. The course's assignments are: activations, backprop"
            in body["detail"]
        )
        assert "本课程的作业有：activations, backprop" in body["detail_zh"]


def test_malformed_json_body_is_422_in_the_error_shape(client: TestClient, db: Session) -> None:
    create_assignment(db)
    from service.users.models import Role

    _, teacher = create_user(db, Role.instructor)
    db.commit()
    resp = client.patch(
        "/api/v1/assignments/activations", json={"daily_limit": "many"}, headers=auth(teacher)
    )
    assert resp.status_code == 422
    assert resp.json()["error"] == "invalid_request" and "daily_limit" in resp.json()["detail"]


def test_handout_is_the_training_file_never_the_hidden_rows(
    client: TestClient, db: Session, settings: Settings, tmp_path: Path
) -> None:
    import csv

    create_assignment(db, "phone-price")
    create_assignment(db, "mnist")
    _, token = create_user(db)
    db.commit()
    embedded = client.get("/api/v1/assignments/phone-price/handout", headers=auth(token))
    assert embedded.status_code == 200 and embedded.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(embedded.text)))
    assert len(rows) == 1600 and "price_range" in rows[0] and "ram" in rows[0]
    # With a data dir, the imported course handout is served (and hidden.csv next to it is not).
    (tmp_path / "phone-price").mkdir()
    (tmp_path / "phone-price" / "handout.csv").write_text("battery_power,price_range\n1000,2\n")
    (tmp_path / "phone-price" / "hidden.csv").write_text("SECRET")
    client.app.state.settings = settings.model_copy(update={"data_dir": tmp_path})
    try:
        served = client.get("/api/v1/assignments/phone-price/handout", headers=auth(token))
    finally:
        client.app.state.settings = settings
    assert served.text == "battery_power,price_range\n1000,2\n"
    missing = client.get("/api/v1/assignments/mnist/handout", headers=auth(token))
    assert missing.status_code == 404 and missing.json()["detail_zh"]
    assert client.get("/api/v1/assignments/phone-price/handout").status_code == 401


def test_my_submissions_are_paged_newest_first(client: TestClient, db: Session, settings: Settings) -> None:
    activations = create_assignment(db, daily_limit=100)
    backprop = create_assignment(db, "backprop", daily_limit=100)
    owner, token = create_user(db)
    other, _ = create_user(db)
    ids = []
    for n in range(7):
        sub = service.create_submission(
            db,
            owner=owner,
            assignment=activations if n % 2 == 0 else backprop,
            filename="hw.zip",
            stream=io.BytesIO(make_zip({"activations.py": f"# {n}"})),
            settings=settings,
        )
        ids.append(sub.id)
    service.create_submission(
        db,
        owner=other,
        assignment=activations,
        filename="hw.zip",
        stream=io.BytesIO(make_zip({"activations.py": "# someone else"})),
        settings=settings,
    )
    db.commit()
    newest_first = ids[::-1]

    def page(**params: object) -> tuple[list[int], str | None]:
        resp = client.get("/api/v1/me/submissions", params=params, headers=auth(token))
        assert resp.status_code == 200, resp.text
        return [s["id"] for s in resp.json()], resp.headers.get("link")

    assert page() == (newest_first, None)  # fewer than the default 50: no next page
    first, link = page(limit=3)
    assert first == newest_first[:3]
    assert link == f'</api/v1/me/submissions?before_id={first[-1]}&limit=3>; rel="next"'
    second, link = page(limit=3, before_id=first[-1])
    assert second == newest_first[3:6] and link is not None
    assert page(limit=3, before_id=second[-1]) == (newest_first[6:], None)
    # Filtered by assignment, the next link keeps the filter.
    mine_b = [i for i in newest_first if i in ids[1::2]]
    got, link = page(assignment="backprop", limit=2)
    assert got == mine_b[:2] and link is not None and "assignment=backprop" in link
    queued = client.get("/api/v1/me/submissions", params={"limit": 1}, headers=auth(token)).json()[0]
    assert queued["status"] == "queued" and queued["score"] is None and queued["passed"] is None
    for bad in ({"limit": 0}, {"limit": 201}, {"before_id": 0}):
        resp = client.get("/api/v1/me/submissions", params=bad, headers=auth(token))
        assert resp.status_code == 422 and resp.json()["error"] == "invalid_request"
    assert page(limit=200)[0] == newest_first


def test_an_assignments_submissions_are_paged_for_instructors(
    client: TestClient, db: Session, settings: Settings
) -> None:
    """It stopped at 500 rows with no way to the rest (the oldest students' submissions were out of reach)."""
    from service.users.models import Role

    activations = create_assignment(db, daily_limit=100)
    other = create_assignment(db, "backprop", daily_limit=100)
    students = [create_user(db)[0] for _ in range(2)]
    _, teacher = create_user(db, Role.instructor)
    ids = []
    for n in range(5):
        for assignment in (activations, other):
            sub = service.create_submission(
                db,
                owner=students[n % 2],
                assignment=assignment,
                filename="hw.zip",
                stream=io.BytesIO(make_zip({"activations.py": f"# {n} {assignment.slug}"})),
                settings=settings,
            )
            if assignment is activations:
                ids.append(sub.id)
    db.commit()
    url = "/api/v1/assignments/activations/submissions"
    seen, params, pages = [], {"limit": 2}, 0
    while True:
        resp = client.get(url, params=params, headers=auth(teacher))
        assert resp.status_code == 200, resp.text
        seen += [s["id"] for s in resp.json()]
        pages += 1
        link = resp.headers.get("link")
        if link is None:
            break
        assert link.startswith(f"<{url}?before_id=") and link.endswith('>; rel="next"')
        params = {"limit": 2, "before_id": seen[-1]}
    assert seen == ids[::-1] and pages == 3
    assert [s["id"] for s in client.get(url, headers=auth(teacher)).json()] == ids[::-1]


def test_a_queued_submission_says_how_many_are_ahead_of_it_in_its_queue(
    client: TestClient, db: Session, settings: Settings
) -> None:
    cpu = create_assignment(db)
    gpu = create_assignment(db, "mnist", queue="gpu")
    owner, token = create_user(db)
    other, _ = create_user(db)

    def upload(who: User, assignment: Assignment) -> int:
        return submit(db, settings, who, assignment, datetime.now(UTC)).id

    first = upload(other, cpu)
    upload(other, cpu)
    upload(other, gpu)  # another queue: not ahead of a CPU grading
    mine = upload(owner, cpu)
    db.commit()

    def ahead() -> object:
        body = client.get(f"/api/v1/submissions/{mine}", headers=auth(token)).json()
        return body["queue_ahead"]

    assert ahead() == 2
    assert service.claim(db, first, lease_s=60, max_attempts=3, worker="w") is not None  # running now
    db.commit()
    assert ahead() == 1
    claim = service.claim(db, mine, lease_s=60, max_attempts=3, worker="w")
    assert claim is not None
    db.commit()
    assert ahead() is None  # no longer waiting
