from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Row
from sqlalchemy.orm import Session

from service.assignments import service as assignments_service
from service.db import after_commit
from service.deps import (
    CeleryDep,
    CurrentAssignment,
    CurrentSubmission,
    CurrentUser,
    RequireInstructor,
    SessionDep,
    SettingsDep,
)
from service.errors import ExpectedMultipart, MissingFile, documented
from service.submissions import service
from service.submissions.models import Submission, SubmissionStatus
from service.submissions.schemas import SubmissionRead, SubmissionSummary
from service.users.models import User
from service.worker import send_wakeups

router = APIRouter(prefix="/api/v1", tags=["submissions"])

# On a student's 202: how many more submissions to this assignment today's daily limit allows.
LEFT_TODAY_HEADER = "X-Submissions-Left-Today"


@router.post(
    "/assignments/{slug}/submissions",
    response_model=SubmissionRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        202: {
            "description": "queued; `Location` is the submission, and for students "
            f"`{LEFT_TODAY_HEADER}` how many more uploads the daily limit allows today",
            "headers": {
                "Location": {"schema": {"type": "string"}},
                LEFT_TODAY_HEADER: {"schema": {"type": "integer"}},
            },
        },
        400: documented("empty file or no `file` field"),
        403: documented("`deadline_passed`: the assignment refuses uploads after its deadline"),
        411: documented("no Content-Length"),
        413: documented("larger than the upload limit"),
        415: documented("not a zip (rar, 7z, tar.gz... must be re-packed as .zip)"),
        429: documented("daily submission limit reached"),
    },
)
def create_submission(
    request: Request,
    response: Response,
    assignment: CurrentAssignment,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    celery: CeleryDep,
    file: Annotated[UploadFile | None, File(description="The homework as a .zip")] = None,
) -> Submission:
    """Upload a zip for grading; the answer is the queued submission (poll its Location)."""
    if file is None:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ExpectedMultipart(
                "Send the zip as multipart/form-data in a field named 'file' "
                "(curl -F file=@homework.zip ...).",
                "请以 multipart/form-data 格式上传，字段名为 file（例如 curl -F file=@homework.zip ...）。",
            )
        raise MissingFile("The form has no field named 'file'.", "表单中没有名为 file 的字段。")
    submission, used = service.accept_upload(
        session,
        owner=user,
        assignment=assignment,
        filename=file.filename,
        stream=file.file,
        settings=settings,
    )
    if used is not None:
        # What the student has left today, this upload counted (a student's client can say so).
        response.headers[LEFT_TODAY_HEADER] = str(max(assignment.daily_limit - used, 0))
    wakeup = service.Wakeup(submission.id, assignment.queue)
    factory = request.app.state.session_factory

    def _wake_worker() -> None:
        send_wakeups(factory, celery, [wakeup])

    after_commit(session, _wake_worker)
    response.headers["Location"] = f"/api/v1/submissions/{wakeup.submission_id}"
    return submission


@router.get("/submissions/{submission_id}", response_model=SubmissionRead)
async def read_submission(submission: CurrentSubmission, session: SessionDep) -> Submission | SubmissionRead:
    """A submission's status and, once graded, its result (its owner and instructors only); while it
    is queued, how many submissions are ahead of it."""
    if submission.status != SubmissionStatus.queued:
        return submission
    read = SubmissionRead.model_validate(submission)
    read.queue_ahead = await run_in_threadpool(service.queued_ahead, session, submission)
    return read


# The paging of the submission lists: newest first, `limit` a page, the next page below `before_id`.
PageLimit = Annotated[
    int, Query(ge=1, le=service.PAGE_MAX, description="page size (default 50, at most 200)")
]
BeforeId = Annotated[
    int | None, Query(ge=1, description="the next page: submissions with a smaller id than this")
]


def _link_next_page(request: Request, response: Response, rows: list[Any], limit: int) -> None:
    """A full page carries `Link: <...>; rel="next"`, this request's URL with the next page's before_id."""
    if len(rows) == limit:
        following = request.url.include_query_params(before_id=rows[-1].id, limit=limit)
        response.headers["Link"] = f'<{following.path}?{following.query}>; rel="next"'


@router.get("/me/submissions", response_model=list[SubmissionSummary])
async def list_my_submissions(
    request: Request,
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    assignment: Annotated[str | None, Query(description="only this assignment (its slug)")] = None,
    limit: PageLimit = service.PAGE_DEFAULT,
    before_id: BeforeId = None,
) -> list[Row[Any]]:
    """Your submissions, newest first, one summary line each (the full report is at
    GET /api/v1/submissions/{id}). A full page carries a `Link: <...>; rel="next"` header."""
    rows = await run_in_threadpool(_my_page, session, user, assignment, limit, before_id)
    _link_next_page(request, response, rows, limit)
    return rows


def _my_page(
    session: Session, user: User, assignment: str | None, limit: int, before_id: int | None
) -> list[Row[Any]]:
    found = None
    if assignment is not None:
        found = assignments_service.get_by_slug(session, assignment)
        if found is None:
            raise assignments_service.no_such_assignment(session, assignment)
    return service.list_summaries_for_owner(session, user, found, limit=limit, before_id=before_id)


@router.get("/assignments/{slug}/submissions", response_model=list[SubmissionRead])
def list_assignment_submissions(
    request: Request,
    response: Response,
    session: SessionDep,
    assignment: CurrentAssignment,
    _instructor: RequireInstructor,
    limit: PageLimit = service.PAGE_DEFAULT,
    before_id: BeforeId = None,
) -> list[Submission]:
    """Every submission to an assignment, newest first, with its report (instructors only). A full
    page carries a `Link: <...>; rel="next"` header, as GET /api/v1/me/submissions does."""
    rows = service.list_for_assignment(session, assignment, limit=limit, before_id=before_id)
    _link_next_page(request, response, rows, limit)
    return rows
