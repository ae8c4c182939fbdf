from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from service.db import utcnow
from service.deps import CurrentAssignment, CurrentUser, RequireInstructor, SessionDep, SettingsDep
from service.errors import documented
from service.leaderboards import service
from service.leaderboards.schemas import EligibilityRead, LeaderboardEntryRead, LeaderboardRead, MyScoreRead
from service.leaderboards.service import Board, EligibilityRow, LeaderboardRow

router = APIRouter(prefix="/api/v1", tags=["leaderboards"])


@router.get(
    "/assignments/{slug}/leaderboard",
    response_model=LeaderboardRead,
    responses={403: documented("`board_hidden`: the private board before the deadline (students)")},
)
async def read_leaderboard(
    assignment: CurrentAssignment,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    board: Annotated[
        Board | None, Query(description="public or private; default: private once the deadline has passed")
    ] = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000, description="only the top N, e.g. 3")] = None,
) -> dict[str, Any]:
    """Ranking: each student's best graded submission, highest score first; equal scores go to the
    earlier submission; students without a graded result are absent. The public board scores the
    public half of the hidden set and is always open; the private board (the final ranking) opens to
    students after the deadline, to instructors always. Students see pseudonyms for others."""
    now = utcnow()
    chosen: Board = board or service.default_board(assignment, user, now)
    # Rows already of the response's schema: FastAPI's validation of the response takes them as they are.
    entries = await run_in_threadpool(
        service.leaderboard_as,
        _entry,
        session,
        assignment,
        board=chosen,
        limit=limit,
        viewer=user,
        settings=settings,
        now=now,
    )
    return {
        "assignment": assignment.slug,
        "board": chosen,
        "final": chosen == "private" and service.deadline_passed(assignment, now),
        "deadline": assignment.deadline,
        "rule": service.RANKING_RULE,
        "rule_zh": service.RANKING_RULE_ZH,
        "entries": entries,
    }


def _entry(row: LeaderboardRow) -> LeaderboardEntryRead:
    return LeaderboardEntryRead.model_validate(row, from_attributes=True)


@router.get("/eligibility", response_model=list[EligibilityRead])
def read_eligibility(session: SessionDep, _instructor: RequireInstructor) -> list[EligibilityRow]:
    """Exam eligibility per student: assignments passed / total; eligible at 80% or more (instructors only)."""
    return service.eligibility(session)


@router.get("/me/scores", response_model=list[MyScoreRead])
async def read_my_scores(session: SessionDep, user: CurrentUser) -> list[dict[str, Any]]:
    """Your best score, passed flag, public-board rank and submission count for every assignment."""
    return await run_in_threadpool(service.student_scores, session, user)
