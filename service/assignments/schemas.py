from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from service.assignments.models import LatePolicy


class AssignmentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    slug: str
    title: str
    title_zh: str
    kind: str
    deadline: datetime | None
    daily_limit: int
    pass_threshold: float
    # After the deadline students' uploads are refused, or accepted and marked late.
    late_policy: LatePolicy


class AssignmentUpdate(BaseModel):
    """Course rules an instructor may change; omitted fields stay as they are."""

    title: str | None = Field(default=None, min_length=1, max_length=200)
    title_zh: str | None = Field(default=None, max_length=200)
    # With an offset, e.g. 2026-12-01T23:59:00+08:00; stored and returned in UTC.
    deadline: AwareDatetime | None = None
    daily_limit: int | None = Field(default=None, ge=0, le=1_000_000)  # the column is INTEGER
    pass_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    queue: Literal["grading", "gpu"] | None = None
    late_policy: LatePolicy | None = None
