"""assignment.board_tag: a random tag replaced with every change to the assignment's boards

The API keeps each board it has read in memory and serves it again while the assignment's tag is
the one it was read under; the worker's transaction that puts a result on a board (and a rebuild of
the boards) writes a new tag. Existing assignments get a random tag each.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("assignment", sa.Column("board_tag", sa.BigInteger(), server_default="0", nullable=False))
    bind = op.get_bind()
    for (assignment_id,) in bind.execute(sa.text("SELECT id FROM assignment")).all():
        bind.execute(
            sa.text("UPDATE assignment SET board_tag = :tag WHERE id = :id"),
            {"tag": secrets.randbits(63), "id": assignment_id},
        )


def downgrade() -> None:
    op.drop_column("assignment", "board_tag")
