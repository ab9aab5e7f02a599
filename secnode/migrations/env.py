"""Alembic environment for the node database; run programmatically by secnode.store.db."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from secnode.store import models

config = context.config
target_metadata = models.Base.metadata
version_table = config.get_main_option("version_table") or "alembic_version"


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
