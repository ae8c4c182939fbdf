"""The instructor's pages under /ui: overview with podiums, assignment boards, reports, students,
eligibility. Server-rendered HTML; the browser authenticates with the session cookie (session.py)."""

from __future__ import annotations

import json
import zipfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from sqlalchemy.orm import Session

from grader.assignments import MODEL_KINDS
from service.assignments import service as assignments_service
from service.assignments.models import Assignment
from service.db import is_row_id
from service.deps import SessionDep, SettingsDep
from service.exports import service as exports
from service.exports.router import csv_response
from service.leaderboards import service as boards
from service.storage import BlobStore
from service.submissions import service as submissions_service
from service.submissions.models import Submission, SubmissionStatus
from service.users import service as users_service
from service.users.models import User
from service.web import attachments, charts
from service.web import session as web_session

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")

STATUS_LABELS = {
    SubmissionStatus.queued: "queued 排队中",
    SubmissionStatus.running: "running 评测中",
    SubmissionStatus.graded: "graded 已评分",
    SubmissionStatus.error: "error 出错",
}
MAX_VALUE_CHARS = 400


# --- template helpers ----------------------------------------------------------------------------


@pass_context
def _localtime(ctx: Context, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A UTC timestamp in the course time zone (settings.day_timezone)."""
    if value is None:
        return "—"
    return value.astimezone(ctx["settings"].tz).strftime(fmt)


def _pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _metric(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return _short(value)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


templates.env.filters.update(localtime=_localtime, pct=_pct, short=_short, metric=_metric, size=_size)
templates.env.globals.update(
    status_label=lambda s: STATUS_LABELS.get(s, str(s)), quote=quote, MODEL_KINDS=MODEL_KINDS
)


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    settings = request.app.state.settings
    response = templates.TemplateResponse(
        request,
        name,
        {"settings": settings, "tz_name": settings.day_timezone, **context},
        status_code=status_code,
    )
    # The pages show names, scores and student numbers: never cache them in shared caches.
    response.headers["Cache-Control"] = "private, no-store"
    return response


def not_found(request: Request, user: User, what_en: str, what_zh: str) -> HTMLResponse:
    return render(request, "not_found.html", {"user": user, "what_en": what_en, "what_zh": what_zh}, 404)


# --- authentication ------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    # Only our own pages: never an absolute URL or a scheme-relative //host (an open redirect).
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"


def _login_redirect(request: Request) -> HTTPException:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return HTTPException(status_code=303, headers={"Location": f"/ui/login?next={quote(target, safe='')}"})


def web_instructor(request: Request, session: SessionDep, settings: SettingsDep) -> User:
    """The logged-in instructor, or a redirect to the login page."""
    user = web_session.session_user(request, session, settings)
    if user is None:
        raise _login_redirect(request)
    return user


WebInstructor = Annotated[User, Depends(web_instructor)]


def _same_origin(request: Request) -> bool:
    """A form POST from our own pages: browsers send Origin on POST; it must name this host (as the
    client or a reverse proxy in front of us sees it). No Origin at all (old clients, curl) is allowed."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    netloc = origin.split("://", 1)[-1].rstrip("/")
    hosts = {request.headers.get("host", "")}
    hosts.update(h.strip() for h in request.headers.get("x-forwarded-host", "").split(",") if h.strip())
    return netloc in hosts


@router.get("/", response_class=HTMLResponse)
def landing(request: Request) -> HTMLResponse:
    """A small page linking the instructor pages and the API docs."""
    return render(request, "landing.html", {"user": None})


@router.get("/ui", response_class=RedirectResponse)
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/login", response_class=HTMLResponse)
def login_page(request: Request, session: SessionDep, settings: SettingsDep, next: str = "/ui/") -> Response:
    if web_session.session_user(request, session, settings) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, "login.html", {"user": None, "next": _safe_next(next), "error": None})


@router.post("/ui/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/ui/",
) -> Response:
    """Exchange an instructor's API token for a session cookie."""
    target = _safe_next(next)
    error: tuple[str, str] | None = None
    user = None
    if not _same_origin(request):
        error = ("This form must be sent from this site.", "请从本站页面提交此表单。")
    elif not token.strip():
        error = ("Enter your instructor token.", "请输入教师令牌。")
    else:
        user = users_service.get_by_token(session, token.strip())
        if user is None:
            error = ("This token is not valid.", "令牌无效。")
        elif not user.is_instructor:
            error = (
                "This token belongs to a student. These pages are for instructors only; students use "
                "`hwgrade submit` and the API.",
                "这是学生的令牌。本页面仅供教师使用；学生请使用 `hwgrade submit` 或 API。",
            )
    if error is not None or user is None:
        status = 403 if user is not None else 401
        return render(request, "login.html", {"user": None, "next": target, "error": error}, status)
    response = RedirectResponse(target, status_code=303)
    web_session.set_cookie(response, settings, user)
    return response


