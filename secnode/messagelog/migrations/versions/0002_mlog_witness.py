"""message log database: the peer's log position for each record ('witness', docs/audit.md)

Revision ID: 0002_mlog_witness
Revises: 0001_mlog
Create Date: 2026-12-02 17:00:00

Nullable, so records written before it keep their content and their hashes (an empty
witness is left out of the canonical form). The node's own database gets the same column
from the node schema's revision 0008_log_witness.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_mlog_witness"
down_revision = "0001_mlog"
branch_labels = None
depends_on = None


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("mlog_records")}
    if "witness" not in present:  # a log built by create_all after the field existed has it
        op.add_column("mlog_records", sa.Column("witness", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("mlog_records", "witness")
