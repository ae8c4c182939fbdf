from __future__ import annotations

from fastapi import APIRouter, Response

from service.assignments import service
from service.assignments.models import Assignment
from service.assignments.schemas import AssignmentRead, AssignmentUpdate
from service.deps import CurrentAssignment, CurrentUser, RequireInstructor, SessionDep, SettingsDep
from service.errors import NotFound

router = APIRouter(prefix="/api/v1/assignments", tags=["assignments"])


@router.get("", response_model=list[AssignmentRead])
def list_assignments(session: SessionDep, _user: CurrentUser) -> list[Assignment]:
    """All assignments of the course."""
    return service.list_assignments(session)


@router.get("/{slug}", response_model=AssignmentRead)
async def read_assignment(assignment: CurrentAssignment, _user: CurrentUser) -> Assignment:
    """One assignment: title, deadline, late policy, daily submission limit, pass threshold."""
    return assignment


@router.patch("/{slug}", response_model=AssignmentRead)
def update_assignment(
    data: AssignmentUpdate, assignment: CurrentAssignment, session: SessionDep, _instructor: RequireInstructor
) -> Assignment:
    """Change an assignment's deadline, daily limit, pass threshold, queue or late policy (instructors only)."""
    return service.update(session, assignment, data)


@router.get(
    "/{slug}/handout",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}, "description": "The training data students get."}},
)
def download_handout(assignment: CurrentAssignment, _user: CurrentUser, settings: SettingsDep) -> Response:
    """The training file students get for a model assignment (phone-price: `handout.csv`, never the hidden rows)."""
    if assignment.kind != "phone-price":
        raise NotFound(
            f"{assignment.slug} has no handout file to download; use the course's own data "
            "(for MNIST, the standard training set).",
            f"{assignment.slug} 没有可下载的数据文件；请使用课程提供的数据（MNIST 请使用标准训练集）。",
        )
    path = settings.data_dir / "phone-price" / "handout.csv" if settings.data_dir else None
    if path is not None and path.is_file():
        data = path.read_bytes()
    else:
        # No hidden set configured: the embedded one is generated, and so is its handout. Imported
        # here: grader.datasets brings pandas and scikit-learn, which the API needs nowhere else.
        from grader.datasets.synthetic import synthetic_handout

        data = synthetic_handout().to_csv(index=False, lineterminator="\n").encode("utf-8")
    return Response(
        content=data,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="handout.csv"'},
    )
