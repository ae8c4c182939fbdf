"""Request dependencies: the session, the authenticated user, and load-or-404 lookups."""

from __future__ import annotations

from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.assignments import service as assignments_service
from service.assignments.models import Assignment
from service.config import Settings
from service.db import get_session
from service.errors import Forbidden, NotFound, Unauthorized
from service.submissions import service as submissions_service
from service.submissions.models import Submission
from service.users import service as users_service
from service.users.models import User

# scope="function": commit before the response is sent, so a failed commit is an error response,
# never a 202 for a row that does not exist.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="The API token printed by `hwgrade users add`.")

# FastAPI runs a plain `def` dependency or endpoint in its thread pool, and a plain `def` endpoint's
# response validation too: each trip costs ~0.15-0.25 ms of CPU on a 2-core machine. What queries the
# database stays `def` (a query on the event loop would stall every request of the process); what only
# reads the request, or returns what the dependencies already loaded, is `async def` and runs on the loop.
# The busiest reads (the board, me/scores, me/submissions) are `async def` endpoints that run their
# queries in one explicit trip (run_in_threadpool) and return plain data, validated on the loop.
# tests/service/conftest.py fails any test whose request ran SQL on the event loop.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_celery(request: Request) -> Celery:
    celery: Celery = request.app.state.celery
    return celery


SettingsDep = Annotated[Settings, Depends(get_settings)]
CeleryDep = Annotated[Celery, Depends(get_celery)]


def current_user(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None:
        raise Unauthorized(
            "Missing token: send the header 'Authorization: Bearer <your token>'.",
            "缺少令牌：请在请求头中加入 'Authorization: Bearer <你的令牌>'。",
        )
    user = users_service.get_by_token(session, credentials.credentials)
    if user is None:
        raise Unauthorized(
            "Invalid token: check that you copied the whole token your instructor gave you (it starts with hwg_); "
            "if it still fails, ask them for a new one.",
            "令牌无效：请确认完整复制了教师给你的令牌（以 hwg_ 开头）；如仍无效，请向教师申请新的令牌。",
        )
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def require_instructor(user: CurrentUser) -> User:
    if not user.is_instructor:
        raise Forbidden("Only instructors may do this.", "只有教师可以执行此操作。")
    return user


RequireInstructor = Annotated[User, Depends(require_instructor)]


def current_assignment(slug: str, session: SessionDep) -> Assignment:
    assignment = assignments_service.get_by_slug(session, slug)
    if assignment is None:
        raise assignments_service.no_such_assignment(session, slug)
    return assignment


CurrentAssignment = Annotated[Assignment, Depends(current_assignment)]


def current_submission(submission_id: int, session: SessionDep, user: CurrentUser) -> Submission:
    submission = submissions_service.get(session, submission_id)
    # Someone else's submission is "not found", not "forbidden": ids reveal nothing.
    if submission is None or (submission.owner_id != user.id and not user.is_instructor):
        raise NotFound(f"No submission {submission_id}.", f"没有编号为 {submission_id} 的提交。")
    return submission


CurrentSubmission = Annotated[Submission, Depends(current_submission)]
