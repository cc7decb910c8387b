"""data contracts and estimated performance: captured probabilities and contract violations,
the endpoint's on_violation mode and probability capture, and users' contract overrides

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

import loopml.db

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("probabilities", sa.JSON(none_as_null=True), nullable=True))
        batch_op.add_column(sa.Column("violations", sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("on_violation", sa.String(length=8), nullable=False, server_default="pass"))
        batch_op.add_column(sa.Column("capture_probabilities", sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
    op.create_table(
        "contract_overrides",
        sa.Column("project", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", loopml.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project"], ["projects.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model", "version"),
    )


def downgrade() -> None:
    op.drop_table("contract_overrides")
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("capture_probabilities")
        batch_op.drop_column("on_violation")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_column("violations")
        batch_op.drop_column("probabilities")
