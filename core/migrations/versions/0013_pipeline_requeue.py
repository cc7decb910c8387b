"""pipeline_runs.trigger and parent_id, alerts.pipeline_run_id, schedules.kind and last_pipeline_run_id: a requeue
re-runs the pipeline of the serving version, a schedule may run a pipeline

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trigger", sa.String(length=16), nullable=False, server_default="user"))
        batch_op.add_column(sa.Column("parent_id", sa.String(length=32), nullable=True))
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pipeline_run_id", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_alerts_pipeline_run_id", ["pipeline_run_id"])
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="notebook"))
        batch_op.add_column(sa.Column("last_pipeline_run_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("schedules", schema=None) as batch_op:
        batch_op.drop_column("last_pipeline_run_id")
        batch_op.drop_column("kind")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_pipeline_run_id")
        batch_op.drop_column("pipeline_run_id")
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.drop_column("parent_id")
        batch_op.drop_column("trigger")
