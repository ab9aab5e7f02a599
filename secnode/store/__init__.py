"""The node's database: SQLAlchemy models, engine setup and Alembic migrations."""
