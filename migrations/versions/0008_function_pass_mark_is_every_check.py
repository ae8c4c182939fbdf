"""function assignments: pass_threshold back to 1.0

A function assignment is passed when every check passes (HOMEWORK.md); the API now refuses another
mark for one. A lower mark stored before that changed nobody's pass flag (the verdict also needed
every check) but was shown to students and instructors as the pass line. No result changes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE assignment SET pass_threshold = 1.0"
        " WHERE kind IN ('activations', 'backprop', 'optimizers') AND pass_threshold <> 1.0"
    )


def downgrade() -> None:
    pass  # the old marks are not kept: they had no effect
