"""Alembic environment: runs on the connection handed over by :func:`loopml.db.migrate`
or, from the ``alembic`` command line, on ``sqlalchemy.url``."""

from alembic import context
from sqlalchemy import engine_from_config, pool

from loopml.db import Base
from loopml.tables import load_all_tables

load_all_tables()
target_metadata = Base.metadata
config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(config.get_section(config.config_ini_section) or {}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


run()
