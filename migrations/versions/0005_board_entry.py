"""board_entry (the leaderboards as a table: each student's best result per board) and ix_result_owner

Until now every board and every rank picked each student's best result out of all results with a
window query (100,000 results: a board took 364 ms at p99 under load). board_entry holds just the
best result per (student, assignment, board), kept up to date in the transaction that writes each
result, so a board is a range scan of ix_board_entry_rank and a rank is a count over it. Existing
results are backfilled with the ranking rule: the board's score, then the earliest submission, then
the lowest submission id. ix_result_owner lets GET /me/scores read a student's best score and passed
flag per assignment from an index, not from their few hundred scattered (and large) result rows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "board_entry",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("board", sa.String(length=16), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("board IN ('public', 'private')", name=op.f("ck_board_entry_board")),
        sa.ForeignKeyConstraint(
            ["assignment_id"],
            ["assignment.id"],
            name=op.f("fk_board_entry_assignment_id_assignment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["user.id"], name=op.f("fk_board_entry_owner_id_user"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["submission_id"],
            ["submission.id"],
            name=op.f("fk_board_entry_submission_id_submission"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("owner_id", "assignment_id", "board", name=op.f("pk_board_entry")),
    )
    op.create_index(
        "ix_board_entry_rank",
        "board_entry",
        ["assignment_id", "board", sa.text("score DESC"), "submitted_at", "submission_id"],
    )
    # GET /me/scores reads a student's best score and passed flag per assignment from this index alone.
    op.create_index(
        "ix_result_owner", "result", ["owner_id", "assignment_id", "public_score", "score", "passed"]
    )
    for board in ("public", "private"):
        op.execute(
            "INSERT INTO board_entry (owner_id, assignment_id, board, submission_id, score, submitted_at) "
            f"SELECT owner_id, assignment_id, '{board}', submission_id, score, submitted_at FROM ("
            f"  SELECT owner_id, assignment_id, submission_id, {board}_score AS score, submitted_at,"
            "   ROW_NUMBER() OVER (PARTITION BY assignment_id, owner_id"
            f"    ORDER BY {board}_score DESC, submitted_at ASC, submission_id ASC) AS nth"
            f"  FROM result WHERE {board}_score IS NOT NULL"
            ") AS best WHERE nth = 1"
        )


def downgrade() -> None:
    op.drop_index("ix_result_owner", table_name="result")
    op.drop_index("ix_board_entry_rank", table_name="board_entry")
    op.drop_table("board_entry")
