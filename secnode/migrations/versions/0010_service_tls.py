"""services: TLS towards an https:// provider system (pinned certificate, CA file or the
system store) and whether the node presents its internal TLS client certificate

Services already stored with an https:// URL were verified against the system CA store
(aiohttp's default); they keep that, now stated explicitly (``tls_trust = 'system'``).

Revision ID: 0010_service_tls
Revises: 0009_console
Create Date: 2026-12-03 06:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_service_tls"
down_revision = "0009_console"
branch_labels = None
depends_on = None


# Plain ADD/DROP COLUMN (SQLite >= 3.35 drops columns in place), not batch mode: to drop a
# column a batch copies the table and drops the old one, and with foreign keys on (as the
# node runs) that drop cascades to access_rights: every grant would be lost.
def upgrade() -> None:
    op.add_column("services", sa.Column("tls_trust", sa.String(8), nullable=True))
    op.add_column("services", sa.Column("tls_pin", sa.String(64), nullable=True))
    op.add_column("services", sa.Column("tls_ca", sa.Text(), nullable=True))
    op.add_column(
        "services",
        sa.Column("tls_client_cert", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute("UPDATE services SET tls_trust = 'system' WHERE url LIKE 'https://%'")


def downgrade() -> None:
    for column in ("tls_client_cert", "tls_ca", "tls_pin", "tls_trust"):
        op.drop_column("services", column)
