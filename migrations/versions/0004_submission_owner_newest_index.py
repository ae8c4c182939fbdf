"""an index for a student's submission list, newest first: submission (owner_id, id)

GET /api/v1/me/submissions pages through one student's submissions by descending id
(`?before_id=`); with this index a page is an index range scan of `limit` rows instead of a scan
of the primary key backwards, filtering everyone else's rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_submission_owner_id", "submission", ["owner_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_submission_owner_id", table_name="submission")
