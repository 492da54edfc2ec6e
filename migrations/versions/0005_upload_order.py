"""The order of a concept's uploads (``uploads.position``): the worker reads them in it.

Before, the worker ordered them by their random ids, so two runs of the same upload trained on
differently ordered batches (docs/architecture.md, "Uploads and privacy").

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("position", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("position")
