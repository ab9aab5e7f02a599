"""Alembic environment for the message log's own database (secnode.messagelog.database).

On SQLite that is ``messagelog.db``; ``[messagelog] database`` may name another. Its
revision is kept in ``mlog_alembic_version``, so it never collides with the node's.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from secnode.messagelog import tables

config = context.config
target_metadata = tables.metadata
version_table = config.get_main_option("version_table") or "mlog_alembic_version"


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            version_table=version_table,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(
        config.get_section(config.config_ini_section) or {},
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with engine.connect() as conn:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=True,
            version_table=version_table,
        )
        with context.begin_transaction():
            context.run_migrations()


run()
