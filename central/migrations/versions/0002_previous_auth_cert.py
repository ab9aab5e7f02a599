"""Nodes keep the auth certificate a renewal replaced (published until dropped).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("previous_auth_cert_pem", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("previous_auth_cert_sha256", sa.String(length=64), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("previous_auth_cert_sha256")
        batch.drop_column("previous_auth_cert_pem")
