"""workspaces, predictions labelled index: the loop's state tracker (workspace opened, feedback received)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

import loopml.db

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("project", sa.String(length=40), nullable=False),
        sa.Column("user", sa.String(length=200), nullable=False),
        sa.Column("opened_at", loopml.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project"], ["projects.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project", "user"),
    )
    op.create_index("ix_predictions_endpoint_labelled", "predictions", ["project", "endpoint", "labelled_at"])


def downgrade() -> None:
    op.drop_index("ix_predictions_endpoint_labelled", table_name="predictions")
    op.drop_table("workspaces")
