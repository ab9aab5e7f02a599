"""services: the stored WSDL of a SOAP service and where it came from (getWsdl)

Revision ID: 0007_service_wsdl
Revises: 0006_policy_flow_index
Create Date: 2026-12-02 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_service_wsdl"
down_revision = "0006_policy_flow_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("wsdl", sa.Text(), nullable=True))
        batch.add_column(sa.Column("wsdl_source", sa.Text(), nullable=True))


def downgrade() -> None:
    # In place (SQLite >= 3.35), never batch mode: a batch copies the table and drops the
    # old one, which with foreign keys on cascades to access_rights (every grant lost).
    op.drop_column("services", "wsdl_source")
    op.drop_column("services", "wsdl")
