"""endpoints.canary_version/canary_percent: a second version answering a share of requests

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("canary_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("canary_percent", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("canary_percent")
        batch_op.drop_column("canary_version")
