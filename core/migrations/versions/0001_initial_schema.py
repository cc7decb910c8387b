"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 11:30:16.074629
"""
from alembic import op
import sqlalchemy as sa
import loopml.db


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('projects',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('created_at', loopml.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('max_concurrent_jobs', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('project', sa.String(length=40), nullable=False),
    sa.Column('user', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('notebook', sa.Text(), nullable=False),
    sa.Column('kernel_name', sa.String(length=100), nullable=True),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('resources', sa.JSON(), nullable=False),
    sa.Column('timeout_s', sa.Float(), nullable=True),
    sa.Column('max_retries', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('dispatched', sa.Boolean(), nullable=False),
    sa.Column('cancel_requested', sa.Boolean(), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=True),
    sa.Column('cells_done', sa.Integer(), nullable=False),
    sa.Column('cells_total', sa.Integer(), nullable=False),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('mlflow_run_id', sa.String(length=64), nullable=True),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('parent_id', sa.String(length=32), nullable=True),
    sa.Column('schedule_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', loopml.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', loopml.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', loopml.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['project'], ['projects.name'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jobs_project'), ['project'], unique=False)
        batch_op.create_index('ix_jobs_project_status', ['project', 'status'], unique=False)

    op.create_table('project_members',
    sa.Column('project', sa.String(length=40), nullable=False),
    sa.Column('user', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['project'], ['projects.name'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('project', 'user')
    )
    op.create_table('schedules',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('project', sa.String(length=40), nullable=False),
    sa.Column('user', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('cron', sa.String(length=200), nullable=False),
    sa.Column('template', sa.JSON(), nullable=False),
    sa.Column('next_run_at', loopml.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_run_at', loopml.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_job_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', loopml.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project'], ['projects.name'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_schedules_next_run_at'), ['next_run_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_schedules_project'), ['project'], unique=False)

    op.create_table('job_outputs',
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('notebook', sa.Text(), nullable=True),
    sa.Column('log', sa.Text(), nullable=False),
    sa.Column('earlier_log', sa.Text(), nullable=False),
    sa.Column('updated_at', loopml.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('job_id')
    )


def downgrade() -> None:
    op.drop_table('job_outputs')
    with op.batch_alter_table('schedules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_schedules_project'))
        batch_op.drop_index(batch_op.f('ix_schedules_next_run_at'))

    op.drop_table('schedules')
    op.drop_table('project_members')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_project_status')
        batch_op.drop_index(batch_op.f('ix_jobs_project'))

    op.drop_table('jobs')
    op.drop_table('projects')
