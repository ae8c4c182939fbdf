from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from grader.assignments import AssignmentSpec
from service.db import Base, utcnow


class LatePolicy(StrEnum):
    """What happens to a student's upload after the deadline (instructors are never refused)."""

    refuse = "refuse"
    accept_marked = "accept_marked"


def new_board_tag() -> int:
    """A fresh random tag for an assignment's boards (63 bits: a positive BIGINT)."""
    return secrets.randbits(63)


class Assignment(Base):
    __tablename__ = "assignment"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    title_zh: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(32))
    # AssignmentSpec as JSON; pass_threshold below is the course's value and wins over the spec's.
    spec: Mapped[dict[str, Any]]
    deadline: Mapped[datetime | None]
    daily_limit: Mapped[int] = mapped_column(default=10)
    pass_threshold: Mapped[float]
    # Celery queue its gradings go to: "grading" (any worker) or "gpu" (workers with CUDA).
    queue: Mapped[str] = mapped_column(String(32), default="grading")
    late_policy: Mapped[LatePolicy] = mapped_column(
        Enum(LatePolicy, name="late_policy", native_enum=False, create_constraint=True, length=16),
        default=LatePolicy.accept_marked,
        server_default=LatePolicy.accept_marked.value,
    )
    # Replaced with a new random value in the transaction of every change to this assignment's
    # boards (a result entering a board, a rebuild): the API's board cache serves a board only under
    # the tag it was read under (`leaderboards.service.BoardCache`). Random rather than a counter, so
    # a cache cannot take another database's board (a restore, a test's fresh database) with the
    # same count for this one.
    board_tag: Mapped[int] = mapped_column(BigInteger, default=new_board_tag, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def grading_spec(self) -> AssignmentSpec:
        """The spec the grader gets: the stored spec with the course's current pass threshold."""
        return AssignmentSpec.model_validate({**self.spec, "pass_threshold": self.pass_threshold})

    def __repr__(self) -> str:
        return f"<Assignment {self.slug}>"
