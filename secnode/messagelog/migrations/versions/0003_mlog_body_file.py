"""message log database: a record's body kept as a body file ('body_file', docs/audit.md)

Revision ID: 0003_mlog_body_file
Revises: 0002_mlog_witness
Create Date: 2026-12-03 07:00:00

Nullable and not hashed: a record whose body is in ``messagelog-bodies/`` has it set
(its ``body`` is NULL); records written before it keep their bodies in their rows. The
node's own database gets the same column from the node schema's revision
0011_log_body_file.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_mlog_body_file"
down_revision = "0002_mlog_witness"
branch_labels = None
depends_on = None


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("mlog_records")}
    if "body_file" not in present:  # a log built by create_all after the field existed has it
        op.add_column("mlog_records", sa.Column("body_file", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mlog_records") as batch:
        batch.drop_column("body_file")
