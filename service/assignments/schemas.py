from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from service.assignments.models import LatePolicy

DEADLINE_MIN = datetime(2000, 1, 1, tzinfo=UTC)
DEADLINE_MAX = datetime(3000, 1, 1, tzinfo=UTC)


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
    # The Celery queue its gradings go to: "grading" (any worker) or "gpu" (only workers with CUDA).
    queue: str


class AssignmentUpdate(BaseModel):
    """Course rules an instructor may change; omitted fields stay as they are, and any other field is
    refused (a misspelt one, say pass_mark, would otherwise change nothing and answer 200)."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=200)
    title_zh: str | None = Field(default=None, max_length=200)
    # With an offset, e.g. 2026-12-01T23:59:00+08:00; stored and returned in UTC.
    deadline: AwareDatetime | None = None
    daily_limit: int | None = Field(default=None, ge=0, le=1_000_000)  # the column is INTEGER
    pass_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    queue: Literal["grading", "gpu"] | None = None
    late_policy: LatePolicy | None = None

    @field_validator("deadline")
    @classmethod
    def _deadline_in_range(cls, value: datetime | None) -> datetime | None:
        # Stored in UTC: 0001-01-01 at +08:00 is before year 1 there (an OverflowError, a 500).
        if value is not None and not (DEADLINE_MIN <= value <= DEADLINE_MAX):
            raise PydanticCustomError(
                "deadline_range",
                "a deadline must lie between the years 2000 and 2999 (got {got})",
                {"got": str(value)},
            )
        return value