@router.post("/ui/logout")
def logout(request: Request, settings: SettingsDep) -> RedirectResponse:
    """End the browser session (the API token stays valid)."""
    response = RedirectResponse("/ui/login", status_code=303)
    if _same_origin(request):
        web_session.clear_cookie(response, settings)
    return response


# --- pages ---------------------------------------------------------------------------------------


@router.get("/ui/", response_class=HTMLResponse)
def overview(
    request: Request, session: SessionDep, settings: SettingsDep, user: WebInstructor
) -> HTMLResponse:
    """Each assignment: counts and its top 3 on the private (final) board."""
    cards = []
    for assignment in assignments_service.list_assignments(session):
        cards.append(
            {
                "assignment": assignment,
                "stats": boards.assignment_stats(session, assignment),
                "podium": boards.leaderboard(
                    session, assignment, board="private", limit=3, viewer=user, settings=settings
                ),
            }
        )
    return render(request, "overview.html", {"user": user, "cards": cards, "nav": "overview"})


def _assignment_or_none(session: Session, slug: str) -> Assignment | None:
    return assignments_service.get_by_slug(session, slug)


def _no_assignment(request: Request, user: User, slug: str) -> HTMLResponse:
    return not_found(request, user, f"No assignment {slug!r}.", f"没有名为 {slug} 的作业。")


@router.get("/ui/assignments/{slug}", response_class=HTMLResponse)
def assignment_page(
    request: Request, slug: str, session: SessionDep, settings: SettingsDep, user: WebInstructor
) -> HTMLResponse:
    """Both leaderboards, the score histogram and the latest submissions of one assignment."""
    assignment = _assignment_or_none(session, slug)
    if assignment is None:
        return _no_assignment(request, user, slug)
    stats = boards.assignment_stats(session, assignment)
    context = {
        "user": user,
        "assignment": assignment,
        "stats": stats,
        "private": boards.leaderboard(
            session, assignment, board="private", limit=None, viewer=user, settings=settings
        ),
        "public": boards.leaderboard(
            session, assignment, board="public", limit=None, viewer=user, settings=settings
        ),
        "histogram": charts.histogram(stats.scores, assignment.pass_threshold),
        "recent": submissions_service.list_for_assignment(session, assignment, limit=100),
    }
    return render(request, "assignment.html", context)


def _row_id(text: str) -> int | None:
    """A page's id as typed in the address bar: not a number, or beyond any row, is no row (the
    page then answers with its HTML 404, not the API's JSON 422)."""
    n = int(text) if text.isascii() and text.isdigit() and len(text) < 20 else 0
    return n if is_row_id(n) else None


def _submission_or_none(session: Session, submission_id: str) -> Submission | None:
    n = _row_id(submission_id)
    return submissions_service.get(session, n) if n is not None else None


@router.get("/ui/submissions/{submission_id}", response_class=HTMLResponse)
def report_page(
    request: Request, submission_id: str, session: SessionDep, user: WebInstructor
) -> HTMLResponse:
    """One submission's grading report."""
    submission = _submission_or_none(session, submission_id)
    if submission is None:
        return not_found(
            request, user, f"No submission {submission_id}.", f"没有编号为 {submission_id} 的提交。"
        )
    result = submission.result
    metrics: dict[str, Any] = dict(result.metrics or {}) if result else {}
    cm = metrics.pop("confusion_matrix", None)
    names = attachments.listed(result.details if result else None)
    details: dict[str, Any] = (result.details or {}) if result else {}
    context = {
        "user": user,
        "submission": submission,
        "result": result,
        "metrics": metrics,
        "confusion": charts.confusion_matrix(cm),
        "attachments": [{"name": n, "image": attachments.is_image(n)} for n in names],
        "dataset": details.get("dataset") if isinstance(details.get("dataset"), dict) else None,
        "discovery": details.get("discovery") or None,
        "grader_version": details.get("grader_version"),
        "grader_traceback": details.get("grader_traceback") or None,
    }
    return render(request, "report.html", context)


def _blob_path(request: Request, submission: Submission) -> Path:
    return BlobStore(request.app.state.settings.blob_dir).path(submission.stored_path)


@router.get("/ui/gradebook.csv")
def download_gradebook(session: SessionDep, user: WebInstructor) -> Response:
    """The course grade book as the API's /api/v1/gradebook.csv, for the logged-in instructor."""
    return csv_response(exports.gradebook_csv(session), "gradebook.csv")


