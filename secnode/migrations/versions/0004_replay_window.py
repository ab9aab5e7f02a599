"""replay window in the database: index seen_message_ids by age for the purge

Revision ID: 0004_replay_window
Revises: 0003_policy
Create Date: 2026-12-01 09:00:00

The table itself exists since 0001 (unused until now); rows written by an older
node would never exist, so nothing is migrated, only the index is added.
"""
from alembic import op

revision = "0004_replay_window"
down_revision = "0003_policy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_seen_message_ids_seen_at", "seen_message_ids", ["seen_at"])


def downgrade() -> None:
    op.drop_index("ix_seen_message_ids_seen_at", table_name="seen_message_ids")
