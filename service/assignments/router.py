from __future__ import annotations

from fastapi import APIRouter

from service.assignments import service
from service.assignments.models import Assignment
from service.assignments.schemas import AssignmentRead, AssignmentUpdate
from service.deps import CurrentAssignment, CurrentUser, RequireInstructor, SessionDep

router = APIRouter(prefix="/api/v1/assignments", tags=["assignments"])


@router.get("", response_model=list[AssignmentRead])
def list_assignments(session: SessionDep, _user: CurrentUser) -> list[Assignment]:
    """All assignments of the course."""
    return service.list_assignments(session)


@router.get("/{slug}", response_model=AssignmentRead)
def read_assignment(assignment: CurrentAssignment, _user: CurrentUser) -> Assignment:
    """One assignment: title, deadline, late policy, daily submission limit, pass threshold."""
    return assignment


@router.patch("/{slug}", response_model=AssignmentRead)
def update_assignment(
    data: AssignmentUpdate, assignment: CurrentAssignment, session: SessionDep, _instructor: RequireInstructor
) -> Assignment:
    """Change an assignment's deadline, daily limit, pass threshold, queue or late policy (instructors only)."""
    return service.update(session, assignment, data)
