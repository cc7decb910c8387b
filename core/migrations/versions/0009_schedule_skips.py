"""schedules.last_skipped_at, last_skip_reason: a run the schedule skipped, and why

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

import loopml.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_skipped_at", loopml.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_skip_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_column("last_skip_reason")
        batch_op.drop_column("last_skipped_at")
