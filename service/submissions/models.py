from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import CheckConstraint, Enum, ForeignKey, Index, String, Text, false, select
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.assignments.models import Assignment
from service.db import Base, utcnow
from service.users.models import User


class SubmissionStatus(StrEnum):
    queued = "queued"
    running = "running"
    graded = "graded"
    error = "error"

    @property
    def is_final(self) -> bool:
        return self in (SubmissionStatus.graded, SubmissionStatus.error)


class Submission(Base):
    __tablename__ = "submission"
    __table_args__ = (
        Index("ix_submission_owner_assignment_created", "owner_id", "assignment_id", "created_at"),
        # A student's list, newest first (GET /me/submissions pages by id).
        Index("ix_submission_owner_id", "owner_id", "id"),
        Index("ix_submission_assignment_created", "assignment_id", "created_at"),
        Index("ix_submission_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="RESTRICT"))
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id", ondelete="RESTRICT"))
    original_filename: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int]
    # Relative to the storage dir (content-addressed: aa/bb/<sha256>.zip).
    stored_path: Mapped[str] = mapped_column(String(255))
    status: Mapped[SubmissionStatus] = mapped_column(
        Enum(
            SubmissionStatus, name="submission_status", native_enum=False, create_constraint=True, length=16
        ),
        default=SubmissionStatus.queued,
    )
    # The lease: each claim by a worker bumps `attempt`; only the holder of the current attempt,
    # while status is running, may write the result. `attempt` never goes back (a worker still running
    # an earlier attempt must never hold the lease again); a regrade moves `attempts_before` up to it
    # instead, so the tries of this grading are attempt - attempts_before.
    attempt: Mapped[int] = mapped_column(default=0)
    attempts_before: Mapped[int] = mapped_column(default=0, server_default="0")
    lease_expires_at: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    # When the last wake-up was sent to the broker; NULL when sending failed (the sweeper resends).
    enqueued_at: Mapped[datetime | None]
    # Uploaded after the assignment's deadline (accepted because its late policy is accept_marked).
    late: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    owner: Mapped[User] = relationship(lazy="joined", innerjoin=True)
    assignment: Mapped[Assignment] = relationship(lazy="joined", innerjoin=True)
    result: Mapped[Result | None] = relationship(back_populates="submission", lazy="selectin")

    @property
    def assignment_slug(self) -> str:
        return self.assignment.slug

    @property
    def owner_student_number(self) -> str:
        return self.owner.student_number

    @property
    def grading_attempt(self) -> int:
        """This grading's try: 1 for the first claim since the upload, or since the last regrade."""
        return self.attempt - self.attempts_before

    def __repr__(self) -> str:
        return f"<Submission {self.id} {self.status} attempt={self.attempt}>"


def _copied_from_submission(column: str) -> Any:
    """A column default that copies `column` of the result's submission (for inserts that omit it)."""

    def default(context: DefaultExecutionContext) -> Any:
        submission_id = context.get_current_parameters()["submission_id"]
        return context.connection.scalar(
            select(Submission.__table__.c[column]).where(Submission.__table__.c.id == submission_id)
        )

    return default


class Result(Base):
    """The one grading outcome of a submission (the unique submission_id makes a second impossible)."""

    __tablename__ = "result"
    __table_args__ = (CheckConstraint("score >= 0 AND score <= 1", name="score_range"),)
    # (indexes for the leaderboards: below the class)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id", ondelete="CASCADE"), unique=True)
    # Copies of the submission's columns for the leaderboard indexes above.
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignment.id", ondelete="RESTRICT"), default=_copied_from_submission("assignment_id")
    )
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("user.id", ondelete="RESTRICT"), default=_copied_from_submission("owner_id")
    )
    submitted_at: Mapped[datetime] = mapped_column(default=_copied_from_submission("created_at"))
    score: Mapped[float]
    passed: Mapped[bool]
    # The leaderboard scores: the public and private parts of the hidden set (model assignments),
    # or `score` for both where there is no split (function assignments). NULL unless graded, so a
    # submission that errored never ranks.
    public_score: Mapped[float | None]
    private_score: Mapped[float | None]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    checks: Mapped[list[Any]] = mapped_column(default=list)
    hints: Mapped[list[Any]] = mapped_column(default=list)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_message_zh: Mapped[str | None] = mapped_column(Text)
    logs_tail: Mapped[str] = mapped_column(Text, default="")
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # How the code was isolated, in the grader's words (e.g. "bwrap: ... namespaces, seccomp, rlimits").
    sandbox: Mapped[str] = mapped_column(Text, default="")
    # discovery, attachments, dataset info and grader version from the GradeReport.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The attempt that wrote this result.
    attempt: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    submission: Mapped[Submission] = relationship(back_populates="result")

    @property
    def error(self) -> dict[str, str] | None:
        if self.error_code is None:
            return None
        return {
            "code": self.error_code,
            "message": self.error_message or "",
            "message_zh": self.error_message_zh or "",
        }


# One index per board, in the order the leaderboard's window function reads the rows (PARTITION BY
# owner ORDER BY board score DESC, submitted_at, submission_id): the best submission of each student
# of one assignment is an index range scan without a sort, and every column the ranking needs is in
# the index. That is why assignment_id, owner_id and submitted_at are copied onto result from the
# submission (they never change once it exists).
for _board_score in (Result.public_score, Result.private_score):
    Index(
        f"ix_result_{_board_score.key.removesuffix('_score')}_board",
        Result.assignment_id,
        Result.owner_id,
        _board_score.desc(),
        Result.submitted_at,
        Result.submission_id,
    )
# A student's own results per assignment (GET /me/scores: best score, passed), read from the index
# alone: the result rows themselves are large (checks, metrics, logs) and scattered.
Index(
    "ix_result_owner",
    Result.owner_id,
    Result.assignment_id,
    Result.public_score,
    Result.score,
    Result.passed,
)
