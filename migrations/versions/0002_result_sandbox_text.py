"""result.sandbox as text: the grader describes the isolation it used in a sentence

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("result") as batch_op:
        batch_op.alter_column(
            "sandbox", existing_type=sa.String(length=64), type_=sa.Text(), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("result") as batch_op:
        batch_op.alter_column(
            "sandbox", existing_type=sa.Text(), type_=sa.String(length=64), existing_nullable=False
        )
