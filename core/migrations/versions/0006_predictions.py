"""predictions: captured endpoint requests and their feedback labels

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

import loopml.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project", sa.String(length=40), nullable=False),
        sa.Column("endpoint", sa.String(length=40), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("at", loopml.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=True),
        sa.Column("prediction", sa.JSON(), nullable=True),
        sa.Column("label", sa.JSON(), nullable=True),
        sa.Column("labelled_at", loopml.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["project"], ["projects.name"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project", "endpoint", "request_id", name="uq_predictions_request"),
    )
    op.create_index("ix_predictions_endpoint_at", "predictions", ["project", "endpoint", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_predictions_endpoint_at", table_name="predictions")
    op.drop_table("predictions")
