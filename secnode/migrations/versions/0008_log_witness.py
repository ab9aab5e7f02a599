"""message log: the peer's log position for each message ('witness', docs/audit.md)

Revision ID: 0008_log_witness
Revises: 0007_service_wsdl
Create Date: 2026-12-02 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_log_witness"
down_revision = "0007_service_wsdl"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mlog_records") as batch:
        batch.add_column(sa.Column("witness", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mlog_records") as batch:
        batch.drop_column("witness")
