"""policy: index the decision log by flow (client, service, time) for the recurrence rule

The node judges "ad hoc" (APPI Art. 69(2)) from its own provisions to the same client
subsystem and service within a window; without this index that count scans every
decision of the window.

Revision ID: 0006_policy_flow_index
Revises: 0005_cert_pending
Create Date: 2026-12-02 16:40:00
"""

from alembic import op

revision = "0006_policy_flow_index"
down_revision = "0005_cert_pending"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_pol_decisions_flow", "pol_decisions", ["client", "service", "at"])


def downgrade() -> None:
    op.drop_index("ix_pol_decisions_flow", table_name="pol_decisions")
