"""node certificates: 'pending' (imported, not in use yet) and 'listed_at' (auth renewal)

Revision ID: 0005_cert_pending
Revises: 0004_replay_window
Create Date: 2026-12-01 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_cert_pending"
down_revision = "0004_replay_window"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("node_certificates") as batch:
        batch.add_column(
            sa.Column("pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("listed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("node_certificates") as batch:
        batch.drop_column("listed_at")
        batch.drop_column("pending")
