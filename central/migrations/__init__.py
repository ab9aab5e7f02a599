"""Alembic migrations of the central registry schema (run by :func:`central.store.migrate`)."""
