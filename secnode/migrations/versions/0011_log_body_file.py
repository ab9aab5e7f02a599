"""message log: a record's body kept as a content-addressed body file ('body_file', docs/audit.md)

Revision ID: 0011_log_body_file
Revises: 0010_service_tls
Create Date: 2026-12-03 07:00:00

Nullable and not hashed: a record whose body is in ``messagelog-bodies/`` has it set
(its ``body`` is NULL); records written before it keep their bodies in their rows. The
separate log database gets the same column from its revision 0003_mlog_body_file.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_log_body_file"
down_revision = "0010_service_tls"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mlog_records") as batch:
        batch.add_column(sa.Column("body_file", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mlog_records") as batch:
        batch.drop_column("body_file")
