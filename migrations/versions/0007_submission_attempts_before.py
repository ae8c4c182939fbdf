"""submission.attempts_before: the attempts spent before the last regrade

A regrade used to reset `attempt` to 0. A worker still running an old attempt (its lease long lost)
then held the lease again once a new claim counted up to its number, and could write the result. Now
`attempt` only goes up; a regrade sets `attempts_before` to it, and a grading's tries are
attempt - attempts_before. Existing rows start at 0: nothing was regraded under this rule yet.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "submission", sa.Column("attempts_before", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    # The old rule: attempt counts this grading's tries.
    op.execute("UPDATE submission SET attempt = attempt - attempts_before")
    op.drop_column("submission", "attempts_before")
