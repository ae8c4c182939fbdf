"""leaderboards and late policy: board scores and submission copies on result, late flags

result gets public_score/private_score (the leaderboard scores) and copies of its submission's
assignment_id, owner_id and created_at (submitted_at), so that each board is one covering index;
submission gets `late`, assignment gets `late_policy`. Existing results are backfilled: the scores
from metrics.public_accuracy/private_accuracy where the grader split the hidden set, else `score`,
and NULL for submissions that were not graded.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BOARD_COLUMNS = ("assignment_id", "owner_id")


def _board_score(metrics: Any, key: str, score: float) -> float:
    if isinstance(metrics, str):  # some drivers hand JSON back as text
        metrics = json.loads(metrics)
    value = (metrics or {}).get(key)
    return float(value) if isinstance(value, int | float) else float(score)


def upgrade() -> None:
    # assignment and submission are referenced by foreign keys, so on SQLite they must not be
    # rebuilt (batch mode drops and re-creates the table, which fails once rows point at it): their
    # new columns are plain ADD COLUMNs, which SQLite can do in place.
    # The same statement on both (SQLite accepts a column CHECK in ADD COLUMN); the constraint is
    # named as the naming convention names the model's.
    op.execute(
        "ALTER TABLE assignment ADD COLUMN late_policy VARCHAR(16) DEFAULT 'accept_marked' NOT NULL "
        "CONSTRAINT ck_assignment_late_policy CHECK (late_policy IN ('refuse', 'accept_marked'))"
    )
    op.add_column("submission", sa.Column("late", sa.Boolean(), server_default=sa.false(), nullable=False))
    # Nothing references result: batch mode may rebuild it on SQLite.
    with op.batch_alter_table("result") as batch_op:
        batch_op.add_column(sa.Column("assignment_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("public_score", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("private_score", sa.Double(), nullable=True))

    bind = op.get_bind()
    for column, source in (*((c, c) for c in _BOARD_COLUMNS), ("submitted_at", "created_at")):
        bind.execute(
            sa.text(
                f"UPDATE result SET {column} = "
                f"(SELECT submission.{source} FROM submission WHERE submission.id = result.submission_id)"
            )
        )
    rows = bind.execute(
        sa.text(
            "SELECT result.id, result.score, result.metrics FROM result "
            "JOIN submission ON submission.id = result.submission_id WHERE submission.status = 'graded'"
        )
    ).all()
    if rows:
        bind.execute(
            sa.text("UPDATE result SET public_score = :public, private_score = :private WHERE id = :id"),
            [
                {
                    "id": row.id,
                    "public": _board_score(row.metrics, "public_accuracy", row.score),
                    "private": _board_score(row.metrics, "private_accuracy", row.score),
                }
                for row in rows
            ],
        )

    with op.batch_alter_table("result") as batch_op:
        for column in _BOARD_COLUMNS:
            batch_op.alter_column(column, existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("submitted_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_foreign_key(
            op.f("fk_result_assignment_id_assignment"),
            "assignment",
            ["assignment_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch_op.create_foreign_key(
            op.f("fk_result_owner_id_user"), "user", ["owner_id"], ["id"], ondelete="RESTRICT"
        )
    for board in ("public", "private"):
        op.create_index(
            f"ix_result_{board}_board",
            "result",
            ["assignment_id", "owner_id", sa.text(f"{board}_score DESC"), "submitted_at", "submission_id"],
        )


def downgrade() -> None:
    op.drop_index("ix_result_private_board", table_name="result")
    op.drop_index("ix_result_public_board", table_name="result")
    with op.batch_alter_table("result") as batch_op:
        batch_op.drop_constraint(op.f("fk_result_owner_id_user"), type_="foreignkey")
        batch_op.drop_constraint(op.f("fk_result_assignment_id_assignment"), type_="foreignkey")
        for column in ("private_score", "public_score", "submitted_at", "owner_id", "assignment_id"):
            batch_op.drop_column(column)
    # In place on SQLite too (ALTER TABLE DROP COLUMN, SQLite >= 3.35), for the same reason as above.
    op.drop_column("submission", "late")
    op.drop_column("assignment", "late_policy")  # its column CHECK goes with it
