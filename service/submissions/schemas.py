from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from service.submissions.models import SubmissionStatus


class ErrorRead(BaseModel):
    code: str
    message: str
    message_zh: str


class ResultRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    score: float
    passed: bool
    error: ErrorRead | None
    checks: list[dict[str, Any]]
    hints: list[dict[str, Any]]
    metrics: dict[str, Any]
    timings: dict[str, Any]
    sandbox: str
    logs_tail: str
    created_at: datetime


class SubmissionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    assignment: str = Field(validation_alias="assignment_slug")
    owner: str = Field(validation_alias="owner_student_number")
    original_filename: str
    sha256: str
    size_bytes: int
    status: SubmissionStatus
    # This grading's try (counted again from 1 after a regrade).
    attempt: int = Field(validation_alias="grading_attempt")
    # Uploaded after the deadline (the assignment accepts late uploads and marks them).
    late: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    # While queued: how many queued submissions (anyone's) uploaded earlier wait for the same queue
    # (null otherwise, and in the upload's 202).
    queue_ahead: int | None = None
    result: ResultRead | None


class SubmissionSummary(BaseModel):
    """One line of a submission list; the full report is at GET /api/v1/submissions/{id}."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    assignment: str
    status: SubmissionStatus
    late: bool
    created_at: datetime
    finished_at: datetime | None
    # Null until a result exists.
    score: float | None
    passed: bool | None
    # The result's error code (e.g. `timeout`); null when graded or not finished.
    error_code: str | None