@router.get("/ui/assignments/{slug}/scores.csv")
def download_scores(
    request: Request, slug: str, session: SessionDep, settings: SettingsDep, user: WebInstructor
) -> Response:
    """One assignment's scores as the API's /api/v1/assignments/{slug}/scores.csv."""
    assignment = _assignment_or_none(session, slug)
    if assignment is None:
        return _no_assignment(request, user, slug)
    return csv_response(exports.scores_csv(session, assignment, settings), f"{assignment.slug}-scores.csv")


@router.get("/ui/submissions/{submission_id}/zip")
def download_zip(request: Request, submission_id: str, session: SessionDep, user: WebInstructor) -> Response:
    """The submission's zip as uploaded."""
    submission = _submission_or_none(session, submission_id)
    path = _blob_path(request, submission) if submission else None
    if submission is None or path is None or not path.is_file():
        return not_found(
            request, user, f"No zip for submission {submission_id}.", f"提交 {submission_id} 没有压缩包。"
        )
    name = f"{submission.id}-{submission.owner.student_number}-{submission.original_filename}"
    return FileResponse(
        path,
        media_type="application/zip",
        headers={
            "Content-Disposition": attachments.content_disposition(name),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, no-store",
        },
    )


@router.get("/ui/submissions/{submission_id}/attachment")
def download_attachment(
    request: Request,
    submission_id: str,
    session: SessionDep,
    user: WebInstructor,
    name: Annotated[str, Query(max_length=1024)],
    inline: bool = False,
) -> Response:
    """One attachment the grader listed for this submission (a photo, a PDF...), read from the zip."""
    submission = _submission_or_none(session, submission_id)
    listed = attachments.listed(submission.result.details if submission and submission.result else None)
    if submission is None or name not in listed:
        return not_found(request, user, f"No attachment {name!r}.", f"没有名为 {name} 的附件。")
    path = _blob_path(request, submission)
    try:
        with zipfile.ZipFile(path) as zf:
            info = attachments.find_entry(zf, name, submission.result.details if submission.result else None)
    except (OSError, zipfile.BadZipFile):
        info = None
    if info is None:
        return not_found(request, user, f"No attachment {name!r}.", f"没有名为 {name} 的附件。")
    # Only raster images and PDFs are ever shown inline, and with a CSP that forbids any script.
    show_inline = inline and (attachments.is_image(name) or name.lower().endswith(".pdf"))
    return StreamingResponse(
        attachments.iter_entry(path, info),
        media_type=attachments.content_type(name),
        headers={
            "Content-Disposition": attachments.content_disposition(name, inline=show_inline),
            "Content-Length": str(info.file_size),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )


@router.get("/ui/students/{user_id}", response_class=HTMLResponse)
def student_page(request: Request, user_id: str, session: SessionDep, user: WebInstructor) -> HTMLResponse:
    """All submissions of one student, best scores per assignment and a score-over-time plot."""
    n = _row_id(user_id)
    student = session.get(User, n) if n is not None else None
    if student is None:
        return not_found(request, user, f"No user {user_id}.", f"没有编号为 {user_id} 的用户。")
    submissions = submissions_service.list_for_owner(session, student)
    tz = request.app.state.settings.tz
    series: dict[str, list[charts.Point]] = defaultdict(list)
    pass_lines: dict[str, float] = {}
    for sub in sorted(submissions, key=lambda s: s.created_at):
        if sub.result is None or sub.status != SubmissionStatus.graded:
            continue
        slug = sub.assignment.slug
        pass_lines[slug] = sub.assignment.pass_threshold
        at = sub.created_at.astimezone(tz)
        title = f"#{sub.id} {slug} {at:%m-%d %H:%M} {sub.result.score:.4f}"
        series[slug].append(
            charts.Point(at=at, score=sub.result.score, passed=sub.result.passed, title=title)
        )
    context = {
        "user": user,
        "student": student,
        "submissions": submissions,
        "scores": boards.student_scores(session, student),
        "timeline": charts.score_timeline(series, pass_lines=pass_lines),
    }
    return render(request, "student.html", context)


@router.get("/ui/eligibility", response_class=HTMLResponse)
def eligibility_page(request: Request, session: SessionDep, user: WebInstructor) -> HTMLResponse:
    """Per student: assignments passed out of all, and whether that reaches the 80% exam requirement."""
    rows = boards.eligibility(session)
    context = {
        "user": user,
        "rows": rows,
        "eligible": sum(1 for r in rows if r.eligible),
        "nav": "eligibility",
    }
    return render(request, "eligibility.html", context)
