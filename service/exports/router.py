from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from service.deps import CurrentAssignment, RequireInstructor, SessionDep, SettingsDep
from service.exports import service

router = APIRouter(prefix="/api/v1", tags=["exports"])

_CSV: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {}}, "description": "UTF-8 CSV with a BOM (opens in Excel)"}
}


def csv_response(content: bytes, filename: str) -> Response:
    """A CSV download (the API's and the instructor pages' exports)."""
    return Response(
        content,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/assignments/{slug}/scores.csv", response_class=Response, responses=_CSV)
def export_scores(
    assignment: CurrentAssignment, session: SessionDep, settings: SettingsDep, _instructor: RequireInstructor
) -> Response:
    """One assignment's scores as CSV, one row per student (instructors only)."""
    return csv_response(service.scores_csv(session, assignment, settings), f"{assignment.slug}-scores.csv")


@router.get("/gradebook.csv", response_class=Response, responses=_CSV)
def export_gradebook(session: SessionDep, _instructor: RequireInstructor) -> Response:
    """The course grade book as CSV: best score and passed per assignment, eligibility (instructors only)."""
    return csv_response(service.gradebook_csv(session), "gradebook.csv")
