"""The instructor's HTML pages, in-process: login and session cookie, every page, the charts,
attachment downloads, and escaping of everything a student controls."""

from __future__ import annotations

import io
import re
import zipfile
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.orm import Session

from grader.report import CheckResult, DatasetInfo, ErrorInfo, GradeReport, Message
from service.assignments.models import Assignment
from service.config import Settings
from service.submissions import service as submissions_service
from service.submissions.models import Submission
from service.users.models import User
from service.users.service import rotate_token
from service.web import session as web_session
from tests.service.factories import create_assignment, create_instructor, create_user
from tests.service.helpers import make_zip

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + b"\x00" * 64 + b"\xff\xd9"


# --- seeding (also used by test_browser.py) ------------------------------------------------------


def graded_submission(
    session: Session,
    settings: Settings,
    owner: User,
    assignment: Assignment,
    *,
    score: float,
    passed: bool | None = None,
    at: datetime | None = None,
    files: dict[str, str | bytes] | None = None,
    **report: Any,
) -> Submission:
    """A submission stored like an upload and finished with `report` through the lease protocol."""
    zip_bytes = make_zip(files or {"activations.py": f"# {owner.student_number} {score}\n"})
    sub = submissions_service.create_submission(
        session,
        owner=owner,
        assignment=assignment,
        filename="hw.zip",
        stream=io.BytesIO(zip_bytes),
        settings=settings,
    )
    if at is not None:
        sub.created_at = at
        session.flush()
    claim = submissions_service.claim(session, sub.id, lease_s=60, max_attempts=3, worker="test")
    assert claim is not None
    status = "error" if report.get("error") else "graded"
    full = GradeReport(
        status=status,
        assignment=assignment.slug,
        score=score,
        passed=score >= assignment.pass_threshold if passed is None else passed,
        **report,
    )
    assert submissions_service.record_report(session, sub.id, claim.attempt, full)
    session.flush()
    session.refresh(sub)
    return sub


PODIUM = [("王芳", 0.97), ("李雷", 0.955), ("张伟", 0.93)]
OTHERS = [("赵敏", 0.81), ("陈静", 0.42)]


def seed_course(session: Session, settings: Settings) -> dict[str, Any]:
    """An instructor, the phone-price assignment and five students with graded submissions."""
    instructor, token = create_instructor(session)
    assignment = create_assignment(session, "phone-price", pass_threshold=0.9)
    start = datetime(2026, 3, 2, 1, 30, tzinfo=UTC)
    students: dict[str, User] = {}
    subs: dict[str, Submission] = {}
    for i, (name, score) in enumerate(PODIUM + OTHERS):
        student, _ = create_user(session, display_name=name)
        students[name] = student
        # An earlier, weaker try for everyone: the boards must pick the best one.
        graded_submission(
            session, settings, student, assignment, score=score / 2, at=start + timedelta(hours=i)
        )
        subs[name] = graded_submission(
            session,
            settings,
            student,
            assignment,
            score=score,
            at=start + timedelta(days=1, hours=i),
            metrics={
                "accuracy": score,
                "public_accuracy": score,
                "private_accuracy": score,
                "confusion_matrix": [[48, 2, 0, 0], [3, 45, 2, 0], [0, 4, 44, 2], [0, 0, 1, 49]],
            },
            checks=[CheckResult(name="accuracy on the hidden test set", passed=score >= 0.9, got=score)],
            dataset=DatasetInfo(name="phone-price/hidden.csv", sha256="ab" * 32, n=400),
        )
    session.commit()
    return {
        "instructor": instructor,
        "token": token,
        "assignment": assignment,
        "students": students,
        "subs": subs,
    }


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def course(db: Session, settings: Settings) -> dict[str, Any]:
    return seed_course(db, settings)


