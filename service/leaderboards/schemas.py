from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from service.leaderboards.service import Board


class LeaderboardEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    rank: int
    # Students see their own name and a stable pseudonym for everyone else (HWGRADE_PSEUDONYMS).
    display_name: str
    # Instructors only; null for students.
    student_number: str | None
    # The board's score (public_score on the public board, private_score on the private one).
    score: float
    public_score: float | None
    # Null while the viewer may not see the private board.
    private_score: float | None
    submission_id: int
    submitted_at: datetime
    is_you: bool = Field(validation_alias="is_viewer")
    late: bool


class LeaderboardRead(BaseModel):
    assignment: str
    board: Board
    # True for the private board once the deadline has passed: the final ranking.
    final: bool
    deadline: datetime | None
    rule: str
    rule_zh: str
    entries: list[LeaderboardEntryRead]


class EligibilityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    student_number: str
    display_name: str
    passed: int
    total: int
    ratio: float
    eligible: bool


class MyScoreRead(BaseModel):
    assignment: str
    title: str
    title_zh: str
    deadline: datetime | None
    # Best score of a graded submission; null before the first one.
    best_score: float | None
    passed: bool
    # Rank on the public board; null when not on it.
    public_rank: int | None
    submissions: int
