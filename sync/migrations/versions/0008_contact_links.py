"""contacts in every linked CRM: a contact's CRM contacts in connections other than its
first (contact_links), the version its first CRM contact has, and which connection flagged
it deleted

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("link_version", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("flagged_by", sa.String(length=36), nullable=True))
    # the version the first CRM contact has: the contact's own, unless a billing-side change
    # is still to be pushed to it
    op.execute(
        "UPDATE contacts SET link_version = CASE WHEN pending THEN version - 1 ELSE version END "
        "WHERE crm_id IS NOT NULL"
    )
    op.execute("UPDATE contacts SET flagged_by = connection_id WHERE state = 'crm_deleted'")
    op.create_table(
        "contact_links",
        sa.Column("contact_id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=36), nullable=False),
        sa.Column("crm_id", sa.String(length=64), nullable=False),
        sa.Column("base", json_type, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["connection_id", "organisation_id"],
            ["connections.id", "connections.organisation_id"],
            name="fk_contact_links_connection_org",
        ),
        sa.PrimaryKeyConstraint("contact_id", "connection_id"),
        sa.UniqueConstraint("connection_id", "crm_id", name="uq_contact_links_connection_crm_id"),
    )


def downgrade() -> None:
    op.drop_table("contact_links")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("flagged_by")
        batch_op.drop_column("link_version")