def login(client: TestClient, token: str) -> None:
    response = client.post("/ui/login", data={"token": token, "next": "/ui/"}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/ui/"


@pytest.fixture
def ui(client: TestClient, course: dict[str, Any]) -> TestClient:
    """A client logged in as the course's instructor."""
    login(client, course["token"])
    return client


def text_of(html: str) -> str:
    """The page's visible text, whitespace collapsed (entities decoded)."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


# --- login ---------------------------------------------------------------------------------------


def test_pages_redirect_to_login_when_logged_out(client: TestClient, course: dict[str, Any]) -> None:
    for path in (
        "/ui/",
        "/ui/eligibility",
        "/ui/assignments/phone-price",
        f"/ui/submissions/{course['subs']['王芳'].id}",
    ):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/ui/login?next=%2Fui%2F")
    page = client.get("/ui/assignments/phone-price")
    assert page.status_code == 200 and 'name="token"' in page.text
    assert 'value="/ui/assignments/phone-price"' in page.text


def test_login_sets_a_hardened_cookie_and_returns_to_next(client: TestClient, course: dict[str, Any]) -> None:
    response = client.post(
        "/ui/login", data={"token": course["token"], "next": "/ui/eligibility"}, follow_redirects=False
    )
    assert response.status_code == 303 and response.headers["location"] == "/ui/eligibility"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{web_session.COOKIE_NAME}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # env is "test"; prod adds it (see the next test)
    assert course["token"] not in cookie
    assert client.get("/ui/eligibility").status_code == 200


def test_cookie_is_secure_in_prod(settings: Settings, course: dict[str, Any]) -> None:
    from fastapi import Response

    prod = settings.model_copy(update={"env": "prod"})
    response = Response()
    web_session.set_cookie(response, prod, course["instructor"])
    assert "Secure" in response.headers["set-cookie"]


def test_bad_and_student_tokens_are_refused_in_both_languages(
    client: TestClient, db: Session, course: dict[str, Any]
) -> None:
    _, student_token = create_user(db)
    db.commit()
    bad = client.post("/ui/login", data={"token": "hwg_nope"}, follow_redirects=False)
    assert bad.status_code == 401 and "not valid" in bad.text and "令牌无效" in bad.text
    assert "set-cookie" not in bad.headers
    student = client.post("/ui/login", data={"token": student_token}, follow_redirects=False)
    assert student.status_code == 403 and "set-cookie" not in student.headers
    assert "instructors only" in student.text and "仅供教师使用" in student.text
    empty = client.post("/ui/login", data={"token": " "}, follow_redirects=False)
    assert empty.status_code == 401 and "请输入教师令牌" in empty.text
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_login_refuses_a_cross_site_post(client: TestClient, course: dict[str, Any]) -> None:
    response = client.post(
        "/ui/login",
        data={"token": course["token"]},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert response.status_code == 401 and "set-cookie" not in response.headers


def test_login_behind_a_reverse_proxy(client: TestClient, course: dict[str, Any]) -> None:
    response = client.post(
        "/ui/login",
        data={"token": course["token"]},
        headers={"Origin": "https://grade.example.edu", "X-Forwarded-Host": "grade.example.edu"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and "set-cookie" in response.headers
    same = client.post(
        "/ui/login",
        data={"token": course["token"]},
        headers={"Origin": "http://testserver"},
        follow_redirects=False,
    )
    assert same.status_code == 303


def test_next_cannot_leave_the_site(client: TestClient, course: dict[str, Any]) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/", "/docs", "/ui/\\\\evil"):
        response = client.post(
            "/ui/login", data={"token": course["token"], "next": target}, follow_redirects=False
        )
        assert response.headers["location"] == "/ui/", target


def test_logout_ends_the_session(ui: TestClient) -> None:
    response = ui.post("/ui/logout", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    assert f'{web_session.COOKIE_NAME}=""' in response.headers["set-cookie"]
    assert ui.get("/ui/", follow_redirects=False).status_code == 303


def test_forged_expired_and_rotated_sessions_are_refused(
    client: TestClient, db: Session, settings: Settings, course: dict[str, Any]
) -> None:
    instructor = course["instructor"]
    good = web_session.encode(settings, instructor)
    other = settings.model_copy(update={"secret_key": SecretStr("another-secret")})
    for value in (good[:-2] + "xx", web_session.encode(other, instructor), "garbage"):
        client.cookies.set(web_session.COOKIE_NAME, value)
        assert client.get("/ui/", follow_redirects=False).status_code == 303
    assert web_session.decode(settings, good, max_age_s=-1) is None
    client.cookies.set(web_session.COOKIE_NAME, good)
    assert client.get("/ui/", follow_redirects=False).status_code == 200
    rotate_token(db, instructor)
    db.commit()
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_a_students_session_cookie_is_useless(
    client: TestClient, db: Session, settings: Settings, course: dict[str, Any]
) -> None:
    student = course["students"]["王芳"]
    client.cookies.set(web_session.COOKIE_NAME, web_session.encode(settings, student))
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_landing_page_links_the_instructor_pages(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and 'href="/ui/"' in page.text and 'href="/docs"' in page.text


# --- pages ---------------------------------------------------------------------------------------


def podium_names(html: str, slug: str) -> list[str]:
    card = html.split(f'data-slug="{slug}"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'<a class="name" href="/ui/students/\d+">([^<]*)</a>', card)


def test_overview_shows_counts_and_the_podium(ui: TestClient, course: dict[str, Any]) -> None:
    page = ui.get("/ui/")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "private, no-store"
    assert podium_names(page.text, "phone-price") == [name for name, _ in PODIUM]
    card = text_of(page.text.split('data-slug="phone-price"', 1)[1].split("</section>", 1)[0])
    assert "10 submissions 提交" in card and "5 students 学生" in card and "10 graded 已评分" in card
    assert "3 passed 通过" in card
    assert "97.00%" in card and "1st 第一名" in card and "3rd 第三名" in card
    # 2026-03-03 01:30 UTC is 09:30 in Asia/Shanghai.
    assert "2026-03-03 09:30" in card
    assert f'href="/ui/submissions/{course["subs"]["王芳"].id}"' in page.text
    assert "Overview 总览" in page.text and "Log out 退出" in page.text


def test_assignment_page_has_both_boards_and_the_histogram(ui: TestClient, course: dict[str, Any]) -> None:
    page = ui.get("/ui/assignments/phone-price")
    assert page.status_code == 200
    html = page.text
    for board in ("private", "public"):
        table = html.split(f'class="board board-{board}"', 1)[1].split("</table>", 1)[0]
        names = re.findall(r'href="/ui/students/\d+">([^<]*)</a>', table)
        assert names == [name for name, _ in PODIUM + OTHERS], board
    histogram = html.split('class="card chart histogram"', 1)[1].split("</svg>", 1)[0]
    assert "<svg" in histogram and "pass 及格线 0.9" in histogram and "n=5" in histogram
    assert "Latest submissions" in html and html.count('href="/ui/submissions/') >= 10


def test_unknown_pages_are_html_404s(ui: TestClient) -> None:
    paths = ["/ui/assignments/nope", "/ui/submissions/999999", "/ui/students/999999"]
    # Ids no INTEGER column holds are pages that do not exist too, not a database error.
    # And so are ids that are no number at all (they were the API's JSON 422).
    for huge in (2**31, 2**63, "abc", "-1", "1e3", "١٢"):
        paths += [f"/ui/submissions/{huge}", f"/ui/submissions/{huge}/zip", f"/ui/students/{huge}"]
        paths.append(f"/ui/submissions/{huge}/attachment?name=a.jpg")
    for path in paths:
        response = ui.get(path)
        assert response.status_code == 404 and "Not found 未找到" in response.text, path


def test_report_page_shows_everything(
    ui: TestClient, db: Session, settings: Settings, course: dict[str, Any]
) -> None:
    student = course["students"]["陈静"]
    sub = graded_submission(
        db,
        settings,
        student,
        course["assignment"],
        score=0.5,
        files={"model.py": "x = 1\n", "derivation.jpg": JPEG},
        metrics={"accuracy": 0.5, "macro_f1": 0.4567891, "confusion_matrix": [[7, 3], [2, 8]]},
        checks=[
            CheckResult(
                name="relu_grad(0)",
                passed=False,
                message="relu_grad(0) must be 0",
                message_zh="relu_grad(0) 应为 0",
                expected=0.0,
                got=1.0,
                hint=Message(en="left derivative", zh="左导数"),
            )
        ],
        hints=[Message(en="Scale the features.", zh="请标准化特征。")],
        logs_tail="epoch 1 loss 0.3\n",
        timings={"sandbox_s": 1.25},
        sandbox="bwrap: namespaces, seccomp, rlimits",
        dataset=DatasetInfo(name="phone-price/hidden.csv", sha256="cd" * 32, n=20),
        attachments=["derivation.jpg"],
    )
    db.commit()
    page = ui.get(f"/ui/submissions/{sub.id}")
    assert page.status_code == 200
    text = text_of(page.text)
    for expected in (
        "陈静",
        "50.00%",
        "not passed 未通过",
        "relu_grad(0) must be 0",
        "relu_grad(0) 应为 0",
        "expected 期望 0.0",
        "got 实际 1.0",
        "left derivative",
        "Scale the features.",
        "请标准化特征。",
        "macro_f1 0.4568",
        "epoch 1 loss 0.3",
        "bwrap: namespaces, seccomp, rlimits",
        "phone-price/hidden.csv",
        "cd" * 32,
        "sandbox_s 1.250 s",
        "derivation.jpg",
        "download zip 下载压缩包",
    ):
        assert expected in text, expected
    confusion = page.text.split('class="chart confusion"', 1)[1].split("</svg>", 1)[0]
    assert confusion.count("<rect") == 4 + 1 and ">8</text>" in confusion and "predicted 预测" in confusion
    assert f"/ui/submissions/{sub.id}/attachment?name=derivation.jpg" in page.text
    assert '<pre class="logs">' in page.text


def test_error_report_shows_the_error(
    ui: TestClient, db: Session, settings: Settings, course: dict[str, Any]
) -> None:
    sub = graded_submission(
        db,
        settings,
        course["students"]["赵敏"],
        course["assignment"],
        score=0.0,
        error=ErrorInfo(code="import_failed", message="No module named 'tensorflow'", message_zh="无法导入"),
    )
    db.commit()
    text = text_of(ui.get(f"/ui/submissions/{sub.id}").text)
    assert "error 出错" in text and "[import_failed]" in text and "No module named 'tensorflow'" in text
    assert "无法导入" in text


def test_the_graders_own_traceback_is_on_the_instructors_page_and_not_in_the_students_report(
    ui: TestClient, db: Session, settings: Settings, course: dict[str, Any]
) -> None:
    student = course["students"]["赵敏"]
    sub = graded_submission(
        db,
        settings,
        student,
        course["assignment"],
        score=0.0,
        error=ErrorInfo(
            code="internal", message="The grader failed on its own side.", message_zh="评测程序自身出错。"
        ),
        logs_tail="STUDENT-OUTPUT",
        grader_traceback='Traceback (most recent call last):\n  File "grader/grade.py"\nRuntimeError: GRADER-BUG',
    )
    token = rotate_token(db, student)
    db.commit()
    text = text_of(ui.get(f"/ui/submissions/{sub.id}").text)
    assert "Where the grader failed" in text and "RuntimeError: GRADER-BUG" in text
    assert "STUDENT-OUTPUT" in text
    mine = ui.get(f"/api/v1/submissions/{sub.id}", headers={"Authorization": f"Bearer {token}"})
    assert mine.status_code == 200, mine.text
    assert mine.json()["result"]["logs_tail"] == "STUDENT-OUTPUT"
    assert "GRADER-BUG" not in mine.text


def test_student_page_lists_submissions_with_a_timeline(ui: TestClient, course: dict[str, Any]) -> None:
    student = course["students"]["李雷"]
    page = ui.get(f"/ui/students/{student.id}")
    assert page.status_code == 200
    assert "李雷" in page.text and student.student_number in page.text
    timeline = page.text.split('class="card chart timeline"', 1)[1].split("</svg>", 1)[0]
    assert timeline.count("<circle") == 2 and "<polyline" in timeline
    table = page.text.split("All submissions", 1)[1]
    assert table.count('href="/ui/submissions/') == 2
    assert "95.50%" in page.text and "47.75%" in page.text


def test_eligibility_page(ui: TestClient, course: dict[str, Any]) -> None:
    page = ui.get("/ui/eligibility")
    assert page.status_code == 200
    text = text_of(page.text)
    assert "Exam eligibility" in text and "考试资格" in text
    for name in course["students"]:
        assert name in text
    assert "1 / 1" in text and "0 / 1" in text
    assert "eligible 具备" in text and "not eligible 不具备" in text


# --- downloads -----------------------------------------------------------------------------------


@pytest.fixture
def with_attachments(db: Session, settings: Settings, course: dict[str, Any]) -> Submission:
    sub = graded_submission(
        db,
        settings,
        course["students"]["张伟"],
        course["assignment"],
        score=0.93,
        # One top folder, as students zip it; the grader reports names relative to it.
        files={
            "hw3/model.py": "x = 1\n",
            "hw3/photos/推导.jpg": JPEG,
            "hw3/notes.html": "<script>alert(1)</script>",
            "hw3/secret.txt": "not listed",
        },
        attachments=["photos/推导.jpg", "notes.html"],
        attachments_root="hw3",
    )
    db.commit()
    return sub


def test_attachment_download(ui: TestClient, with_attachments: Submission) -> None:
    base = f"/ui/submissions/{with_attachments.id}/attachment"
    response = ui.get(base, params={"name": "photos/推导.jpg"})
    assert response.status_code == 200 and response.content == JPEG
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"__.jpg\"; filename*=UTF-8''%E6%8E%A8%E5%AF%BC.jpg"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    inline = ui.get(base, params={"name": "photos/推导.jpg", "inline": "1"})
    assert inline.headers["content-disposition"].startswith("inline;")
    # Student HTML is never served as HTML, and never inline.
    html = ui.get(base, params={"name": "notes.html", "inline": "1"})
    assert html.status_code == 200 and html.headers["content-type"] == "application/octet-stream"
    assert html.headers["content-disposition"].startswith("attachment;")
    assert "sandbox" in html.headers["content-security-policy"]
    # Only names the grader listed, never a path of our making.
    for name in ("secret.txt", "hw3/secret.txt", "../../etc/passwd", "model.py"):
        assert ui.get(base, params={"name": name}).status_code == 404, name


def test_attachments_of_a_folder_in_a_folder_and_beside_it_download(
    ui: TestClient, db: Session, settings: Settings, course: dict[str, Any], tmp_path: Path
) -> None:
    """Intake looks through hw/hw/ and lists a README beside it by its zip path: both download (the
    lookup knew one top folder only)."""
    from grader.intake import unpack

    files: dict[str, str | bytes] = {
        "README.md": "# beside",
        "hw/hw/model.py": "x = 1\n",
        "hw/hw/photos/推导.jpg": JPEG,
        "hw/notes.md": "also beside",
    }
    (tmp_path / "hw.zip").write_bytes(make_zip(files))
    unpacked = unpack(tmp_path / "hw.zip", tmp_path / "out")  # as the grader lists them
    assert unpacked.attachments == ["README.md", "hw/notes.md", "photos/推导.jpg"]
    sub = graded_submission(
        db,
        settings,
        course["students"]["张伟"],
        course["assignment"],
        score=0.9,
        files=files,
        attachments=unpacked.attachments,
        attachments_root=unpacked.top_folder,
    )
    db.commit()
    base = f"/ui/submissions/{sub.id}/attachment"
    for name, body in (
        ("README.md", b"# beside"),
        ("hw/notes.md", b"also beside"),
        ("photos/推导.jpg", JPEG),
    ):
        response = ui.get(base, params={"name": name})
        assert response.status_code == 200 and response.content == body, name


def test_an_attachment_is_the_one_under_the_looked_through_folder_not_a_deeper_namesake(
    ui: TestClient, db: Session, settings: Settings, course: dict[str, Any]
) -> None:
    """hw/notes.md is listed as notes.md, and hw/sub/notes.md as sub/notes.md: each name is one file."""
    files: dict[str, str | bytes] = {"hw/model.py": "", "hw/notes.md": "top", "hw/sub/notes.md": "deeper"}
    sub = graded_submission(
        db,
        settings,
        course["students"]["张伟"],
        course["assignment"],
        score=0.9,
        files=files,
        attachments=["notes.md", "sub/notes.md"],
        attachments_root="hw",
    )
    db.commit()
    base = f"/ui/submissions/{sub.id}/attachment"
    assert ui.get(base, params={"name": "notes.md"}).content == b"top"
    assert ui.get(base, params={"name": "sub/notes.md"}).content == b"deeper"
    # A result stored before the root was recorded: one top folder, as the intake then looked through.
    assert sub.result is not None
    sub.result.details = {k: v for k, v in sub.result.details.items() if k != "attachments_root"}
    db.commit()
    assert ui.get(base, params={"name": "notes.md"}).content == b"top"


def test_whole_zip_download(ui: TestClient, with_attachments: Submission) -> None:
    response = ui.get(f"/ui/submissions/{with_attachments.id}/zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    assert "attachment;" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert "hw3/photos/推导.jpg" in zf.namelist()


def test_grade_exports_download_with_the_session(ui: TestClient, course: dict[str, Any]) -> None:
    page = ui.get("/ui/assignments/phone-price").text
    assert 'href="/ui/assignments/phone-price/scores.csv"' in page and 'href="/ui/gradebook.csv"' in page
    assert "private half of the hidden test set" in page
    for path, name in (
        ("/ui/gradebook.csv", "gradebook.csv"),
        ("/ui/assignments/phone-price/scores.csv", "phone-price-scores.csv"),
    ):
        response = ui.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
        assert response.content.startswith(b"\xef\xbb\xbf") and "王芳".encode() in response.content
    assert ui.get("/ui/assignments/nope/scores.csv").status_code == 404


def test_downloads_need_the_session(client: TestClient, with_attachments: Submission) -> None:
    for path in (
        f"/ui/submissions/{with_attachments.id}/zip",
        f"/ui/submissions/{with_attachments.id}/attachment?name=notes.html",
        "/ui/gradebook.csv",
        "/ui/assignments/phone-price/scores.csv",
    ):
        assert client.get(path, follow_redirects=False).status_code == 303, path


# --- escaping ------------------------------------------------------------------------------------


def test_student_controlled_text_is_escaped(
    ui: TestClient, db: Session, settings: Settings, course: dict[str, Any]
) -> None:
    evil = "<script>alert('x')</script>"
    student, _ = create_user(db, display_name=f"Mallory {evil}")
    sub = graded_submission(
        db,
        settings,
        student,
        course["assignment"],
        score=0.99,
        files={"model.py": "", f"{evil}.jpg": JPEG},
        checks=[CheckResult(name=evil, passed=False, message=evil, message_zh=evil, expected=evil, got=evil)],
        hints=[Message(en=evil, zh=evil)],
        metrics={evil: evil, "confusion_matrix": [[1, 0], [0, 1]]},
        logs_tail=f"{evil}\n<img src=x onerror=alert(1)>",
        sandbox=evil,
        attachments=[f"{evil}.jpg"],
        discovery={"plan": evil},
    )
    db.commit()
    pages = [
        ui.get(f"/ui/submissions/{sub.id}").text,
        ui.get("/ui/").text,
        ui.get("/ui/assignments/phone-price").text,
        ui.get(f"/ui/students/{student.id}").text,
        ui.get("/ui/eligibility").text,
    ]
    for html in pages:
        assert "<script>alert" not in html
        assert "<img src=x" not in html
    report = pages[0]
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in report
    assert "&lt;img src=x onerror=alert(1)&gt;" in report
    # Mallory tops the board: the podium and the board escape the name too.
    assert "Mallory &lt;script&gt;" in pages[1]


# --- charts --------------------------------------------------------------------------------------


def test_charts_draw_counts_and_survive_odd_input() -> None:
    from service.web import charts

    svg = str(charts.histogram([0.0, 0.05, 0.95, 1.0, 1.0, float("nan")], 0.9))
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "n=5" in svg
    assert svg.count("<rect") == 2  # the 0.0-0.1 bin (2) and the 0.9-1.0 bin (3)
    assert ">2</text>" in svg and ">3</text>" in svg
    assert "pass 及格线 0.9" in str(charts.histogram([], 0.9))
    for bad in (None, [], [[1, 2]], [[1, "x"], [0, 1]], {"a": 1}):
        assert str(charts.confusion_matrix(bad)) == ""
    assert str(charts.score_timeline({})) == ""
    at = datetime(2026, 3, 1, tzinfo=UTC)
    one = str(charts.score_timeline({"<b>x</b>": [charts.Point(at=at, score=0.5, passed=False)]}))
    assert "<circle" in one and "<polyline" not in one and "&lt;b&gt;x&lt;/b&gt;" in one
