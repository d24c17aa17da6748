"""contacts both ways: a contact's base, its pending billing-side change, and its state

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        # None: the row's own values are the base (contacts pulled before this revision)
        batch_op.add_column(sa.Column("base", json_type, nullable=True))
        batch_op.add_column(
            sa.Column("pending", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("state", sa.String(length=16), nullable=False, server_default="active")
        )
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_contacts_org_pending", ["organisation_id", "pending"])
    # contacts entered on the billing side before this revision never reached a CRM
    op.execute("UPDATE contacts SET pending = true WHERE crm_id IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index("ix_contacts_org_pending")
        for column in ("updated_at", "state", "version", "pending", "base"):
            batch_op.drop_column(column)
