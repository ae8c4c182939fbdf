from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base

Board = Literal["public", "private"]
BOARDS: tuple[Board, ...] = ("public", "private")


class BoardEntry(Base):
    """A student's best graded result on one board of one assignment: the leaderboard itself.

    Kept up to date in the transaction that writes each result (`leaderboards.service.enter_result`),
    so reading a board or a rank is an index range over at most one row per student, instead of
    picking everyone's best out of every result (100,000 results: a board 364 ms -> a few ms).
    `leaderboards.service.rebuild_boards` derives the whole table from the results again (backfill,
    bulk loads); the tests check the two always agree.
    """

    __tablename__ = "board_entry"
    __table_args__ = (CheckConstraint("board IN ('public', 'private')", name="board"),)
    # (the ranking index: below the class)

    owner_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    assignment_id: Mapped[int] = mapped_column(
        ForeignKey("assignment.id", ondelete="CASCADE"), primary_key=True
    )
    board: Mapped[str] = mapped_column(String(16), primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submission.id", ondelete="CASCADE"))
    score: Mapped[float]
    submitted_at: Mapped[datetime]


# The ranking order (score desc, then the earlier submission): a board is a range scan of this index
# in rank order, and a rank is a count over the part of it ahead of a score.
Index(
    "ix_board_entry_rank",
    BoardEntry.assignment_id,
    BoardEntry.board,
    BoardEntry.score.desc(),
    BoardEntry.submitted_at,
    BoardEntry.submission_id,
)
